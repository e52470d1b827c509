// libFuzzer target: broker-http's subscriber endpoint parsers (modules/broker-http/envelope.cpp),
// the request checks on the request line's target and content type, then the JSON envelope.
// Input: "<target>\n<content-type>\n<body>" (missing parts are empty). Beyond "no crash, no
// sanitizer report":
//  - a rejection is 400, 404, 405 or 415 with a detail;
//  - an accepted envelope has a non-empty topic, lower-case header names, and "micro-topic" set;
//  - an accepted envelope, written again as a publisher writes it, parses to the same message.
// Build (clang++): compile with envelope.cpp, link libprotobuf and libcrypto,
// -fsanitize=fuzzer,address,undefined. Seeds: tests/fuzz/corpus/fuzz_broker_envelope/.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "envelope.hpp"

namespace {

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_broker_envelope: %s\n", why.c_str());
  std::abort();
}

std::string_view next_line(std::string_view& in) {
  const size_t nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view target = next_line(in);
  const std::string_view content_type = next_line(in);
  using namespace micro::broker_http;

  std::string id;
  const micro::Error checked = check_request("POST", target, content_type, "/", id);
  if (!checked.ok()) {
    const int c = checked.code();
    if ((c != 400 && c != 404 && c != 405 && c != 415) || checked.detail().empty())
      fail("check_request rejected with " + checked.to_string());
  }

  micro::Message message;
  std::string topic;
  const micro::Error decoded = decode_envelope(in, message, topic);
  if (!decoded.ok()) {
    if (decoded.code() != 400 || decoded.detail().empty())
      fail("decode_envelope rejected with " + decoded.to_string());
    return 0;
  }
  if (topic.empty()) fail("accepted an envelope without a topic");
  for (const auto& [name, value] : message.header)
    for (char c : name)
      if (c >= 'A' && c <= 'Z') fail("header name not lower case");
  if (message.header["micro-topic"] != topic) fail("micro-topic is not the topic");

  const std::string again = encode_envelope(topic, message);
  micro::Message round;
  std::string round_topic;
  const micro::Error redecoded = decode_envelope(again, round, round_topic);
  if (!redecoded.ok()) fail("a written envelope does not parse: " + redecoded.to_string());
  if (round_topic != topic || round.body != message.body || round.header != message.header)
    fail("an envelope written again parses to another message: " + again);
  return 0;
}
