// What a server does with clients that misbehave: too slow (slowloris), garbage, heads and
// bodies over the limits. Each is answered or cut off, and the server goes on serving others.
#include "harness.hpp"

namespace {

using namespace micro::testing::http;
using micro::Error;
using micro::Message;
using micro::testing::Collector;

// One well-behaved call, to show the server still serves.
void expect_served(const micro::Transport& transport, const std::string& address) {
  auto dialed = transport.dial(address);
  ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
  ASSERT_TRUE(dialed.value.send(request("/Echo.Call", "still here")).ok());
  auto reply = dialed.value.recv();
  ASSERT_TRUE(reply.ok() && reply.value) << reply.error.to_string();
  EXPECT_EQ(reply.value->header.at(":status"), "200");
  EXPECT_EQ(reply.value->body, "still here");
}

TEST(TransportHttpLimits, ASlowlorisHeadIsCutOffAfterHeaderTimeoutWhileOthersAreServed) {
  TransportStack t("header_timeout_ms = 300\n");
  Collector<Error> ended;
  TestServer server(t.transport, [&](micro::Socket& s) { serve_unary(s, echo, &ended); });
  RawClient slow(port_of(server.address()));
  ASSERT_TRUE(slow.connected());
  const std::string head =
      "POST /Echo.Call HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a');
  const auto start = std::chrono::steady_clock::now();
  bool closed = false;
  size_t sent = 0;
  // One byte every 20 ms: each wait is for the server's close, with a deadline that paces us.
  while (sent < head.size() && !closed) {
    if (!slow.write(head.substr(sent++, 1))) {
      closed = true;
      break;
    }
    if (sent == 5) expect_served(t.transport, server.address());  // meanwhile, others are served
    closed = slow.wait_closed(20ms);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed) << "the server let a head dribble for " << sent << " bytes";
  EXPECT_LT(sent, head.size());
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 3s);
  ASSERT_TRUE(ended.wait_for([](auto& v) { return !v.empty(); }));
  expect_served(t.transport, server.address());
}

TEST(TransportHttpLimits, GarbageGets400AndTheServerKeepsServing) {
  TransportStack t;
  Collector<Error> ended;
  TestServer server(t.transport, [&](micro::Socket& s) { serve_unary(s, echo, &ended); });
  RawClient garbage(port_of(server.address()));
  ASSERT_TRUE(garbage.write(std::string("\x16\x03\x01\x02\x00 NOT HTTP AT ALL\r\n\r\n", 24)));
  ASSERT_TRUE(garbage.wait_closed(5s));
  EXPECT_EQ(garbage.received().rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << garbage.received();
  EXPECT_NE(garbage.received().find("Micro-Error: {\"id\":\"transport-http\",\"code\":400"),
            std::string::npos)
      << garbage.received();
  ASSERT_TRUE(ended.wait_for([](auto& v) { return !v.empty(); }));
  EXPECT_EQ(ended.snapshot()[0].code(), 400);
  EXPECT_NE(ended.snapshot()[0].detail().find("malformed HTTP request from 127.0.0.1:"),
            std::string::npos)
      << ended.snapshot()[0].detail();
  expect_served(t.transport, server.address());
}

TEST(TransportHttpLimits, AOneMebibyteHeaderIsRejectedWith431) {
  TransportStack t;
  Collector<Error> ended;
  TestServer server(t.transport, [&](micro::Socket& s) { serve_unary(s, echo, &ended); });
  RawClient big(port_of(server.address()));
  const std::string head = "POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(1 << 20, 'a') +
                           "\r\nContent-Length: 0\r\n\r\n";
  big.write(head);  // may be cut short: the server stops reading the head at max_header_bytes
  ASSERT_TRUE(big.wait_closed(5s));
  EXPECT_EQ(big.received().rfind("HTTP/1.1 431 Request Header Fields Too Large\r\n", 0), 0u)
      << big.received().substr(0, 200);
  ASSERT_TRUE(ended.wait_for([](auto& v) { return !v.empty(); }));
  EXPECT_EQ(ended.snapshot()[0].code(), 431);
  expect_served(t.transport, server.address());
}

TEST(TransportHttpLimits, AHeadOverTheLimitFromTheTransportsClientGetsA431Response) {
  TransportStack t;
  TestServer server(t.transport, [&](micro::Socket& s) { serve_unary(s, echo, nullptr); });
  auto dialed = t.transport.dial(server.address());
  ASSERT_TRUE(dialed.ok());
  Message m = request("/Echo.Call", "{}");
  m.header["X-Big"] = std::string(60000, 'a');  // over the server's 16 KiB
  ASSERT_TRUE(dialed.value.send(m).ok());
  auto reply = dialed.value.recv();
  ASSERT_TRUE(reply.ok() && reply.value) << reply.error.to_string();
  EXPECT_EQ(reply.value->header.at(":status"), "431");
  EXPECT_NE(reply.value->header.at("micro-error").find("max_header_bytes"), std::string::npos);
  // A field larger than HTTP/1 can carry here is refused before anything is written.
  m.header["X-Big"] = std::string(1 << 20, 'a');
  auto again = t.transport.dial(server.address());
  ASSERT_TRUE(again.ok());
  const Error refused = again.value.send(m);
  EXPECT_EQ(refused.code(), 400);
  EXPECT_NE(refused.detail().find("X-Big"), std::string::npos) << refused.detail();
  expect_served(t.transport, server.address());
}

TEST(TransportHttpLimits, ABodyOverTheLimitGets413) {
  TransportStack t("max_body_bytes = 65536\n");
  TestServer server(t.transport, [&](micro::Socket& s) { serve_unary(s, echo, nullptr); });
  auto dialed = t.transport.dial(server.address());
  ASSERT_TRUE(dialed.ok());
  ASSERT_TRUE(dialed.value.send(request("/Echo.Call", std::string(65537, 'x'))).ok());
  auto reply = dialed.value.recv();
  ASSERT_TRUE(reply.ok() && reply.value) << reply.error.to_string();
  EXPECT_EQ(reply.value->header.at(":status"), "413");
  EXPECT_EQ(reply.value->header.at("content-type"), "application/json");
  EXPECT_NE(reply.value->body.find("\"code\":413"), std::string::npos) << reply.value->body;
  // Exactly the limit is fine.
  expect_served(t.transport, server.address());
  auto again = t.transport.dial(server.address());
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again.value.send(request("/Echo.Call", std::string(65536, 'x'))).ok());
  auto ok = again.value.recv();
  ASSERT_TRUE(ok.ok() && ok.value);
  EXPECT_EQ(ok.value->header.at(":status"), "200");
}

TEST(TransportHttpLimits, AChunkedBodyOverTheLimitGets413) {
  TransportStack t("max_body_bytes = 1024\n");
  TestServer server(t.transport, [&](micro::Socket& s) { serve_unary(s, echo, nullptr); });
  RawClient chunked(port_of(server.address()));
  std::string bytes = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) bytes += "200\r\n" + std::string(512, 'x') + "\r\n";
  bytes += "0\r\n\r\n";
  chunked.write(bytes);
  ASSERT_TRUE(chunked.wait_closed(5s));
  EXPECT_EQ(chunked.received().rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u)
      << chunked.received();
}

TEST(TransportHttpLimits, AStreamFrameOverTheLimitFailsTheStreamWith413) {
  TransportStack t("max_body_bytes = 1024\n");
  Collector<Error> server_saw;
  TestServer server(t.transport, [&](micro::Socket& s) {
    s.recv([&](const Error&, std::optional<Message>) {
      s.recv([&](const Error& e, std::optional<Message>) { server_saw.push(e); });
    });
  });
  micro::DialOptions o;
  o.stream = true;
  auto dialed = t.transport.dial(server.address(), o);
  ASSERT_TRUE(dialed.ok());
  ASSERT_TRUE(dialed.value.send(request("/Big.Frames", "")).ok());
  ASSERT_TRUE(dialed.value.send(Message{{}, std::string(2048, 'x')}).ok());
  ASSERT_TRUE(server_saw.wait_for([](auto& v) { return !v.empty(); }));
  EXPECT_EQ(server_saw.snapshot()[0].code(), 413) << server_saw.snapshot()[0].to_string();
}

}  // namespace
