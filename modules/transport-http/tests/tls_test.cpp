// TLS and HTTP/2 over transport-http: verification (right CA, wrong CA, expired certificate,
// wrong name, plaintext at a TLS port), ALPN's choice of protocol, and HTTP/2 multiplexing
// (concurrent calls on one connection, a long bidi stream, a cancelled stream beside others),
// plus curl --http2 against a server socket. Certificates are made per test
// (micro/testing/tls_certs.hpp).
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <set>
#include <thread>

#include "micro/testing/tls_certs.hpp"
#include "exchanges.hpp"
#include "harness.hpp"

namespace {

using namespace micro::testing::http;
using micro::Error;
using micro::Message;
using micro::testing::Collector;
using micro::testing::tls::TestCerts;

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string server_options(const TestCerts& certs, bool http2 = true,
                           const std::string& cert = "") {
  return "tls_cert = " + quoted(cert.empty() ? certs.cert : cert) +
         "\ntls_key = " + quoted(certs.key) + "\n" + (http2 ? "" : "http2 = false\n");
}

std::string client_options(const std::string& ca, bool http2 = true) {
  return "tls_ca = " + quoted(ca) + "\n" + (http2 ? "" : "http2 = false\n");
}

// ---- TLS: who is trusted

TEST(TransportHttpTls, AClientWithTheRightCaMakesUnaryCallsAndStreams) {
  TestCerts certs;
  for (bool http2 : {false, true}) {
    SCOPED_TRACE(http2 ? "h2" : "http/1.1");
    TransportStack server_side(server_options(certs));
    TransportStack client_side(client_options(certs.ca, http2));
    ASSERT_TRUE(server_side.stack && client_side.stack);
    StreamEcho streams;
    Collector<Seen> seen;
    TestServer server(server_side.transport, [&](micro::Socket& s) {
      // Both kinds on one listener: a peek at the head decides.
      s.recv([&, sp = &s](const Error& e, std::optional<Message> head) {
        if (!e.ok() || !head) return;
        if (head->header.count("micro-stream") != 0) {
          streams.heads.push(*head);
          Message reply;
          reply.header["Content-Type"] = "application/json";
          return sp->send(reply, [&, sp](const Error& sent) {
            if (sent.ok()) streams.echo_frames(*sp, "/Chat.Talk");
          });
        }
        seen.push({*head, std::string(sp->remote_address())});
        sp->send(echo(*head), [](const Error&) {});
      });
    });

    auto reply = call(client_side.transport, server.address(), R"({"name":"John"})");
    ASSERT_TRUE(reply.ok()) << reply.error.to_string();
    EXPECT_EQ(reply.value.header.at(":status"), "200");
    EXPECT_EQ(reply.value.body, R"({"name":"John"})");
    EXPECT_EQ(protocol_of(reply.value), http2 ? "h2" : "http/1.1");
    ASSERT_TRUE(seen.wait_for([](auto& v) { return v.size() == 1; }));
    EXPECT_EQ(protocol_of(seen.snapshot()[0].head), http2 ? "h2" : "http/1.1");

    auto dialed = client_side.transport.dial(server.address(), stream_options());
    ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
    micro::Socket& socket = dialed.value;
    ASSERT_TRUE(socket.send(request("/Chat.Talk", "one")).ok());
    ASSERT_TRUE(socket.send(frame("two")).ok());
    ASSERT_TRUE(socket.close_send().ok());
    auto head = socket.recv();
    ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();
    EXPECT_EQ(head.value->header.at(":status"), "200");
    for (const char* expected : {"one", "two"}) {
      auto m = socket.recv();
      ASSERT_TRUE(m.ok() && m.value) << m.error.to_string();
      EXPECT_EQ(m.value->body, expected);
    }
    auto end = socket.recv();
    EXPECT_TRUE(end.ok() && !end.value) << end.error.to_string();
    ASSERT_TRUE(streams.heads.wait_for([](auto& v) { return v.size() == 1; }));
    EXPECT_EQ(protocol_of(streams.heads.snapshot()[0]), http2 ? "h2" : "http/1.1");
  }
}

// Each bad case fails the dial with an error naming the cause; the server goes on serving.
void expect_refused(const TestCerts& certs, const std::string& server_opts,
                    const std::string& client_opts, const std::vector<std::string>& phrases) {
  TransportStack server_side(server_opts);
  TransportStack client_side(client_opts);
  TransportStack good_client(client_options(certs.ca));
  ASSERT_TRUE(server_side.stack && client_side.stack && good_client.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  auto reply = call(client_side.transport, server.address(), "{}");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error.code(), 503) << reply.error.to_string();
  for (const auto& phrase : phrases)
    EXPECT_NE(reply.error.detail().find(phrase), std::string::npos)
        << "'" << phrase << "' not in: " << reply.error.detail();
  EXPECT_EQ(seen.snapshot().size(), 0u);
  // The server is unharmed.
  if (server_opts.find(certs.expired) == std::string::npos) {
    auto good = call(good_client.transport, server.address(), "still here");
    ASSERT_TRUE(good.ok()) << good.error.to_string();
    EXPECT_EQ(good.value.body, "still here");
  }
}

TEST(TransportHttpTls, AServerSignedByAnotherCaIsRefused) {
  TestCerts certs;
  expect_refused(certs, server_options(certs), client_options(certs.other),
                 {"TLS handshake with 127.0.0.1:", "certificate verify failed",
                  "unable to get local issuer certificate"});
}

TEST(TransportHttpTls, AnExpiredServerCertificateIsRefused) {
  TestCerts certs;
  expect_refused(certs, server_options(certs, true, certs.expired), client_options(certs.ca),
                 {"certificate verify failed", "certificate has expired"});
}

TEST(TransportHttpTls, ACertificateForAnotherNameIsRefused) {
  TestCerts certs;
  expect_refused(certs, server_options(certs),
                 client_options(certs.ca) + "tls_server_name = \"api.example.com\"\n",
                 {"certificate verify failed", "hostname mismatch"});
}

TEST(TransportHttpTls, TheServerNameOptionVerifiesThatNameInsteadOfTheDialedHost) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack client_side(client_options(certs.ca) + "tls_server_name = \"localhost\"\n");
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  auto reply = call(client_side.transport, server.address(), "by name");
  ASSERT_TRUE(reply.ok()) << reply.error.to_string();
  EXPECT_EQ(reply.value.body, "by name");
}

TEST(TransportHttpTls, InsecureSkipVerifyAcceptsAnyCertificate) {
  TestCerts certs;
  TransportStack server_side(server_options(certs, true, certs.expired));
  TransportStack client_side("tls_insecure_skip_verify = true\n");
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  auto reply = call(client_side.transport, server.address(), "unchecked");
  ASSERT_TRUE(reply.ok()) << reply.error.to_string();
  EXPECT_EQ(reply.value.body, "unchecked");
}

TEST(TransportHttpTls, PlaintextHttpAtATlsPortGetsA400SayingSo) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack plain;
  TransportStack good_client(client_options(certs.ca));
  ASSERT_TRUE(server_side.stack && plain.stack && good_client.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  auto reply = call(plain.transport, server.address(), "{}");
  ASSERT_TRUE(reply.ok()) << reply.error.to_string();
  EXPECT_EQ(reply.value.header.at(":status"), "400");
  ASSERT_EQ(reply.value.header.count("micro-error"), 1u);
  EXPECT_NE(reply.value.header.at("micro-error").find("plaintext HTTP sent to the TLS port"),
            std::string::npos)
      << reply.value.header.at("micro-error");
  EXPECT_EQ(seen.snapshot().size(), 0u);
  auto good = call(good_client.transport, server.address(), "still here");
  ASSERT_TRUE(good.ok()) << good.error.to_string();
  EXPECT_EQ(good.value.body, "still here");
}

TEST(TransportHttpTls, BadCertificateFilesAreRefusedNamingTheOption) {
  TestCerts certs;
  auto built = micro::testing::build_stack("[transport]\nmodule = \"transport-http\"\n" +
                                               server_options(certs, true, certs.dir + "/nope.pem"),
                                           {MICRO_KIND_TRANSPORT});
  ASSERT_FALSE(built.ok());
  const std::string all = micro::testing::errors_of(built);
  EXPECT_NE(all.find("tls_cert"), std::string::npos) << all;
  EXPECT_NE(all.find("nope.pem"), std::string::npos) << all;
}

// ---- ALPN: HTTP/2 when both sides allow it

TEST(TransportHttpTls, Http2IsUsedOnlyWhenBothSidesAllowIt) {
  TestCerts certs;
  struct Case {
    bool server_h2, client_h2;
    const char* expected;
  };
  for (const Case& c : {Case{true, true, "h2"}, Case{true, false, "http/1.1"},
                        Case{false, true, "http/1.1"}}) {
    SCOPED_TRACE(std::string("server h2 ") + (c.server_h2 ? "on" : "off") + ", client h2 " +
                 (c.client_h2 ? "on" : "off"));
    TransportStack server_side(server_options(certs, c.server_h2));
    TransportStack client_side(client_options(certs.ca, c.client_h2));
    ASSERT_TRUE(server_side.stack && client_side.stack);
    Collector<Seen> seen;
    TestServer server(server_side.transport, recording_echo(seen));
    auto reply = call(client_side.transport, server.address(), "which?");
    ASSERT_TRUE(reply.ok()) << reply.error.to_string();
    EXPECT_EQ(protocol_of(reply.value), c.expected);
    ASSERT_TRUE(seen.wait_for([](auto& v) { return v.size() == 1; }));
    EXPECT_EQ(protocol_of(seen.snapshot()[0].head), c.expected);
  }
}

// ---- HTTP/2 multiplexing

TEST(TransportHttpH2, AHundredConcurrentCallsShareOneConnection) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack client_side(client_options(certs.ca) + "http2_connections = 1\n");
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  // From a cold start: the dials made while the first connection is set up wait for it. (One
  // connection asked for; h2c_test.cpp counts other numbers.)
  constexpr int kCalls = 100;
  std::vector<std::thread> callers;
  Collector<std::pair<int, micro::Result<Message>>> results;
  for (int i = 0; i < kCalls; ++i)
    callers.emplace_back([&, i] {
      results.push({i, call(client_side.transport, server.address(), "call " + std::to_string(i))});
    });
  for (auto& t : callers) t.join();
  for (auto& [i, result] : results.snapshot()) {
    ASSERT_TRUE(result.ok()) << i << ": " << result.error.to_string();
    EXPECT_EQ(result.value.body, "call " + std::to_string(i));
    EXPECT_EQ(protocol_of(result.value), "h2");
  }
  ASSERT_TRUE(seen.wait_for([&](auto& v) { return v.size() == kCalls; }));
  std::set<std::string> connections;
  for (const auto& s : seen.snapshot()) connections.insert(s.remote);
  EXPECT_EQ(connections.size(), 1u) << "the calls came over " << connections.size()
                                    << " connections";
}

// As over HTTP/1.1 (unary_test.cpp): on HTTP/2 an ascending C list sent on the connection's
// strand goes to nghttp2 as it is, any other list takes the Message path.
TEST(TransportHttpH2, CHeaderListsInAnyOrderSentFromACompletionArriveAsTheirMaps) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack client_side(client_options(certs.ca));
  ASSERT_TRUE(server_side.stack && client_side.stack);
  c_header_lists_sent_from_completions_arrive_as_their_maps(server_side.transport,
                                                            client_side.transport, "h2");
}

TEST(TransportHttpH2, TenThousandMessagesEachWayArriveCompleteAndInOrder) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack client_side(client_options(certs.ca));
  ASSERT_TRUE(server_side.stack && client_side.stack);
  StreamEcho echo_server;
  TestServer server(server_side.transport, echo_server.serve());
  auto dialed = client_side.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
  micro::Socket& socket = dialed.value;
  Message open = request("/Chat.Talk", "");
  open.header["Micro-Stream"] = "1";  // as client-rpc sends it: still one micro-stream header
  ASSERT_TRUE(socket.send(open).ok());
  auto head = socket.recv();
  ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();
  EXPECT_EQ(protocol_of(*head.value), "h2");

  constexpr int kMessages = 10000;
  Collector<Error> sent;
  std::function<void(int)> send_from = [&](int next) {
    if (next == kMessages) return socket.close_send([&](const Error& e) { sent.push(e); });
    socket.send(frame(std::to_string(next)), [&, next](const Error& e) {
      if (!e.ok()) return sent.push(e);
      send_from(next + 1);
    });
  };
  send_from(0);
  std::vector<std::string> got;
  got.reserve(kMessages);
  std::optional<Error> end;
  while (!end) {
    auto m = socket.recv();
    if (!m.ok() || !m.value)
      end = m.error;
    else
      got.push_back(std::move(m.value->body));
  }
  EXPECT_TRUE(end->ok()) << end->to_string();
  ASSERT_TRUE(sent.wait_for([](auto& v) { return !v.empty(); }));
  EXPECT_TRUE(sent.snapshot()[0].ok()) << sent.snapshot()[0].to_string();
  ASSERT_EQ(got.size(), static_cast<size_t>(kMessages));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(got[i], std::to_string(i)) << "at " << i;
}

TEST(TransportHttpH2, ACancelledStreamDoesNotDisturbOthersOnTheConnection) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack client_side(client_options(certs.ca) + "http2_connections = 1\n");
  ASSERT_TRUE(server_side.stack && client_side.stack);
  StreamEcho echo_server;
  TestServer server(server_side.transport, echo_server.serve());
  auto a = client_side.transport.dial(server.address(), stream_options());
  auto b = client_side.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a.value.send(request("/A", "a1")).ok());
  ASSERT_TRUE(b.value.send(request("/B", "b1")).ok());
  for (auto* s : {&a.value, &b.value}) {
    auto head = s->recv();
    ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();
    EXPECT_EQ(protocol_of(*head.value), "h2");
    auto echoed = s->recv();
    ASSERT_TRUE(echoed.ok() && echoed.value) << echoed.error.to_string();
  }

  a.value.close();  // RST_STREAM(CANCEL)
  ASSERT_TRUE(echo_server.ended.wait_for([](auto& v) { return !v.empty(); }));
  const auto [path, why] = echo_server.ended.snapshot()[0];
  EXPECT_EQ(path, "/A");
  EXPECT_EQ(why.code(), 499) << why.to_string();
  EXPECT_NE(why.detail().find("cancelled"), std::string::npos) << why.to_string();

  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(b.value.send(frame("b" + std::to_string(i))).ok());
    auto echoed = b.value.recv();
    ASSERT_TRUE(echoed.ok() && echoed.value) << echoed.error.to_string();
    EXPECT_EQ(echoed.value->body, "b" + std::to_string(i));
  }
  ASSERT_TRUE(b.value.close_send().ok());
  auto end = b.value.recv();
  EXPECT_TRUE(end.ok() && !end.value) << end.error.to_string();
  ASSERT_TRUE(echo_server.ended.wait_for([](auto& v) { return v.size() == 2; }));
  EXPECT_EQ(echo_server.ended.snapshot()[1].first, "/B");
  EXPECT_TRUE(echo_server.ended.snapshot()[1].second.ok());
  // The connection still carries new calls.
  auto c = client_side.transport.dial(server.address(), stream_options());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.value.send(request("/C", "c1")).ok());
  auto head = c.value.recv();
  ASSERT_TRUE(head.ok() && head.value) << head.error.to_string();
  auto echoed = c.value.recv();
  ASSERT_TRUE(echoed.ok() && echoed.value) << echoed.error.to_string();
  EXPECT_EQ(echoed.value->body, "c1");
  EXPECT_EQ(echo_server.heads.snapshot().size(), 3u);
}

// A TLS client that negotiates h2, sends the HTTP/2 preface and then `bytes`; returns whether the
// server closed the connection within a few seconds, and what it sent back meanwhile.
bool h2_garbage_closes(const TestCerts& certs, uint16_t port, const std::string& bytes,
                       std::string& received) {
  namespace net = boost::asio;
  net::io_context ioc;
  net::ssl::context ctx(net::ssl::context::tls_client);
  ctx.load_verify_file(certs.ca);
  ctx.set_verify_mode(net::ssl::verify_peer);
  net::ssl::stream<net::ip::tcp::socket> stream(ioc, ctx);
  const unsigned char alpn[] = {2, 'h', '2'};
  SSL_set_alpn_protos(stream.native_handle(), alpn, sizeof alpn);
  stream.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
  timeval timeout{5, 0};
  ::setsockopt(stream.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout,
               sizeof timeout);
  stream.handshake(net::ssl::stream_base::client);
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  net::write(stream, net::buffer(preface + bytes));
  char buf[4096];
  for (;;) {
    boost::system::error_code ec;
    const size_t n = stream.read_some(net::buffer(buf), ec);
    received.append(buf, n);
    if (ec) return ec != net::error::would_block && ec != net::error::try_again;
  }
}

TEST(TransportHttpH2, GarbageAfterThePrefaceClosesOnlyThatConnection) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  TransportStack client_side(client_options(certs.ca));
  ASSERT_TRUE(server_side.stack && client_side.stack);
  Collector<Seen> seen;
  TestServer server(server_side.transport, recording_echo(seen));
  const uint16_t port = port_of(server.address());
  // Not a SETTINGS frame first; then a frame of an absurd length; then noise.
  const std::vector<std::string> garbage = {
      std::string("\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x01\x00\x00", 13),
      std::string("\xff\xff\xff\x00\x00\x00\x00\x00\x01", 9) + std::string(64, 'x'),
      std::string(1000, '\xee')};
  for (const auto& bytes : garbage) {
    std::string received;
    EXPECT_TRUE(h2_garbage_closes(certs, port, bytes, received));
  }
  EXPECT_EQ(seen.snapshot().size(), 0u);
  auto good = call(client_side.transport, server.address(), "still here");
  ASSERT_TRUE(good.ok()) << good.error.to_string();
  EXPECT_EQ(good.value.body, "still here");
  EXPECT_EQ(protocol_of(good.value), "h2");
}

TEST(TransportHttpH2, CurlSpeaksHttp2ToAServerSocket) {
  TestCerts certs;
  TransportStack server_side(server_options(certs));
  ASSERT_TRUE(server_side.stack);
  TestServer server(server_side.transport, [](micro::Socket& s) {
    serve_unary(
        s,
        [](const Message& request) {
          Message response;
          response.header["Content-Type"] = "application/json";
          const bool ok = request.header.count(":path") &&
                          request.header.at(":path") == "/Greeter.Hello" &&
                          request.body == R"({"name":"John"})" &&
                          protocol_of(request) == "h2";
          response.body = ok ? R"({"message":"Hello John"})" : R"({"unexpected":true})";
          return response;
        },
        nullptr);
  });
  const std::string out = run_command(
      "curl -s -S --max-time 10 --http2 --cacert " + certs.ca +
      " -w '\\n%{http_version}' -H 'Content-Type: application/json' -d '{\"name\":\"John\"}' "
      "https://" +
      server.address() + "/Greeter.Hello");
  EXPECT_EQ(out, "{\"message\":\"Hello John\"}\n2");
}

}  // namespace
