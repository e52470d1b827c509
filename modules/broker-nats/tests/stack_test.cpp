// broker-nats in a whole stack: server-rpc subscribes a handler, client-rpc publishes, through a
// real nats-server. Also a fake server (an Asio acceptor in the test) that misbehaves.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "micro/client.hpp"
#include "micro/server.hpp"
#include "nats_fixture.hpp"

namespace {

using namespace nats_test;
using micro::Error;
using micro::Message;
using micro::testing::Collector;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TEST(BrokerNatsStack, ServerSubscriberReceivesWhatTheClientPublishes) {
  NatsServer nats;
  ASSERT_TRUE(nats.start());
  auto stack = micro::testing::require_stack(
      "[registry]\nmodule = \"registry-memory\"\n"
      "[codec]\nmodule = [\"codec-json\"]\n"
      "[broker]\nmodule = \"broker-nats\"\n" + servers_option(nats.url()),
      {MICRO_KIND_SERVER, MICRO_KIND_CLIENT});
  ASSERT_NE(stack, nullptr);
  micro::Server server(stack->server());
  micro::Client client(stack->client());
  Collector<Message> got;
  ASSERT_TRUE(server
                  .subscribe("greetings",
                             [&](std::string_view topic, const Message& m) {
                               EXPECT_EQ(topic, "greetings");
                               got.push(m);
                               return Error{};
                             })
                  .ok());
  ASSERT_TRUE(server.start().ok());
  ASSERT_TRUE(micro::Broker(stack->broker()).connect().ok());
  ASSERT_TRUE(sync(micro::Broker(stack->broker())));
  const Message hello{{{"content-type", "application/json"}}, R"({"name":"John"})"};
  ASSERT_TRUE(client.publish("greetings", hello).ok());
  ASSERT_TRUE(got.wait_for([](const auto& v) { return !v.empty(); }));
  EXPECT_EQ(got.snapshot()[0].body, hello.body);
  EXPECT_EQ(got.snapshot()[0].header, hello.header);
  EXPECT_TRUE(server.stop().ok());
}

// A fake NATS server: one accepted connection at a time, read and written synchronously on the
// test's own thread (reads give up after 5 s, so a broken module cannot hang the test).
class FakeServer {
 public:
  FakeServer() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
  std::string url() const {
    return "nats://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }

  void accept() {
    socket_ = std::make_unique<tcp::socket>(io_);
    acceptor_.accept(*socket_);
    timeval five{5, 0};
    setsockopt(socket_->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &five, sizeof(five));
    input_.consume(input_.size());
  }
  void send(const std::string& bytes) {
    boost::system::error_code ec;  // the client may close before reading it all
    asio::write(*socket_, asio::buffer(bytes), ec);
  }
  // The next line the client sent (without CRLF); "" on EOF or timeout.
  std::string line() {
    boost::system::error_code ec;
    const size_t n = asio::read_until(*socket_, input_, "\r\n", ec);
    if (ec) return {};
    std::string out(asio::buffers_begin(input_.data()), asio::buffers_begin(input_.data()) + n - 2);
    input_.consume(n);
    return out;
  }
  // INFO, then CONNECT and PING read, PONG sent. Returns the CONNECT line.
  std::string handshake(const std::string& info = R"({"server_id":"fake","version":"2.9.0",)"
                                                  R"("headers":true,"max_payload":1048576})") {
    send("INFO " + info + "\r\n");
    const std::string connect = line();
    EXPECT_EQ(line(), "PING");
    send("PONG\r\n");
    return connect;
  }
  // True when the client closes the connection (within 5 s).
  bool client_closed() {
    boost::system::error_code ec;
    for (;;) {
      asio::read(*socket_, input_, asio::transfer_at_least(1), ec);
      if (ec) return ec == asio::error::eof || ec == asio::error::connection_reset;
      input_.consume(input_.size());
    }
  }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::unique_ptr<tcp::socket> socket_;
  asio::streambuf input_;
};

struct Garbage {
  const char* name;
  std::string bytes;
  std::string info;
};

// gtest names the cases by `name`; this keeps ctest from printing the struct's bytes.
void PrintTo(const Garbage& garbage, std::ostream* out) { *out << garbage.name; }

class BrokerNatsFakeServer : public ::testing::TestWithParam<Garbage> {};

// After the garbage the module drops the connection, reconnects, sends the same SUB (same sid)
// and delivers again.
TEST_P(BrokerNatsFakeServer, GarbageFromTheServerMeansReconnectNotCrash) {
  FakeServer fake;
  auto stack = broker_stack(servers_option(fake.url()));
  ASSERT_NE(stack, nullptr);
  micro::Broker broker(stack->broker());
  Collector<std::string> got;
  auto sub = broker.subscribe("t", [&](std::string_view, const Message& m) {
    got.push(m.body);
    return Error{};
  });
  ASSERT_TRUE(sub.ok());

  fake.accept();
  const std::string connect = fake.handshake(GetParam().info);
  EXPECT_EQ(connect.rfind("CONNECT {", 0), 0u) << connect;
  EXPECT_NE(connect.find("\"verbose\":false"), std::string::npos) << connect;
  const std::string sub_line = fake.line();
  EXPECT_EQ(sub_line, "SUB t 1");
  fake.send("MSG t 1 5\r\nfirst\r\n");
  ASSERT_TRUE(got.wait_for([](const auto& v) { return v.size() == 1; }));
  fake.send(GetParam().bytes);
  EXPECT_TRUE(fake.client_closed()) << "the module drops a connection that sent garbage";

  fake.accept();
  fake.handshake();
  EXPECT_EQ(fake.line(), sub_line) << "resubscribed with the same sid";
  fake.send("MSG t 1 6\r\nsecond\r\n");
  ASSERT_TRUE(got.wait_for([](const auto& v) { return v.size() == 2; }));
  EXPECT_EQ(got.snapshot(), (std::vector<std::string>{"first", "second"}));
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, BrokerNatsFakeServer,
    ::testing::Values(
        Garbage{"UnknownOperation", "HELLO THERE\r\n", R"({"headers":true})"},
        Garbage{"OversizedMsg", "MSG t 1 2000\r\n",
                R"({"headers":true,"max_payload":1024})"},
        Garbage{"SizeNotANumber", "MSG t 1 -5\r\nhello\r\n", R"({})"},
        Garbage{"PayloadLongerThanItsSize", "MSG t 1 2\r\nhello\r\n", R"({})"},
        Garbage{"EndlessControlLine", std::string(70 * 1024, 'A'), R"({})"},
        Garbage{"BinaryNoise", std::string("\x00\xff\r\n\x01", 5), R"({})"},
        Garbage{"HeaderSizeAboveTotal", "HMSG t 1 10 5\r\nhello\r\n", R"({"headers":true})"}),
    [](const auto& info) { return std::string(info.param.name); });

// The module answers the server's PING, sends its own every ping_interval_ms, and drops a
// connection that leaves max_pings_out of them unanswered.
TEST(BrokerNatsFakeServerPing, AnswersPingsAndDropsAServerThatStopsAnswering) {
  FakeServer fake;
  auto stack = broker_stack(servers_option(fake.url()) +
                            "ping_interval_ms = 100\nmax_pings_out = 2\n");
  ASSERT_NE(stack, nullptr);
  fake.accept();
  fake.handshake();
  fake.send("PING\r\n");
  EXPECT_EQ(fake.line(), "PONG");
  EXPECT_EQ(fake.line(), "PING");
  fake.send("PONG\r\n");  // the first is answered ...
  EXPECT_EQ(fake.line(), "PING");
  EXPECT_EQ(fake.line(), "PING");  // ... the next two are not
  EXPECT_TRUE(fake.client_closed()) << "a silent server is dropped";
  fake.accept();  // and the module reconnects
  fake.handshake();
  EXPECT_TRUE(micro::Broker(stack->broker()).connect().ok());
}

// Runs connect() while the fake server answers every attempt with `serve`; returns its result.
template <class Serve>
Error connect_against(FakeServer& fake, const micro::Broker& broker, Serve serve) {
  Collector<Error> result;
  broker.connect([&](const Error& e) { result.push(e); });
  for (int attempt = 0; attempt < 50 && result.snapshot().empty(); ++attempt) {
    fake.accept();
    serve(attempt);
    EXPECT_TRUE(fake.client_closed()) << "the module drops the connection";
  }
  EXPECT_TRUE(result.wait_for([](const auto& v) { return !v.empty(); }));
  return result.snapshot().empty() ? Error{} : result.snapshot()[0];
}

TEST(BrokerNatsFakeServerInfo, InfoThatIsNotJsonIsAClearConnectError) {
  FakeServer fake;
  auto stack = broker_stack(servers_option(fake.url()) + "connect_timeout_ms = 500\n");
  ASSERT_NE(stack, nullptr);
  micro::Broker broker(stack->broker());
  const Error e = connect_against(fake, broker, [&](int) { fake.send("INFO {not json\r\n"); });
  EXPECT_EQ(e.code(), 503);
  EXPECT_NE(e.detail().find("INFO is not a JSON object"), std::string::npos) << e.detail();
}

TEST(BrokerNatsFakeServerInfo, AuthorizationErrorIsReported) {
  FakeServer fake;
  auto stack = broker_stack(servers_option(fake.url()) +
                            "connect_timeout_ms = 500\nuser = \"u\"\npass = \"secret\"\n");
  ASSERT_NE(stack, nullptr);
  micro::Broker broker(stack->broker());
  const Error e = connect_against(fake, broker, [&](int attempt) {
    fake.send("INFO {\"auth_required\":true}\r\n");
    const std::string connect = fake.line();
    if (attempt == 0) {
      EXPECT_NE(connect.find("\"user\":\"u\""), std::string::npos) << connect;
      EXPECT_NE(connect.find("\"pass\":\"secret\""), std::string::npos) << connect;
    }
    EXPECT_EQ(fake.line(), "PING");
    fake.send("-ERR 'Authorization Violation'\r\n");
  });
  EXPECT_EQ(e.code(), 503);
  EXPECT_NE(e.detail().find("refused the connection: Authorization Violation"),
            std::string::npos)
      << e.detail();
}

}  // namespace
