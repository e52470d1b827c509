// broker-http in one process, through the host like any module: registry-memory as the registry,
// the subscriber endpoint on loopback, deliveries over real HTTP. The tests across processes are
// in broker_cluster_test.cpp.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <mutex>
#include <thread>

#include "micro/module.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr const char* kStack =
    "[registry]\nmodule = \"registry-memory\"\n"
    "[broker]\nmodule = \"broker-http\"\naddress = \"127.0.0.1:0\"\nmax_body_bytes = 4096\n"
    "read_timeout_ms = 2000\n";

class BrokerHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    stack_ = micro::testing::require_stack(kStack, {MICRO_KIND_BROKER});
    ASSERT_NE(stack_, nullptr);
    broker_ = micro::Broker(stack_->broker());
    registry_ = micro::Registry(stack_->registry());
    ASSERT_TRUE(broker_.connect().ok());
  }
  void TearDown() override {
    subscriptions_.clear();
    stack_.reset();
  }

  // Subscribes a handler that records each body; returns the subscription's node id.
  std::string subscribe_recording(const std::string& topic, const std::string& queue = {}) {
    auto sub = broker_.subscribe(
        topic,
        [this](std::string_view, const micro::Message& m) {
          if (m.body == "fail") return micro::Error(422, "the handler refuses 'fail'");
          seen_.push(m);
          return micro::Error{};
        },
        {queue});
    EXPECT_TRUE(sub.ok()) << sub.error.to_string();
    subscriptions_.push_back(std::move(sub.value));
    auto got = registry_.get_service("micro.http.broker");
    EXPECT_TRUE(got.ok()) << got.error.to_string();
    std::string id;
    for (const auto& s : got.value)
      for (const auto& n : s.nodes)
        if (n.metadata.at("topic") == topic) id = n.id;
    return id;
  }

  // Sends `bytes` to the endpoint on a fresh connection; returns the HTTP status of the answer
  // (0 when the connection closed without one) and its body.
  std::pair<unsigned, std::string> raw(const std::string& bytes) {
    net::io_context ioc;
    tcp::socket socket(ioc);
    const std::string address(broker_.address());
    const size_t colon = address.rfind(':');
    socket.connect({net::ip::make_address(address.substr(0, colon)),
                    static_cast<uint16_t>(std::stoi(address.substr(colon + 1)))});
    boost::system::error_code ec;
    net::write(socket, net::buffer(bytes), ec);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(socket, buffer, response, ec);
    if (ec) return {0, ec.message()};
    return {response.result_int(), response.body()};
  }

  static std::string post(const std::string& target, const std::string& content_type,
                          const std::string& body) {
    return "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  bool publish_arrives(const std::string& topic, const std::string& body) {
    const size_t before = seen_.snapshot().size();
    const micro::Error e = broker_.publish(topic, micro::Message{{}, body});
    EXPECT_TRUE(e.ok()) << e.to_string();
    return seen_.wait_for([&](const auto& v) { return v.size() == before + 1 && v.back().body == body; });
  }

  std::unique_ptr<micro::host::Stack> stack_;
  micro::Broker broker_;
  micro::Registry registry_;
  std::vector<micro::Subscription> subscriptions_;
  micro::testing::Collector<micro::Message> seen_;
};

TEST_F(BrokerHttp, DeliversBodyAndHeadersAndTheHandlersErrorReachesThePublisher) {
  subscribe_recording("orders");
  micro::Message m{{{"content-type", "text/plain"}, {"Trace-Id", "t-1"}}, std::string("a\0b", 3)};
  ASSERT_TRUE(broker_.publish("orders", m).ok());
  auto got = seen_.snapshot();  // publish returns after the handler ran
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, std::string("a\0b", 3));
  EXPECT_EQ(got[0].header["content-type"], "text/plain");
  EXPECT_EQ(got[0].header["trace-id"], "t-1") << "header names arrive lower-cased";
  EXPECT_EQ(got[0].header["micro-topic"], "orders");

  const micro::Error refused = broker_.publish("orders", micro::Message{{}, "fail"});
  EXPECT_EQ(refused.code(), 422);
  EXPECT_NE(refused.detail().find("the handler refuses 'fail'"), std::string::npos)
      << refused.to_string();
}

TEST_F(BrokerHttp, PublishingToATopicNobodyHearsSucceeds) {
  subscribe_recording("orders");
  EXPECT_TRUE(broker_.publish("nobody-listens", micro::Message{{}, "x"}).ok());
  EXPECT_TRUE(broker_.publish("nobody-listens", micro::Message{{}, "y"}).ok());
  EXPECT_TRUE(seen_.snapshot().empty());
}

TEST_F(BrokerHttp, UnsubscribeDeregistersAndStopsDelivery) {
  subscribe_recording("orders");
  ASSERT_TRUE(publish_arrives("orders", "one"));
  subscriptions_.clear();  // unsubscribes
  EXPECT_EQ(registry_.get_service("micro.http.broker").error.code(), 404);
  EXPECT_TRUE(broker_.publish("orders", micro::Message{{}, "two"}).ok());
  EXPECT_EQ(seen_.snapshot().size(), 1u);
}

TEST_F(BrokerHttp, OneMemberOfAQueueGroupGetsEachMessage) {
  std::atomic<int> a{0}, b{0};
  auto counting = [](std::atomic<int>& n) {
    return [&n](std::string_view, const micro::Message&) {
      ++n;
      return micro::Error{};
    };
  };
  auto sa = broker_.subscribe("jobs", counting(a), {"workers"});
  auto sb = broker_.subscribe("jobs", counting(b), {"workers"});
  ASSERT_TRUE(sa.ok() && sb.ok());
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(broker_.publish("jobs", micro::Message{{}, "j"}).ok());
  EXPECT_EQ(a + b, 200);
  EXPECT_GT(a, 0);
  EXPECT_GT(b, 0);
}

TEST_F(BrokerHttp, BadInputGetsAClearAnswerAndTheSubscriberKeepsDelivering) {
  const std::string id = subscribe_recording("orders");
  ASSERT_FALSE(id.empty());
  const std::string target = "/?id=" + id;
  const std::string envelope = R"({"Header":{"Micro-Topic":"orders"},"Body":"aGk="})";

  auto [status, body] = raw(post(target, "application/json", envelope));
  EXPECT_EQ(status, 200u) << body;
  ASSERT_TRUE(seen_.wait_for([](const auto& v) { return v.size() == 1 && v[0].body == "hi"; }));

  static const char kGarbage[] = "\x16\x03\x01\x02\x00garbage\r\n\r\n";  // a TLS hello's start
  std::tie(status, body) = raw(std::string(kGarbage, sizeof kGarbage - 1));
  EXPECT_EQ(status, 400u) << body;
  EXPECT_NE(body.find("not an HTTP request"), std::string::npos) << body;

  std::tie(status, body) = raw(post(target, "application/json", std::string(5000, 'x')));
  EXPECT_EQ(status, 413u) << body;
  EXPECT_NE(body.find("max_body_bytes (4096)"), std::string::npos) << body;

  std::tie(status, body) = raw(post(target, "text/plain", envelope));
  EXPECT_EQ(status, 415u) << body;

  std::tie(status, body) = raw(post("/elsewhere", "application/json", envelope));
  EXPECT_EQ(status, 404u) << body;

  std::tie(status, body) = raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status, 405u) << body;

  std::tie(status, body) = raw(post(target, "application/json", R"({"Header":{}, "Body": 7})"));
  EXPECT_EQ(status, 400u) << body;
  EXPECT_NE(body.find("not a broker envelope"), std::string::npos) << body;

  std::tie(status, body) = raw(post(target, "application/json", R"({"Body":"aGk="})"));
  EXPECT_EQ(status, 400u) << body;
  EXPECT_NE(body.find("names no topic"), std::string::npos) << body;

  std::tie(status, body) = raw(post("/?id=nobody", "application/json", envelope));
  EXPECT_EQ(status, 410u) << body;

  // A request cut short: the endpoint gives up after read_timeout_ms and closes.
  std::tie(status, body) = raw("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort");
  EXPECT_EQ(status, 0u);

  EXPECT_EQ(seen_.snapshot().size(), 1u) << "no bad request reached the handler";
  EXPECT_TRUE(publish_arrives("orders", "still here"));
}

TEST_F(BrokerHttp, DisconnectDeregistersAndConnectComesBack) {
  subscribe_recording("orders");
  ASSERT_TRUE(broker_.disconnect().ok());
  EXPECT_EQ(registry_.get_service("micro.http.broker").error.code(), 404);
  ASSERT_TRUE(broker_.connect().ok());
  auto got = registry_.get_service("micro.http.broker");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0].nodes.at(0).address, broker_.address());
  EXPECT_TRUE(publish_arrives("orders", "after reconnect"));
}

TEST(BrokerHttpOptions, BadOptionsAreRefusedWhenTheStackIsBuilt) {
  auto built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-memory\"\n"
      "[broker]\nmodule = \"broker-http\"\naddress = \"nowhere\"\n",
      {MICRO_KIND_BROKER});
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.errors.at(0).find("broker address 'nowhere' is not host:port"),
            std::string::npos)
      << built.errors.at(0);
}

}  // namespace

namespace {

micro_error_t* ignore_message(void*, micro_str_t, const micro_message_t*) { return nullptr; }

// A broker destroyed with a subscription still in place deregisters it (it also warns).
TEST(BrokerHttpLifetime, DestroyingTheBrokerDeregistersWhatIsLeft) {
  char tmpl[] = "/tmp/micro-broker-life-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string registry = "[registry]\nmodule = \"registry-file\"\npath = \"" +
                               std::string(tmpl) + "\"\n";
  auto watcher = micro::testing::require_stack(registry, {MICRO_KIND_REGISTRY});
  auto stack = micro::testing::require_stack(
      registry + "[broker]\nmodule = \"broker-http\"\naddress = \"127.0.0.1:0\"\n",
      {MICRO_KIND_BROKER});
  ASSERT_TRUE(watcher && stack);
  const micro_broker_t broker = stack->broker();
  const micro_subscribe_options_t options{sizeof(micro_subscribe_options_t), {}};
  uint64_t id = 0;
  ASSERT_EQ(broker.vtable->subscribe(broker.self, micro::to_c(std::string_view("left")), &options,
                                     &ignore_message, nullptr, &id),
            nullptr);
  micro::Registry seen(watcher->registry());
  ASSERT_TRUE(seen.get_service("micro.http.broker").ok());
  stack.reset();
  EXPECT_EQ(seen.get_service("micro.http.broker").error.code(), 404);
  watcher.reset();
  std::system(("rm -rf " + std::string(tmpl)).c_str());
}

}  // namespace

// ---- batches ----------------------------------------------------------------------------------

namespace {

constexpr const char* kBatchType = "application/x-micro-batch+proto";

// A bare HTTP server standing in for a subscriber that another program registered: records the
// content type of each request and how many there were, answers each with `status` / `body`.
// With `hold_first`, the answer to the first request waits for release() (so a publisher's next
// messages queue up meanwhile).
class RecordingServer {
 public:
  RecordingServer(unsigned status, std::string body, bool hold_first = false)
      : status_(status), body_(std::move(body)), hold_(hold_first), acceptor_(ioc_) {
    const tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~RecordingServer() {
    release();
    ioc_.stop();
    thread_.join();
  }
  void release() {
    if (!released_.exchange(true)) release_.set_value();
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  std::vector<std::string> content_types() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return content_types_;
  }

 private:
  struct Connection : std::enable_shared_from_this<Connection> {
    Connection(RecordingServer& server, tcp::socket socket)
        : server(server), socket(std::move(socket)) {}
    void read() {
      request = {};
      http::async_read(socket, buffer, request,
                       [self = shared_from_this()](boost::system::error_code ec, size_t) {
                         if (ec) return;
                         {
                           std::lock_guard<std::mutex> lock(self->server.mutex_);
                           self->server.content_types_.emplace_back(
                               self->request[http::field::content_type]);
                         }
                         if (self->server.hold_.exchange(false))
                           self->server.release_.get_future().wait_for(10s);
                         self->answer();
                       });
    }
    void answer() {
      response = {};
      response.version(11);
      response.result(server.status_);
      response.set(http::field::content_type, "application/json");
      response.body() = server.body_;
      response.keep_alive(true);
      response.prepare_payload();
      http::async_write(socket, response,
                        [self = shared_from_this()](boost::system::error_code ec, size_t) {
                          if (!ec) self->read();
                        });
    }
    RecordingServer& server;
    tcp::socket socket;
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      std::make_shared<Connection>(*this, std::move(socket))->read();
      accept();
    });
  }

  const unsigned status_;
  const std::string body_;
  std::atomic<bool> hold_;
  std::promise<void> release_;
  std::atomic<bool> released_{false};
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<std::string> content_types_;
};

// The results of asynchronous publishes, by index, once all have answered.
class Results {
 public:
  explicit Results(size_t count) : errors_(count) {}
  micro::Done slot(size_t i) {
    return [this, i](const micro::Error& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      errors_[i] = e;
      ++answered_;
      changed_.notify_all();
    };
  }
  bool wait(std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return answered_ == errors_.size(); });
  }
  std::vector<micro::Error> errors() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return errors_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<micro::Error> errors_;
  size_t answered_ = 0;
};

class BrokerHttpBatch : public BrokerHttp {
 protected:
  // Registers a subscriber of `topic` at `address` as another program would (node `id`).
  void register_foreign(const std::string& id, const std::string& address,
                        const std::string& topic, micro::Metadata extra) {
    micro::Metadata metadata{{"broker", "http"}, {"topic", topic}, {"queue", ""},
                             {"secure", "false"}};
    metadata.insert(extra.begin(), extra.end());
    micro::Service service{"micro.http.broker", "ff.http.broadcast", {}, {}, {}};
    service.nodes.push_back({id, address, metadata});
    ASSERT_TRUE(registry_.register_service(service).ok());
  }

  // A subscription whose handler holds the first message until `release` is set, so that
  // the publishes made meanwhile queue up and go in one batch; records the bodies in order.
  void subscribe_gated(const std::string& topic) {
    auto sub = broker_.subscribe(topic, [this](std::string_view, const micro::Message& m) {
      if (first_.exchange(false)) release_.get_future().wait_for(10s);
      if (m.body == "fail") return micro::Error(422, "the handler refuses 'fail'");
      seen_.push(m);
      return micro::Error{};
    });
    ASSERT_TRUE(sub.ok()) << sub.error.to_string();
    subscriptions_.push_back(std::move(sub.value));
  }

  std::atomic<bool> first_{true};
  std::promise<void> release_;
};

// Publishes made without waiting go out in batches; each publish still gets its own message's
// result: only the one the handler refuses gets 422.
TEST_F(BrokerHttpBatch, EachPublishInABatchGetsItsOwnResult) {
  subscribe_gated("orders");
  constexpr size_t kCount = 300;
  Results results(kCount);
  for (size_t i = 0; i < kCount; ++i)
    broker_.publish("orders", micro::Message{{}, i == 150 ? "fail" : std::to_string(i)},
                    results.slot(i));
  release_.set_value();
  ASSERT_TRUE(results.wait());
  const auto errors = results.errors();
  for (size_t i = 0; i < kCount; ++i) {
    if (i == 150) {
      EXPECT_EQ(errors[i].code(), 422) << errors[i].to_string();
      EXPECT_NE(errors[i].detail().find("the handler refuses 'fail'"), std::string::npos);
    } else {
      EXPECT_TRUE(errors[i].ok()) << i << ": " << errors[i].to_string();
    }
  }
  const auto got = seen_.snapshot();
  ASSERT_EQ(got.size(), kCount - 1);
  for (size_t i = 0, n = 0; i < kCount; ++i) {
    if (i == 150) continue;
    EXPECT_EQ(got[n++].body, std::to_string(i)) << "in publish order";
  }
}

// A subscriber registered without the batch metadata (go-micro's, or an older one) gets one JSON
// envelope per POST; one that advertises batches gets them: fewer POSTs than messages, and its
// answer (here a 503 for the whole batch) reaches every publish in it.
TEST_F(BrokerHttpBatch, OnlySubscribersThatAdvertiseBatchesGetThem) {
  RecordingServer plain(200, "{}");
  register_foreign("plain-1", plain.address(), "plain", {});
  RecordingServer batching(503, R"({"id":"x","code":503,"detail":"down for maintenance"})",
                           true);
  register_foreign("batching-1", batching.address(), "batching", {{"batch", kBatchType}});

  constexpr size_t kCount = 200;
  Results to_plain(kCount), to_batching(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    broker_.publish("plain", micro::Message{{}, std::to_string(i)}, to_plain.slot(i));
    broker_.publish("batching", micro::Message{{}, std::to_string(i)}, to_batching.slot(i));
  }
  batching.release();
  ASSERT_TRUE(to_plain.wait());
  ASSERT_TRUE(to_batching.wait());
  for (const auto& e : to_plain.errors()) EXPECT_TRUE(e.ok()) << e.to_string();
  for (const auto& e : to_batching.errors()) {
    EXPECT_EQ(e.code(), 503) << e.to_string();
    EXPECT_EQ(e.detail(), "down for maintenance");
  }
  const auto json = plain.content_types();
  EXPECT_EQ(json.size(), kCount) << "one POST per message";
  for (const auto& type : json) EXPECT_EQ(type, "application/json");
  const auto batches = batching.content_types();
  EXPECT_EQ(batches.size(), 2u) << "the first message alone, then the 199 queued meanwhile";
  for (const auto& type : batches) EXPECT_EQ(type, kBatchType);
}

// A batch larger than the subscriber takes (here it advertises more than its real limit) gets
// 413; the publisher splits it and every message arrives, in order.
TEST_F(BrokerHttpBatch, ABatchOverTheSubscribersLimitIsSplit) {
  subscribe_gated("orders");
  auto got = registry_.get_service("micro.http.broker");
  ASSERT_TRUE(got.ok() && got.value.size() == 1 && got.value[0].nodes.size() == 1);
  const micro::Node node = got.value[0].nodes[0];
  EXPECT_EQ(node.metadata.at("batch"), kBatchType);
  EXPECT_EQ(node.metadata.at("max_body_bytes"), "4096");
  // The same node again, claiming a limit of 1 MB: the publisher's cache takes that.
  register_foreign(node.id, node.address, "orders", {{"batch", kBatchType},
                                                     {"max_body_bytes", "1048576"}});
  constexpr size_t kCount = 200;
  Results results(kCount);
  const std::string pad(100, 'p');
  for (size_t i = 0; i < kCount; ++i)
    broker_.publish("orders", micro::Message{{}, std::to_string(i) + pad}, results.slot(i));
  release_.set_value();
  ASSERT_TRUE(results.wait());
  for (const auto& e : results.errors()) EXPECT_TRUE(e.ok()) << e.to_string();
  const auto bodies = seen_.snapshot();
  ASSERT_EQ(bodies.size(), kCount);
  for (size_t i = 0; i < kCount; ++i) EXPECT_EQ(bodies[i].body, std::to_string(i) + pad);
}

// Bad batches at the endpoint: clear answers, and the subscriber goes on delivering.
TEST_F(BrokerHttpBatch, ABadBatchGetsAClearAnswerAndTheSubscriberKeepsDelivering) {
  const std::string id = subscribe_recording("orders");
  const std::string target = "/?id=" + id;
  // Batch{topic: "orders", messages: [Envelope{body: "hi"}]}, protobuf's encoding written out.
  const std::string good("\x0a\x06orders\x12\x04\x12\x02hi", 14);
  auto [status, body] = raw(post(target, kBatchType, good));
  EXPECT_EQ(status, 200u) << body;
  EXPECT_EQ(body, std::string("\x0a\x00", 2)) << "one result, empty: delivered";
  ASSERT_TRUE(seen_.wait_for([](const auto& v) { return v.size() == 1 && v[0].body == "hi"; }));

  std::tie(status, body) = raw(post(target, kBatchType, "\xff\xff\xff garbage"));
  EXPECT_EQ(status, 400u) << body;
  EXPECT_NE(body.find("not a broker batch"), std::string::npos) << body;

  std::tie(status, body) = raw(post(target, kBatchType, std::string("\x0a\x06orders", 8)));
  EXPECT_EQ(status, 400u) << body;
  EXPECT_NE(body.find("no messages"), std::string::npos) << body;

  const std::string other("\x0a\x05other\x12\x04\x12\x02hi", 13);
  std::tie(status, body) = raw(post(target, kBatchType, other));
  EXPECT_EQ(status, 400u) << body;
  EXPECT_NE(body.find("is to 'orders', not 'other'"), std::string::npos) << body;

  std::tie(status, body) = raw(post(target, kBatchType, std::string(5000, '\x0a')));
  EXPECT_EQ(status, 413u) << body;

  EXPECT_EQ(seen_.snapshot().size(), 1u) << "no bad batch reached the handler";
  EXPECT_TRUE(publish_arrives("orders", "still here"));
}

// batch = false: subscriptions do not advertise batches and the endpoint refuses them; a
// publisher with batching on then sends that subscriber JSON envelopes.
TEST(BrokerHttpBatchOff, WithBatchFalseNothingIsAdvertisedAndBatchesAreRefused) {
  auto stack = micro::testing::require_stack(
      std::string(kStack) + "batch = false\n", {MICRO_KIND_BROKER});
  ASSERT_NE(stack, nullptr);
  micro::Broker broker(stack->broker());
  micro::Registry registry(stack->registry());
  micro::testing::Collector<std::string> seen;
  auto sub = broker.subscribe("orders", [&](std::string_view, const micro::Message& m) {
    seen.push(m.body);
    return micro::Error{};
  });
  ASSERT_TRUE(sub.ok());
  auto got = registry.get_service("micro.http.broker");
  ASSERT_TRUE(got.ok());
  const micro::Node node = got.value.at(0).nodes.at(0);
  EXPECT_EQ(node.metadata.count("batch"), 0u);

  net::io_context ioc;
  tcp::socket socket(ioc);
  const size_t colon = node.address.rfind(':');
  socket.connect({net::ip::make_address(node.address.substr(0, colon)),
                  static_cast<uint16_t>(std::stoi(node.address.substr(colon + 1)))});
  const std::string batch("\x0a\x06orders\x12\x04\x12\x02hi", 14);
  net::write(socket, net::buffer("POST /?id=" + node.id + " HTTP/1.1\r\nHost: x\r\nContent-Type: " +
                                 kBatchType + "\r\nContent-Length: 14\r\n\r\n" + batch));
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(socket, buffer, response);
  EXPECT_EQ(response.result_int(), 415u) << response.body();

  Results results(50);
  for (size_t i = 0; i < 50; ++i)
    broker.publish("orders", micro::Message{{}, std::to_string(i)}, results.slot(i));
  ASSERT_TRUE(results.wait());
  for (const auto& e : results.errors()) EXPECT_TRUE(e.ok()) << e.to_string();
  EXPECT_TRUE(seen.wait_for([](const auto& v) { return v.size() == 50; }));
}

}  // namespace
