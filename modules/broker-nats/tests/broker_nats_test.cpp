// broker-nats loaded through the host, against a real nats-server started per test.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>

#include "nats_fixture.hpp"

namespace {

using namespace nats_test;
using micro::Broker;
using micro::Error;
using micro::Message;
using micro::testing::Collector;

constexpr int kMessages = 10000;

class BrokerNats : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.start()) << "nats-server did not start"; }

  std::unique_ptr<micro::host::Stack> make(const std::string& extra = {}) {
    auto stack = broker_stack(servers_option(server_.url()) + extra);
    if (stack) {
      EXPECT_TRUE(Broker(stack->broker()).connect().ok());
    }
    return stack;
  }

  // Publishes "0".."count-1" on `topic`, without waiting for each; waits for all completions.
  static void publish_numbers(const Broker& broker, const std::string& topic, int count) {
    std::atomic<int> failed{0};
    Collector<int> done;
    for (int i = 0; i < count; ++i)
      broker.publish(topic, Message{{}, std::to_string(i)}, [&](const Error& e) {
        if (!e.ok()) ++failed;
        done.push(1);
      });
    ASSERT_TRUE(done.wait_for([&](const auto& v) { return int(v.size()) == count; }, 20s));
    EXPECT_EQ(failed, 0);
  }

  NatsServer server_;
};

TEST_F(BrokerNats, EverySubscriberGetsEveryMessageInOrder) {
  auto publisher = make();
  std::vector<std::unique_ptr<micro::host::Stack>> stacks;
  std::vector<std::unique_ptr<Collector<int>>> got;
  std::vector<micro::Subscription> subs;
  for (int s = 0; s < 3; ++s) {
    stacks.push_back(make());
    got.push_back(std::make_unique<Collector<int>>());
    Broker broker(stacks.back()->broker());
    auto sub = broker.subscribe("orders", [c = got.back().get()](std::string_view topic,
                                                                 const Message& m) {
      EXPECT_EQ(topic, "orders");
      c->push(std::stoi(m.body));
      return Error{};
    });
    ASSERT_TRUE(sub.ok()) << sub.error.to_string();
    subs.push_back(std::move(sub.value));
    ASSERT_TRUE(sync(broker));
  }
  publish_numbers(Broker(publisher->broker()), "orders", kMessages);
  std::vector<int> expected(kMessages);
  for (int i = 0; i < kMessages; ++i) expected[i] = i;
  for (auto& c : got) {
    EXPECT_TRUE(c->wait_for([](const auto& v) { return v.size() >= kMessages; }, 20s));
    const auto seen = c->snapshot();
    EXPECT_EQ(seen.size(), expected.size());
    const auto diff = std::mismatch(seen.begin(), seen.end(), expected.begin(), expected.end());
    EXPECT_TRUE(seen == expected) << "first difference at index " << (diff.first - seen.begin()) << ": " << [&] {
      std::string out;
      const size_t at = diff.first - seen.begin();
      for (size_t i = at > 3 ? at - 3 : 0; i < at + 8 && i < seen.size(); ++i)
        out += std::to_string(seen[i]) + " ";
      return out;
    }();
  }
}

TEST_F(BrokerNats, QueueGroupSplitsMessagesExactlyOnce) {
  auto publisher = make();
  std::vector<std::unique_ptr<micro::host::Stack>> stacks;
  Collector<std::pair<int, int>> got;  // (subscriber, message)
  std::vector<micro::Subscription> subs;
  for (int s = 0; s < 3; ++s) {
    stacks.push_back(make());
    Broker broker(stacks.back()->broker());
    auto sub = broker.subscribe(
        "jobs",
        [&got, s](std::string_view, const Message& m) {
          got.push({s, std::stoi(m.body)});
          return Error{};
        },
        micro::SubscribeOptions{"workers"});
    ASSERT_TRUE(sub.ok()) << sub.error.to_string();
    subs.push_back(std::move(sub.value));
    ASSERT_TRUE(sync(broker));
  }
  publish_numbers(Broker(publisher->broker()), "jobs", kMessages);
  ASSERT_TRUE(got.wait_for([](const auto& v) { return v.size() >= kMessages; }, 20s));
  // Nothing more arrives: a round trip through the server after the last one.
  ASSERT_TRUE(sync(Broker(publisher->broker())));
  const auto all = got.snapshot();
  EXPECT_EQ(all.size(), size_t(kMessages));
  std::set<int> distinct;
  std::map<int, int> per_subscriber;
  for (const auto& [s, i] : all) {
    distinct.insert(i);
    ++per_subscriber[s];
  }
  EXPECT_EQ(distinct.size(), size_t(kMessages)) << "each message delivered exactly once";
  EXPECT_EQ(per_subscriber.size(), 3u) << "the group shares the work";
}

TEST_F(BrokerNats, HeadersAndBinaryBodyRoundTripByteForByte) {
  auto stack = make();
  Broker broker(stack->broker());
  Collector<Message> got;
  auto sub = broker.subscribe("blobs", [&](std::string_view, const Message& m) {
    got.push(m);
    return Error{};
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(sync(broker));

  Message rich;
  for (int i = 0; i < 3; ++i)
    for (int b = 0; b < 256; ++b) rich.body += static_cast<char>(b);
  rich.body += "\r\nMSG blobs 1 5\r\nhello\r\n\r\n";
  for (int i = 0; i < 60; ++i)
    rich.header["x-header-" + std::to_string(i)] = "value " + std::to_string(i) + " with: colon";
  rich.header["Content-Type"] = "application/octet-stream";
  rich.header["empty"] = "";
  rich.header["spaces"] = "  two leading, trailing two  ";
  rich.header["utf8"] = "gr\xc3\xbc\xc3\x9f dich \xe2\x9c\x93";
  Message big{{{"size", "large"}}, std::string(700 * 1024, 'x')};
  for (size_t i = 0; i < big.body.size(); i += 7) big.body[i] = static_cast<char>(i & 0xff);
  const Message plain{{}, std::string("\0\x01\x02no headers", 14)};
  const Message headers_only{{{"only", "headers"}}, ""};

  for (const Message* m : std::vector<const Message*>{&rich, &big, &plain, &headers_only})
    ASSERT_TRUE(broker.publish("blobs", *m).ok());
  ASSERT_TRUE(got.wait_for([](const auto& v) { return v.size() >= 4; }, 10s));
  const auto all = got.snapshot();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].body, rich.body);
  EXPECT_EQ(all[0].header, rich.header);
  EXPECT_EQ(all[1].body, big.body);
  EXPECT_EQ(all[1].header, big.header);
  EXPECT_EQ(all[2].body, plain.body);
  EXPECT_TRUE(all[2].header.empty());
  EXPECT_EQ(all[3].body, "");
  EXPECT_EQ(all[3].header, headers_only.header);
}

TEST_F(BrokerNats, BadPublishesFailWithAClearError) {
  auto stack = make();
  Broker broker(stack->broker());
  Error e = broker.publish("with space", Message{{}, "x"});
  EXPECT_EQ(e.code(), 400);
  EXPECT_NE(e.detail().find("topic"), std::string::npos) << e.detail();
  e = broker.publish("t", Message{{{"k", "line\r\nbreak"}}, "x"});
  EXPECT_EQ(e.code(), 400);
  EXPECT_NE(e.detail().find("CR or LF"), std::string::npos) << e.detail();
  e = broker.publish("t", Message{{}, std::string(2 << 20, 'x')});  // the server's limit: 1 MiB
  EXPECT_EQ(e.code(), 413);
  EXPECT_NE(e.detail().find("max_payload"), std::string::npos) << e.detail();
  auto sub = broker.subscribe("", [](std::string_view, const Message&) { return Error{}; });
  EXPECT_EQ(sub.error.code(), 400);
  // The connection is still fine.
  EXPECT_TRUE(sync(broker));
}

TEST_F(BrokerNats, UnsubscribedHandlerIsNotCalledAgain) {
  auto stack = make();
  Broker broker(stack->broker());
  std::atomic<int> calls{0};
  auto sub = broker.subscribe("u", [&](std::string_view, const Message&) {
    ++calls;
    return Error{};
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(sync(broker));
  ASSERT_TRUE(broker.publish("u", Message{{}, "1"}).ok());
  ASSERT_TRUE(sync(broker));
  EXPECT_EQ(calls, 1);
  sub.value.stop();
  ASSERT_TRUE(broker.publish("u", Message{{}, "2"}).ok());
  ASSERT_TRUE(sync(broker));
  EXPECT_EQ(calls, 1);
}

// disconnect() writes what is queued before it closes; publishing then fails until connect().
TEST_F(BrokerNats, DisconnectFlushesThenRefusesUntilConnectedAgain) {
  auto sub_stack = make();
  auto pub_stack = make();
  Broker subscriber(sub_stack->broker());
  Broker publisher(pub_stack->broker());
  Collector<std::string> got;
  auto sub = subscriber.subscribe("d", [&](std::string_view, const Message& m) {
    got.push(m.body);
    return Error{};
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(sync(subscriber));
  Collector<Error> completions;
  for (int i = 0; i < 1000; ++i)
    publisher.publish("d", Message{{}, std::to_string(i)},
                      [&](const Error& e) { completions.push(e); });
  ASSERT_TRUE(publisher.disconnect().ok());
  ASSERT_EQ(completions.snapshot().size(), 1000u) << "every queued publish completed first";
  for (const auto& e : completions.snapshot()) EXPECT_TRUE(e.ok()) << e.to_string();
  EXPECT_TRUE(got.wait_for([](const auto& v) { return v.size() == 1000; }));

  const Error refused = publisher.publish("d", Message{{}, "late"});
  EXPECT_EQ(refused.code(), 503);
  EXPECT_NE(refused.detail().find("call connect() first"), std::string::npos) << refused.detail();
  ASSERT_TRUE(publisher.connect().ok());
  ASSERT_TRUE(publisher.publish("d", Message{{}, "again"}).ok());
  EXPECT_TRUE(got.wait_for([](const auto& v) { return v.size() == 1001 && v.back() == "again"; }));
}

TEST_F(BrokerNats, ReconnectsAndResubscribesWhenTheServerRestarts) {
  auto sub_stack = make();
  auto pub_stack = make();
  Broker subscriber(sub_stack->broker());
  Broker publisher(pub_stack->broker());
  Collector<std::string> got;
  auto sub = subscriber.subscribe("events", [&](std::string_view, const Message& m) {
    got.push(m.body);
    return Error{};
  });
  ASSERT_TRUE(sub.ok());
  auto queue_sub = subscriber.subscribe(
      "events", [&](std::string_view, const Message& m) {
        got.push("queue:" + m.body);
        return Error{};
      },
      micro::SubscribeOptions{"q"});
  ASSERT_TRUE(queue_sub.ok());
  ASSERT_TRUE(sync(subscriber));
  ASSERT_TRUE(publisher.publish("events", Message{{}, "before"}).ok());
  ASSERT_TRUE(got.wait_for([](const auto& v) { return v.size() >= 2; }));

  server_.stop();
  ASSERT_TRUE(server_.start()) << "nats-server did not restart on port " << server_.port();

  // Both reconnect on their own; connect() waits for it (bounded by connect_timeout_ms).
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!(subscriber.connect().ok() && publisher.connect().ok()) &&
         std::chrono::steady_clock::now() < until) {
  }
  ASSERT_TRUE(sync(subscriber));
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(publisher.publish("events", Message{{}, "after" + std::to_string(i)}).ok());
  ASSERT_TRUE(got.wait_for([](const auto& v) { return v.size() >= 202; }, 10s))
      << got.snapshot().size();
  std::vector<std::string> plain, queued;
  for (const auto& body : got.snapshot()) {
    if (body.rfind("queue:after", 0) == 0) queued.push_back(body.substr(6));
    else if (body.rfind("after", 0) == 0) plain.push_back(body);
  }
  ASSERT_EQ(plain.size(), 100u);
  ASSERT_EQ(queued.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(plain[i], "after" + std::to_string(i));
    EXPECT_EQ(queued[i], "after" + std::to_string(i));
  }
}

// No server at start: connect() says so within connect_timeout_ms; publishes are buffered up to
// max_pending_bytes (then refused); once the server comes up everything flows without any call.
TEST(BrokerNatsNoServer, ConnectsTransparentlyOnceTheServerComesUp) {
  NatsServer server;  // not started yet
  auto stack = broker_stack(servers_option(server.url()) +
                            "connect_timeout_ms = 300\nmax_pending_bytes = 4096\n");
  ASSERT_NE(stack, nullptr);
  Broker broker(stack->broker());
  const auto before = std::chrono::steady_clock::now();
  const Error e = broker.connect();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 5s) << "no hang";
  EXPECT_EQ(e.code(), 503);
  EXPECT_NE(e.detail().find("not connected to " + server.url()), std::string::npos) << e.detail();
  EXPECT_NE(e.detail().find("Connection refused"), std::string::npos) << e.detail();

  Collector<std::string> got;
  auto sub = broker.subscribe("early", [&](std::string_view, const Message& m) {
    got.push(m.body);
    return Error{};
  });
  ASSERT_TRUE(sub.ok());
  Collector<Error> completions;
  int accepted = 0;
  Error refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    broker.publish("early", Message{{}, "buffered" + std::to_string(i) + std::string(90, '.')},
                   [&](const Error& error) {
                     if (error.code() == 503 &&
                         error.detail().find("max_pending_bytes") != std::string::npos &&
                         refused.ok())
                       refused = error;
                     else
                       completions.push(error);
                   });
    if (refused.ok()) ++accepted;
  }
  EXPECT_FALSE(refused.ok()) << "the buffer is bounded";
  EXPECT_NE(refused.detail().find("not connected"), std::string::npos) << refused.detail();
  EXPECT_GT(accepted, 10);
  EXPECT_LT(accepted, 50);
  EXPECT_TRUE(completions.snapshot().empty()) << "buffered publishes wait for the server";

  ASSERT_TRUE(server.start());
  ASSERT_TRUE(completions.wait_for([&](const auto& v) { return int(v.size()) == accepted; }, 10s));
  for (const auto& c : completions.snapshot()) EXPECT_TRUE(c.ok()) << c.to_string();
  ASSERT_TRUE(got.wait_for([&](const auto& v) { return int(v.size()) == accepted; }, 10s));
  EXPECT_EQ(got.snapshot().front().substr(0, 9), "buffered0");
  EXPECT_TRUE(broker.connect().ok());
}

}  // namespace

namespace {

// Option mistakes stop the stack at creation, naming the option and what to write instead.
TEST(BrokerNatsOptions, MistakesAreReportedBeforeAnythingStarts) {
  struct Case {
    std::string options;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"servers = [\"tls://127.0.0.1:4222\"]\n", "servers[0]: 'tls://127.0.0.1:4222' uses tls://"},
      {"servers = [\"nats://127.0.0.1:99999\"]\n", "is not a server address; write nats://host:port"},
      {"servers = [\"nats://u:p@127.0.0.1:4222\"]\n", "carries credentials"},
      {"servers = []\n", "servers is empty"},
      {"address = \"127.0.0.1:4222\"\nservers = [\"nats://127.0.0.1:4222\"]\n",
       "address and servers both given"},
      {"user = \"u\"\n", "user and pass go together"},
      {"connect_timeout_ms = 0\n", "connect_timeout_ms = 0 is out of range"},
  };
  for (const auto& c : cases) {
    auto built = micro::testing::build_stack("[broker]\nmodule = \"broker-nats\"\n" + c.options,
                                             {MICRO_KIND_BROKER});
    EXPECT_EQ(built.stack, nullptr) << c.options;
    const std::string all = micro::testing::errors_of(built);
    EXPECT_NE(all.find(c.says), std::string::npos) << c.options << " gave: " << all;
  }
  // address alone, in host:port form, is accepted.
  auto ok = micro::testing::build_stack(
      "[broker]\nmodule = \"broker-nats\"\naddress = \"127.0.0.1:1\"\n", {MICRO_KIND_BROKER});
  EXPECT_TRUE(ok.errors.empty());
  ASSERT_NE(ok.stack, nullptr);
  EXPECT_EQ(Broker(ok.stack->broker()).address(), "nats://127.0.0.1:1");
}

}  // namespace
