// The request parser on its own, driven from a buffer as the fuzzer (fuzz_request.cpp) drives it;
// and the direct head writers against Beast's serializer.
#include <gtest/gtest.h>

#include "frame.hpp"
#include "message_reader.hpp"
#include "micro/callback.hpp"
#include "wire.hpp"

#include <map>
#include <sstream>

namespace {

using micro::transport_http::frame_header;
using micro::transport_http::FrameKind;
using micro::transport_http::Limits;
using micro::transport_http::parse_request;

std::string frame(FrameKind kind, const std::string& payload) {
  const auto header = frame_header(kind, static_cast<uint32_t>(payload.size()));
  return std::string(header.data(), header.size()) + payload;
}

std::string chunk(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

TEST(ParseRequest, AUnaryRequestGivesLowerCaseHeadersPseudoHeadersAndTheBody) {
  const auto parsed = parse_request(
      "PUT /Greeter.Hello?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
      "X-Twice: a\r\nx-twice: b\r\nContent-Length: 4\r\n\r\nbody",
      Limits{});
  ASSERT_TRUE(parsed.error.ok()) << parsed.error.to_string();
  EXPECT_TRUE(parsed.complete);
  EXPECT_FALSE(parsed.stream);
  EXPECT_EQ(parsed.message.header.at(":method"), "PUT");
  EXPECT_EQ(parsed.message.header.at(":path"), "/Greeter.Hello?x=1");
  EXPECT_EQ(parsed.message.header.at("content-type"), "application/json");
  EXPECT_EQ(parsed.message.header.at("x-twice"), "a, b");
  EXPECT_EQ(parsed.message.body, "body");
}

TEST(ParseRequest, AStreamRequestGivesItsFramesAcrossChunkBoundaries) {
  const std::string body = frame(FrameKind::message, "one") + frame(FrameKind::error, "{}") +
                           frame(FrameKind::message, "");
  const std::string request =
      "POST /S HTTP/1.1\r\nHost: h\r\nMicro-Stream: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunk(body.substr(0, 3)) + chunk(body.substr(3, 7)) + chunk(body.substr(10)) + "0\r\n\r\n";
  const auto parsed = parse_request(request, Limits{});
  ASSERT_TRUE(parsed.error.ok()) << parsed.error.to_string();
  EXPECT_TRUE(parsed.complete);
  EXPECT_TRUE(parsed.stream);
  ASSERT_EQ(parsed.frames.size(), 3u);
  EXPECT_EQ(parsed.frames[0].payload, "one");
  EXPECT_EQ(parsed.frames[1].kind, FrameKind::error);
  EXPECT_EQ(parsed.frames[2].payload, "");
}

TEST(ParseRequest, ARepeatedStreamMarkerIsReadAsTheHeaderMapReadsIt) {
  // Found by fuzz_request: the marker was read from the first field ("", not a stream) while
  // the header map said micro-stream: 1, so the request changed meaning when sent again.
  const std::string body = frame(FrameKind::message, "one");
  const auto parsed = parse_request("POST /S HTTP/1.1\r\nHost: h\r\nMicro-Stream:\r\n"
                                    "Micro-Stream: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                        chunk(body) + "0\r\n\r\n",
                                    Limits{});
  ASSERT_TRUE(parsed.error.ok()) << parsed.error.to_string();
  EXPECT_TRUE(parsed.stream);
  EXPECT_EQ(parsed.message.header.at("micro-stream"), "1");
  ASSERT_EQ(parsed.frames.size(), 1u);
  EXPECT_EQ(parsed.frames[0].payload, "one");

  const auto twice = parse_request(
      "POST /S HTTP/1.1\r\nHost: h\r\nMicro-Stream: 1\r\nMicro-Stream: 1\r\n"
      "Content-Length: 2\r\n\r\nab",
      Limits{});
  ASSERT_TRUE(twice.error.ok()) << twice.error.to_string();
  EXPECT_FALSE(twice.stream) << "\"1, 1\" is not the marker";
  EXPECT_EQ(twice.message.body, "ab");
}

TEST(ParseRequest, GarbageIs400) {
  EXPECT_EQ(parse_request("\x16\x03\x01 hello\r\n\r\n", Limits{}).error.code(), 400);
  EXPECT_EQ(parse_request("GET / HTTP/1.1\r\nBad Header\r\n\r\n", Limits{}).error.code(), 400);
}

TEST(ParseRequest, AHeadOverTheLimitIs431) {
  Limits limits;
  limits.max_header_bytes = 1024;
  const auto parsed =
      parse_request("GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", limits);
  EXPECT_EQ(parsed.error.code(), 431);
}

TEST(ParseRequest, ABodyOverTheLimitIs413AndAFrameOverItToo) {
  Limits limits;
  limits.max_body_bytes = 8;
  EXPECT_EQ(
      parse_request("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n123456789", limits).error.code(),
      413);
  const std::string stream =
      "POST / HTTP/1.1\r\nMicro-Stream: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunk(frame(FrameKind::message, "123456789")) + "0\r\n\r\n";
  EXPECT_EQ(parse_request(stream, limits).error.code(), 413);
}

TEST(ParseRequest, AStreamEndingMidFrameIs400) {
  const std::string stream =
      "POST / HTTP/1.1\r\nMicro-Stream: 1\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunk(frame(FrameKind::message, "abc").substr(0, 6)) + "0\r\n\r\n";
  EXPECT_EQ(parse_request(stream, Limits{}).error.code(), 400);
}

TEST(ParseRequest, AnIncompleteRequestIsNotComplete) {
  const auto parsed = parse_request("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", Limits{});
  EXPECT_FALSE(parsed.complete);
  EXPECT_EQ(parse_request("", Limits{}).complete, false);
}

}  // namespace

namespace {

namespace http = boost::beast::http;
namespace beast = boost::beast;

template <bool isRequest>
std::string beast_bytes(http::message<isRequest, http::string_body>& message) {
  std::ostringstream out;
  out << message;
  return out.str();
}

}  // namespace

TEST(WireHeads, TheDirectHeadWritersWriteWhatBeastWrites) {
  micro::Message message;
  message.header = {{":method", "POST"},
                    {":path", "/Greeter.Hello"},
                    {"Content-Type", "application/proto"},
                    {"micro-id", "7"},
                    {"content-length", "999"}};  // framing: the transport's, not the sender's
  message.body = "hello";

  http::request<http::string_body> request;
  micro::transport_http::fill_request_head(message, "10.0.0.1:80", request.base());
  request.body() = message.body;
  request.keep_alive(true);
  request.prepare_payload();
  std::string direct;
  micro::transport_http::write_request_head(message, "10.0.0.1:80", message.body.size(), direct);
  EXPECT_EQ(direct + message.body, beast_bytes(request));

  for (const bool keep_alive : {true, false}) {
    message.header[":status"] = "404";
    http::response<http::string_body> response;
    micro::transport_http::fill_response_head(message, response.base());
    response.body() = message.body;
    response.keep_alive(keep_alive);
    response.prepare_payload();
    direct.clear();
    micro::transport_http::write_response_head(message, 404, keep_alive, message.body.size(),
                                               direct);
    EXPECT_EQ(direct + message.body, beast_bytes(response)) << "keep_alive " << keep_alive;
    EXPECT_EQ(direct.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << direct;
  }

  message.header["bad header"] = "x";
  direct.clear();
  EXPECT_THROW(micro::transport_http::write_request_head(message, "h", 5, direct),
               micro::Exception);
}

// A C header list in ascending key order (as MessageView lists a map) gives the head its Message
// gives; a list in another order or with a repeated key is not sent as it is.
TEST(WireHeads, AnAscendingCHeaderListWritesTheHeadOfItsMessage) {
  micro::Message message;
  message.header = {{":path", "/Echo.Call"}, {"content-type", "application/proto"},
                    {"micro-id", "9"}, {"x-trace", "abc"}};
  const micro::MessageView view(message);
  const micro::transport_http::OutHeaders list(view.c()->header);
  ASSERT_TRUE(micro::transport_http::OutHeaders::ascending(view.c()->header));
  std::string from_map, from_list;
  micro::transport_http::write_request_head(message, "h:1", 3, from_map);
  micro::transport_http::write_request_head(list, "h:1", 3, from_list);
  EXPECT_EQ(from_list, from_map);
  from_map.clear();
  from_list.clear();
  micro::transport_http::write_response_head(message, 200, true, 3, from_map);
  micro::transport_http::write_response_head(list, 200, true, 3, from_list);
  EXPECT_EQ(from_list, from_map);

  const micro_kv_t repeated[] = {{micro::to_c("a"), micro::to_c("1")},
                                 {micro::to_c("a"), micro::to_c("2")}};
  EXPECT_FALSE(micro::transport_http::OutHeaders::ascending({repeated, 2}));
  const micro_kv_t descending[] = {{micro::to_c("b"), micro::to_c("1")},
                                   {micro::to_c("a"), micro::to_c("2")}};
  EXPECT_FALSE(micro::transport_http::OutHeaders::ascending({descending, 2}));
}

// A received head as the C list a recv callback gets: what a Message's map would hold.
TEST(ReceivedHeads, NamesAreLowerCaseRepeatsJoinAndPseudoHeadersAreSet) {
  http::request_parser<http::empty_body> parser;
  beast::error_code ec;
  const std::string bytes =
      "GET /Svc.Method HTTP/1.1\r\nHost: h:1\r\nX-Tag: a\r\nX-Custom: V\r\nx-tag:\r\n"
      "X-TAG: b\r\nMicro-Transport-Protocol: h2\r\nContent-Length: 0\r\n\r\n";
  parser.put(boost::asio::buffer(bytes), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(parser.is_header_done());
  micro::transport_http::ReceivedHead head(parser.get().base());
  head.set("micro-transport-protocol", "http/1.1");  // the transport's word, not the peer's
  const micro_metadata_t list = head.view();
  std::map<std::string, std::string> seen;
  for (size_t i = 0; i < list.count; ++i) {
    const auto [it, fresh] = seen.emplace(micro::to_view(list.items[i].key),
                                          micro::to_view(list.items[i].value));
    EXPECT_TRUE(fresh) << "repeated key " << it->first;
  }
  const std::map<std::string, std::string> expected = {
      {":method", "GET"},     {":path", "/Svc.Method"},
      {"host", "h:1"},        {"x-tag", "a, b"},
      {"x-custom", "V"},      {"micro-transport-protocol", "http/1.1"},
      {"content-length", "0"}};
  EXPECT_EQ(seen, expected);
  EXPECT_EQ(micro::transport_http::to_message(parser.get().base()).header.at("x-tag"), "a, b");
}
