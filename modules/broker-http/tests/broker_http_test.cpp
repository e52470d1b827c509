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
