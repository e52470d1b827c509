// libFuzzer target: transport-http's request parser (Beast's parser as the server configures it,
// the head -> Message mapping, stream frames) on arbitrary bytes, driven from a buffer by
// parse_request exactly as the server drives it from a socket. Beyond "no crash, no sanitizer
// report":
//  - a rejection is 400, 413 or 431, with a detail;
//  - header names come out lower case, with :method and :path set;
//  - no unary body and no frame exceeds max_body_bytes;
//  - a complete unary request, sent again as the client would send it, parses to the same
//    method, path, body and headers;
//  - the client's own head writer (write_request_head, used for small bodies) writes the same
//    bytes as Beast's serializer, and refuses what Beast's path refuses.
// Build (clang++): compile with message_reader.cpp and wire.cpp from modules/transport-http,
// -I modules/transport-http -I sdk/include -DBOOST_BEAST_USE_STD_STRING_VIEW
// -fsanitize=fuzzer,address,undefined. Seeds: tests/fuzz/corpus/fuzz_request/ (run by scripts/fuzz).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "message_reader.hpp"
#include "micro/callback.hpp"
#include "wire.hpp"

namespace {

using micro::Message;
using namespace micro::transport_http;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_request: %s\n", why.c_str());
  std::abort();
}

bool is_framing(const std::string& name) {
  return name == "content-length" || name == "transfer-encoding" || name == "connection" ||
         name == "host" || name == "keep-alive" || name == "upgrade" || name == "te" ||
         name == "trailer";
}

// The parsed request as the client side would write it.
std::string resend(const Message& message) {
  http::request<http::string_body> request;
  fill_request_head(message, "fuzz", request.base());
  request.body() = message.body;
  request.prepare_payload();
  std::ostringstream out;
  out << request;
  return out.str();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Limits limits;
  limits.max_header_bytes = 4096;
  limits.max_body_bytes = 4096;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const ParsedRequest parsed = parse_request(bytes, limits);

  if (!parsed.error.ok()) {
    const int code = parsed.error.code();
    if (code != 400 && code != 413 && code != 431)
      fail("rejected with " + parsed.error.to_string());
    if (parsed.error.detail().empty()) fail("a rejection without a detail");
    return 0;
  }
  if (parsed.message.header.empty()) return 0;  // nothing (or not yet a whole head) arrived
  if (parsed.message.header.count(":method") == 0 || parsed.message.header.count(":path") == 0)
    fail("a head without :method or :path");
  for (const auto& [name, value] : parsed.message.header)
    for (char c : name)
      if (c >= 'A' && c <= 'Z') fail("header name not lower case: " + name);
  if (parsed.message.body.size() > limits.max_body_bytes) fail("a body over max_body_bytes");
  for (const auto& frame : parsed.frames)
    if (frame.payload.size() > limits.max_body_bytes) fail("a frame over max_body_bytes");

  if (!parsed.complete || parsed.stream) return 0;
  std::string again;
  try {
    again = resend(parsed.message);
  } catch (const std::exception& e) {
    // A value the parser accepts but a sender refuses (a control character Beast lets
    // through) is fine: the client side never writes what it cannot carry. Nor may the
    // direct writer (Beast's own refusal of TRACE with a body aside).
    std::string direct;
    bool refused = false;
    try {
      write_request_head(parsed.message, "fuzz", parsed.message.body.size(), direct);
    } catch (const micro::Exception&) {
      refused = true;
    }
    if (!refused && dynamic_cast<const micro::Exception*>(&e) != nullptr)
      fail(std::string("Beast's path refused what write_request_head wrote: ") + e.what());
    return 0;
  }
  std::string direct;
  write_request_head(parsed.message, "fuzz", parsed.message.body.size(), direct);
  // A C caller's list of the same headers (MessageView: ascending keys) writes the same head.
  const micro::MessageView view(parsed.message);
  std::string from_list;
  write_request_head(micro::transport_http::OutHeaders(view.c()->header), "fuzz",
                     parsed.message.body.size(), from_list);
  if (from_list != direct) fail("the C list's head differs:\n" + from_list + "\n--\n" + direct);
  direct += parsed.message.body;
  if (direct != again) fail("write_request_head differs from Beast:\n" + direct + "\n--\n" + again);
  Limits roomy;
  roomy.max_header_bytes = 1 << 20;
  roomy.max_body_bytes = 1 << 20;
  const ParsedRequest reparsed = parse_request(again, roomy);
  if (!reparsed.error.ok() || !reparsed.complete)
    fail("a request sent again does not parse: " + reparsed.error.to_string() + "\n" + again);
  if (reparsed.message.body != parsed.message.body) fail("the body changed when sent again");
  for (const auto& [name, value] : parsed.message.header) {
    if (is_framing(name)) continue;
    auto it = reparsed.message.header.find(name);
    if (it == reparsed.message.header.end()) fail("header lost when sent again: " + name);
    if (it->second != value) fail("header changed when sent again: " + name);
  }
  return 0;
}
