// Plaintext HTTP/2 with prior knowledge (option h2c): calls and streams over it, a listener that
// tells HTTP/2 from HTTP/1.1 by a connection's first bytes (micro's HTTP/1.1 clients and curl in
// both protocols), calls spread over http2_connections, and what goes wrong cleanly: an h2c
// client at an HTTP/1.1-only listener, h2c beside TLS, a silent or lying peer.
#include <map>
#include <set>
#include <thread>

#include "exchanges.hpp"
#include "harness.hpp"

namespace {

using namespace micro::testing::http;
using micro::Error;
using micro::Message;
using micro::testing::Collector;

constexpr const char* kH2c = "h2c = true\n";

TEST(TransportHttpH2c, UnaryCallsAndStreamsSpeakPlaintextHttp2) {
  TransportStack server_side(kH2c);
  TransportStack client_side(kH2c);
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  auto reply = call(client_side.transport, server.address(), "over h2c");
  ASSERT_TRUE(reply.ok()) << reply.error.to_string();
  EXPECT_EQ(reply.value.body, "over h2c");
  EXPECT_EQ(protocol_of(reply.value), "h2c");
  ASSERT_TRUE(seen.wait_for([](auto& v) { return v.size() == 1; }));
  EXPECT_EQ(protocol_of(seen.snapshot()[0].head), "h2c");

  StreamEcho echo_server;
  TestServer stream_server(server_side.transport, echo_server.serve());
  auto dialed = client_side.transport.dial(stream_server.address(), stream_options());
  ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
  micro::Socket& socket = dialed.value;
  Message open = request("/Chat.Talk", "");
  open.header["Micro-Stream"] = "1";
  ASSERT_TRUE(socket.send(open).ok());
  auto head = socket.recv();
  ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();
  EXPECT_EQ(protocol_of(*head.value), "h2c");
  constexpr int kMessages = 2000;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(socket.send(frame(std::to_string(i))).ok());
  ASSERT_TRUE(socket.close_send().ok());
  for (int i = 0; i < kMessages; ++i) {
    auto m = socket.recv();
    ASSERT_TRUE(m.ok() && m.value) << i << ": " << m.error.to_string();
    ASSERT_EQ(m.value->body, std::to_string(i));
  }
  auto end = socket.recv();
  EXPECT_TRUE(end.ok() && !end.value) << end.error.to_string();
}

// Sockets dialed at once from a cold start go over exactly http2_connections connections (2
// unless set), spread evenly: a dial goes on the connection with the fewest sockets. (Sockets
// that come and go one at a time spread by latency instead: a slower connection keeps its
// sockets longer and gets fewer.)
TEST(TransportHttpH2c, SocketsSpreadEvenlyOverTheConfiguredNumberOfConnections) {
  TransportStack server_side(kH2c);
  ASSERT_TRUE(server_side.stack);
  for (int connections : {0, 1, 3}) {  // 0: the option left out, so its default (2)
    SCOPED_TRACE(std::to_string(connections) + " connections");
    TransportStack client_side(
        std::string(kH2c) +
        (connections == 0 ? "" : "http2_connections = " + std::to_string(connections) + "\n"));
    if (connections == 0) connections = 2;
    ASSERT_TRUE(client_side.stack);
    Collector<Seen> seen;
    TestServer server(server_side.transport, recording_echo(seen));
    constexpr int kSockets = 90;
    std::vector<micro::Socket> sockets(kSockets);
    std::vector<std::thread> dialers;
    for (int i = 0; i < kSockets; ++i)
      dialers.emplace_back([&, i] {
        auto dialed = client_side.transport.dial(server.address());
        if (dialed.ok()) sockets[i] = std::move(dialed.value);
      });
    for (auto& t : dialers) t.join();
    for (int i = 0; i < kSockets; ++i) {  // all of them alive while each makes a call
      ASSERT_TRUE(sockets[i].valid()) << "dial " << i << " failed";
      ASSERT_TRUE(sockets[i].send(request("/Echo.Call", std::to_string(i))).ok());
      auto reply = sockets[i].recv();
      ASSERT_TRUE(reply.ok() && reply.value) << reply.error.to_string();
      EXPECT_EQ(protocol_of(*reply.value), "h2c");
    }
    ASSERT_TRUE(seen.wait_for([&](auto& v) { return v.size() == kSockets; }));
    std::map<std::string, int> per_connection;
    for (const auto& s : seen.snapshot()) ++per_connection[s.remote];
    ASSERT_EQ(per_connection.size(), static_cast<size_t>(connections));
    const int even = kSockets / connections;
    for (const auto& [remote, count] : per_connection) {
      EXPECT_GE(count, even * 3 / 4) << remote << " carried " << count;
      EXPECT_LE(count, even * 5 / 4) << remote << " carried " << count;
    }
  }
}

// Dials that wait for the first connections get those attempts' failure when nothing listens,
// each promptly; once something does listen there, a new burst again shares the configured
// connections.
TEST(TransportHttpH2c, DialsWaitingForFailedFirstConnectionsFailCleanlyThenRecover) {
  TransportStack server_side(kH2c);
  TransportStack client_side(kH2c);
  ASSERT_TRUE(server_side.stack && client_side.stack);
  std::string address;
  {
    TestServer gone(server_side.transport, [](micro::Socket&) {});
    address = gone.address();
  }  // nothing listens there now
  constexpr int kCalls = 20;
  const auto burst = [&] {
    std::vector<std::thread> callers;
    Collector<micro::Result<Message>> results;
    for (int i = 0; i < kCalls; ++i)
      callers.emplace_back([&, i] { results.push(call(client_side.transport, address, std::to_string(i))); });
    for (auto& t : callers) t.join();
    return results.snapshot();
  };
  const auto start = std::chrono::steady_clock::now();
  for (const auto& result : burst()) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error.code(), 503) << result.error.to_string();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);

  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen), address);  // the same port
  for (const auto& result : burst()) ASSERT_TRUE(result.ok()) << result.error.to_string();
  ASSERT_TRUE(seen.wait_for([&](auto& v) { return v.size() == kCalls; }));
  std::set<std::string> connections;
  for (const auto& s : seen.snapshot()) connections.insert(s.remote);
  EXPECT_EQ(connections.size(), 2u);
}

// An h2c listener still serves HTTP/1.1: micro's own clients without h2c, and curl both ways.
TEST(TransportHttpH2c, TheListenerServesHttp11AndHttp2ClientsAlike) {
  TransportStack server_side(kH2c);
  TransportStack http11_side;
  ASSERT_TRUE(server_side.stack && http11_side.stack);
  TestServer server(server_side.transport, [](micro::Socket& s) {
    serve_unary(
        s,
        [](const Message& request) {
          Message response;
          response.header["Content-Type"] = "application/json";
          const auto twice = request.header.find("x-twice");
          response.body = "{\"protocol\":\"" + protocol_of(request) + "\",\"body\":" +
                          request.body + "}";
          if (twice != request.header.end()) response.body += " " + twice->second;
          return response;
        },
        nullptr);
  });
  auto reply = call(http11_side.transport, server.address(), "1");
  ASSERT_TRUE(reply.ok()) << reply.error.to_string();
  EXPECT_EQ(reply.value.body, R"j({"protocol":"(none)","body":1})j");

  const std::string curl = "curl -s -S --max-time 10 -w '\\n%{http_version}' -H "
                           "'Content-Type: application/json' -d 2 ";
  EXPECT_EQ(run_command(curl + "http://" + server.address() + "/Greeter.Hello"),
            "{\"protocol\":\"(none)\",\"body\":2}\n1.1");
  EXPECT_EQ(run_command(curl + "--http2-prior-knowledge http://" + server.address() +
                        "/Greeter.Hello"),
            "{\"protocol\":\"h2c\",\"body\":2}\n2");
  // A repeated header arrives joined, as over HTTP/1.1.
  EXPECT_EQ(run_command(curl + "-H 'X-Twice: a' -H 'X-Twice: b' --http2-prior-knowledge http://" +
                        server.address() + "/Greeter.Hello"),
            "{\"protocol\":\"h2c\",\"body\":2} a, b\n2");
}

TEST(TransportHttpH2c, AnH2cClientAtAnHttp11OnlyListenerGetsAClearError) {
  TransportStack server_side;
  TransportStack client_side(kH2c);
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  auto reply = call(client_side.transport, server.address(), "which?");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error.code(), 502) << reply.error.to_string();
  EXPECT_NE(reply.error.detail().find("HTTP/1.1"), std::string::npos) << reply.error.to_string();
  EXPECT_NE(reply.error.detail().find("h2c"), std::string::npos) << reply.error.to_string();
}

TEST(TransportHttpH2c, H2cBesideTlsIsRefusedNamingTheOption) {
  auto built = micro::testing::build_stack(
      "[transport]\nmodule = \"transport-http\"\nh2c = true\ntls = true\n",
      {MICRO_KIND_TRANSPORT});
  ASSERT_FALSE(built.ok());
  const std::string all = micro::testing::errors_of(built);
  EXPECT_NE(all.find("h2c"), std::string::npos) << all;
  EXPECT_NE(all.find("TLS"), std::string::npos) << all;
}

// A peer that says nothing, stops inside the preface, or follows it with garbage is closed; the
// listener goes on serving both protocols.
TEST(TransportHttpH2c, SilentHalfPrefacedAndGarbagePeersAreClosed) {
  TransportStack server_side(std::string(kH2c) + "header_timeout_ms = 300\n");
  TransportStack client_side(kH2c);
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  const uint16_t port = port_of(server.address());
  const std::string preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  for (const std::string& bytes :
       {std::string(), preface.substr(0, 10),
        preface + std::string("\xff\xff\xff\x00\x00\x00\x00\x00\x01", 9) + std::string(64, 'x')}) {
    SCOPED_TRACE("sent " + std::to_string(bytes.size()) + " bytes");
    RawClient raw(port);
    ASSERT_TRUE(raw.connected());
    ASSERT_TRUE(raw.write(bytes));
    EXPECT_TRUE(raw.wait_closed(5s)) << "still open; received: " << raw.received();
  }
  EXPECT_EQ(seen.snapshot().size(), 0u);
  auto good = call(client_side.transport, server.address(), "still here");
  ASSERT_TRUE(good.ok()) << good.error.to_string();
  EXPECT_EQ(protocol_of(good.value), "h2c");
}

// A dial's timeout bounds each exchange's wait for its response, from that exchange's start: an
// exchange answered in time leaves nothing behind that cuts the next one short.
TEST(TransportHttpH2c, AResponseLaterThanTheReadTimeoutFailsWith408OnTime) {
  TransportStack server_side(kH2c);
  TransportStack client_side(kH2c);
  ASSERT_TRUE(server_side.stack && client_side.stack);
  TestServer server(server_side.transport, [](micro::Socket& s) {
    s.recv([&s](const Error& e, std::optional<Message> request) {
      if (!e.ok() || !request || request->body == "slow") return;  // never answered
      s.send(echo(*request), [](const Error&) {});
    });
  });
  micro::DialOptions options;
  options.timeout_ms = 400;
  auto dialed = client_side.transport.dial(server.address(), options);
  ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
  micro::Socket& socket = dialed.value;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(socket.send(request("/Echo.Call", "fast")).ok());
    auto reply = socket.recv();
    ASSERT_TRUE(reply.ok() && reply.value) << reply.error.to_string();
    std::this_thread::sleep_for(100ms);
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(socket.send(request("/Echo.Call", "slow")).ok());
  auto reply = socket.recv();
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error.code(), 408) << reply.error.to_string();
  EXPECT_NE(reply.error.detail().find("400 ms"), std::string::npos) << reply.error.to_string();
  EXPECT_GE(waited, 390ms);
  EXPECT_LT(waited, 5s);
}

TEST(TransportHttpH2c, CHeaderListsInAnyOrderSentFromACompletionArriveAsTheirMaps) {
  TransportStack server_side(kH2c);
  TransportStack client_side(kH2c);
  ASSERT_TRUE(server_side.stack && client_side.stack);
  c_header_lists_sent_from_completions_arrive_as_their_maps(server_side.transport,
                                                            client_side.transport, "h2c");
}

}  // namespace
