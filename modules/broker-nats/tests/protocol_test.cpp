// The protocol code on its own: what the parser makes of server bytes however they are split,
// and the header block both ways.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol.hpp"

namespace {

using namespace micro::broker_nats;
using micro::Error;

// Records every event as a line of text.
struct Recorder : ProtocolEvents {
  std::vector<std::string> events;
  Error on_info(std::string_view json) override {
    events.push_back("INFO " + std::string(json));
    return {};
  }
  Error on_msg(std::string_view subject, uint64_t sid, std::string_view reply,
               std::string_view header_block, std::string_view payload) override {
    events.push_back("MSG " + std::string(subject) + " " + std::to_string(sid) + " [" +
                     std::string(reply) + "] [" + std::string(header_block) + "] [" +
                     std::string(payload) + "]");
    return {};
  }
  Error on_ping() override {
    events.push_back("PING");
    return {};
  }
  Error on_pong() override {
    events.push_back("PONG");
    return {};
  }
  Error on_ok() override {
    events.push_back("+OK");
    return {};
  }
  Error on_err(std::string_view message) override {
    events.push_back("-ERR " + std::string(message));
    return {};
  }
};

const std::string kStream =
    "INFO {\"server_id\":\"x\",\"headers\":true,\"max_payload\":1048576}\r\n"
    "PING\r\n"
    "MSG orders 7 12\r\nhello\r\nworld\r\n"
    "msg orders 7 reply.to 0\r\n\r\n"
    "HMSG orders 9 24 29\r\nNATS/1.0\r\nk: v\r\nx: y\r\n\r\nhello\r\n"
    "+OK\r\n"
    "-ERR 'Unknown Protocol Operation'\r\n"
    "PONG\r\n";

const std::vector<std::string> kExpected = {
    "INFO {\"server_id\":\"x\",\"headers\":true,\"max_payload\":1048576}",
    "PING",
    "MSG orders 7 [] [] [hello\r\nworld]",
    "MSG orders 7 [reply.to] [] []",
    "MSG orders 9 [] [NATS/1.0\r\nk: v\r\nx: y\r\n\r\n] [hello]",
    "+OK",
    "-ERR Unknown Protocol Operation",
    "PONG",
};

TEST(NatsParser, ParsesEveryServerCommandInOneRead) {
  Parser parser;
  Recorder r;
  ASSERT_TRUE(parser.feed(kStream, r).ok());
  EXPECT_EQ(r.events, kExpected);
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(NatsParser, GivesTheSameResultHoweverTheBytesAreSplit) {
  for (size_t chunk : {size_t(1), size_t(2), size_t(3), size_t(7), size_t(64)}) {
    Parser parser;
    Recorder r;
    for (size_t i = 0; i < kStream.size(); i += chunk)
      ASSERT_TRUE(parser.feed(std::string_view(kStream).substr(i, chunk), r).ok()) << chunk;
    EXPECT_EQ(r.events, kExpected) << "chunks of " << chunk;
  }
}

Error feed_all(Parser& parser, const std::string& bytes) {
  Recorder r;
  return parser.feed(bytes, r);
}

TEST(NatsParser, RefusesAMessageAboveMaxPayloadBeforeReadingIt) {
  Parser parser(1024);
  const Error e = feed_all(parser, "MSG t 1 1025\r\n");
  EXPECT_EQ(e.code(), 502);
  EXPECT_NE(e.detail().find("exceeds max_payload 1024"), std::string::npos) << e.detail();
  Parser huge;
  EXPECT_EQ(feed_all(huge, "MSG t 1 99999999999999999999999\r\n").code(), 502);
}

TEST(NatsParser, RefusesGarbageWithAClearError) {
  struct Case {
    std::string bytes;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"HELLO\r\n", "unexpected protocol line from the server: 'HELLO'"},
      {"MSG t\r\n", "MSG with 1 arguments"},
      {"MSG t x 1\r\na\r\n", "non-numeric sid"},
      {"MSG t 1 +1\r\na\r\n", "not a number"},
      {"MSG t 1 1\r\nabc\r\n", "not followed by CRLF"},
      {"HMSG t 1 5 3\r\nabc\r\n", "header size exceeds its total size"},
      {"PING extra\r\n", "unexpected protocol line"},
      {std::string(Parser::kDefaultMaxControlLine + 1, 'A'), "control line longer than"},
  };
  for (const auto& c : cases) {
    Parser parser;
    const Error e = feed_all(parser, c.bytes);
    EXPECT_EQ(e.code(), 502) << c.bytes.substr(0, 40);
    EXPECT_NE(e.detail().find(c.says), std::string::npos) << e.detail();
    EXPECT_FALSE(feed_all(parser, "PING\r\n").ok()) << "a failed parser stays failed";
    parser.reset();
    EXPECT_TRUE(feed_all(parser, "PING\r\n").ok()) << "until reset";
  }
}

TEST(NatsParser, ReadsInfo) {
  ServerInfo info;
  ASSERT_TRUE(parse_info(R"({"server_id":"abc","version":"2.9.10","headers":true,)"
                         R"("max_payload":2048,"auth_required":true,"extra":[1,2]})",
                         info)
                  .ok());
  EXPECT_EQ(info.server_id, "abc");
  EXPECT_EQ(info.version, "2.9.10");
  EXPECT_TRUE(info.headers);
  EXPECT_TRUE(info.auth_required);
  EXPECT_EQ(info.max_payload, 2048u);
  EXPECT_EQ(parse_info("{", info).code(), 502);
  EXPECT_EQ(parse_info(R"({"max_payload":-1})", info).code(), 502);
  EXPECT_EQ(parse_info(R"({"max_payload":"big"})", info).code(), 502);
}

TEST(NatsCommands, WritesPubHpubSubUnsub) {
  std::string out;
  append_publish(out, "a.b", "", "hi");
  std::string block;
  ASSERT_TRUE(encode_headers({{"k", "v"}}, block).ok());
  append_publish(out, "a.b", block, "hi");
  append_subscribe(out, "a.*", "", 3);
  append_subscribe(out, "a.>", "workers", 4);
  append_unsubscribe(out, 3);
  EXPECT_EQ(out,
            "PUB a.b 2\r\nhi\r\n"
            "HPUB a.b 18 20\r\nNATS/1.0\r\nk: v\r\n\r\nhi\r\n"
            "SUB a.* 3\r\nSUB a.> workers 4\r\nUNSUB 3\r\n");
  const std::string connect = connect_command({"svc", "u", "p", "", true});
  EXPECT_EQ(connect.rfind("CONNECT {", 0), 0u);
  EXPECT_NE(connect.find("\"verbose\":false"), std::string::npos);
  EXPECT_NE(connect.find("\"headers\":true"), std::string::npos);
  EXPECT_NE(connect.find("\"name\":\"svc\""), std::string::npos);
  EXPECT_EQ(connect.substr(connect.size() - 2), "\r\n");
}

TEST(NatsHeaders, RoundTripAndRefuseWhatNatsCannotCarry) {
  const micro::Metadata header = {
      {"Content-Type", "text/plain"}, {"empty", ""}, {"spaces", "  a  b  "}, {"c", "x: y"}};
  std::string block;
  ASSERT_TRUE(encode_headers(header, block).ok());
  micro::Metadata back;
  ASSERT_TRUE(decode_headers(block, back).ok());
  EXPECT_EQ(back, header);
  EXPECT_TRUE(decode_headers("NATS/1.0 503\r\n\r\n", back).ok());
  EXPECT_TRUE(back.empty());
  EXPECT_EQ(encode_headers({{"bad key", "v"}}, block).code(), 400);
  EXPECT_EQ(encode_headers({{"k", "a\nb"}}, block).code(), 400);
  EXPECT_EQ(encode_headers({{"", "v"}}, block).code(), 400);
  EXPECT_FALSE(decode_headers("HTTP/1.1\r\n\r\n", back).ok());
  EXPECT_FALSE(decode_headers("NATS/1.0\r\nnocolon\r\n\r\n", back).ok());
  EXPECT_FALSE(decode_headers("NATS/1.0\r\nk: v\r\n", back).ok());
}

}  // namespace
