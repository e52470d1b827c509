// Typed events end to end: a server subscribes with the handler generated from events.proto, a
// client publishes with the generated Publish, through server-rpc, client-rpc and broker-http
// (over HTTP on loopback) in one stack.
#include <gtest/gtest.h>

#include "events.micro.h"
#include "micro/module.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace {

TEST(BrokerTyped, ATypedSubscriberReceivesTypedAndJsonEventsAndItsErrorReachesThePublisher) {
  auto stack = micro::testing::require_stack(
      "[registry]\nmodule = \"registry-memory\"\n"
      "[broker]\nmodule = \"broker-http\"\naddress = \"127.0.0.1:0\"\n",
      {MICRO_KIND_CLIENT, MICRO_KIND_SERVER});
  ASSERT_NE(stack, nullptr);
  micro::Server server(stack->server());
  micro::Client client(stack->client());
  micro::testing::Collector<std::string> seen;
  ASSERT_TRUE(brokertest::Subscribe(server, "ticks", [&](const brokertest::Tick& tick) {
                if (tick.note() == "refuse") return micro::Error(409, "tick refused");
                seen.push(std::to_string(tick.seq()) + ":" + tick.note());
                return micro::Error{};
              }).ok());
  ASSERT_TRUE(server.start().ok());

  for (int i = 1; i <= 3; ++i) {
    brokertest::Tick tick;
    tick.set_seq(i);
    tick.set_note("typed");
    const micro::Error e = brokertest::Publish(client, "ticks", tick);
    ASSERT_TRUE(e.ok()) << e.to_string();
  }
  // Raw JSON with metadata, decoded by the typed handler through protobuf's JSON mapping.
  const micro::Error json = client.publish(
      "ticks", micro::Message{{{"content-type", "application/json"}, {"tenant", "acme"}},
                              R"({"seq":"4","note":"json"})"});
  ASSERT_TRUE(json.ok()) << json.to_string();

  brokertest::Tick refused;
  refused.set_note("refuse");
  const micro::Error e = brokertest::Publish(client, "ticks", refused);
  EXPECT_EQ(e.code(), 409);
  EXPECT_NE(e.detail().find("tick refused"), std::string::npos) << e.to_string();
  EXPECT_EQ(client.publish("ticks", micro::Message{{}, "\xff\xff"}).code(), 400)
      << "a body that is no Tick is refused before the handler";

  EXPECT_EQ(seen.snapshot(),
            (std::vector<std::string>{"1:typed", "2:typed", "3:typed", "4:json"}));

  // A subscriber added while the server runs starts at once.
  micro::testing::Collector<int64_t> late;
  ASSERT_TRUE(brokertest::Subscribe(server, "late-ticks", [&](const brokertest::Tick& tick) {
                late.push(tick.seq());
                return micro::Error{};
              }).ok());
  brokertest::Tick tick;
  tick.set_seq(5);
  ASSERT_TRUE(brokertest::Publish(client, "late-ticks", tick).ok());
  EXPECT_EQ(late.snapshot(), std::vector<int64_t>{5});
  ASSERT_TRUE(server.stop().ok());
  EXPECT_EQ(micro::Registry(stack->registry()).get_service("micro.http.broker").error.code(), 404)
      << "stopping the server removed its subscription";
}

}  // namespace
