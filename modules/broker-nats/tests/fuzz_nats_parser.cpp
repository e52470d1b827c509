// libFuzzer target: broker-nats' protocol parser on arbitrary server bytes, with INFO's JSON
// (protobuf's JSON mapping) and HMSG header blocks decoded as the module does. Beyond "no crash,
// no sanitizer report":
//  - the same bytes fed in one read or split into pieces (sizes taken from the input) give the
//    same events and the same verdict: split reads cannot change what is parsed;
//  - no message is larger than max_payload; a header block is never larger than its message;
//  - a rejection is a 502 with a detail;
//  - a header block that decodes, encoded again, decodes to the same map.
// Build (clang++): compile with modules/broker-nats/protocol.cpp, -I modules/broker-nats
// -I sdk/include, link libprotobuf, -fsanitize=fuzzer,address,undefined.
// Seeds: tests/fuzz/corpus/fuzz_nats_parser/ (run by scripts/fuzz).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protocol.hpp"

namespace {

using namespace micro::broker_nats;

constexpr uint64_t kMaxPayload = 4096;
constexpr size_t kMaxControlLine = 1024;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_nats_parser: %s\n", why.c_str());
  std::abort();
}

struct Recorder : ProtocolEvents {
  std::vector<std::string> events;
  micro::Error on_info(std::string_view json) override {
    ServerInfo info;
    const micro::Error e = parse_info(json, info);
    events.push_back("INFO " + std::to_string(e.code()) + " " + std::string(json));
    return {};
  }
  micro::Error on_msg(std::string_view subject, uint64_t sid, std::string_view reply,
                      std::string_view header_block, std::string_view payload) override {
    if (header_block.size() + payload.size() > kMaxPayload) fail("a message above max_payload");
    if (!header_block.empty()) {
      micro::Metadata header;
      if (decode_headers(header_block, header).ok() && !header.empty()) {
        std::string again;
        if (encode_headers(header, again).ok()) {
          micro::Metadata back;
          if (!decode_headers(again, back).ok() || back != header)
            fail("decoded headers do not survive encode + decode");
        }
      }
    }
    events.push_back("MSG " + std::string(subject) + " " + std::to_string(sid) + " " +
                     std::string(reply) + " " + std::string(header_block) + "|" +
                     std::string(payload));
    return {};
  }
  micro::Error on_ping() override { return note("PING"); }
  micro::Error on_pong() override { return note("PONG"); }
  micro::Error on_ok() override { return note("+OK"); }
  micro::Error on_err(std::string_view message) override {
    return note("-ERR " + std::string(message));
  }
  micro::Error note(std::string event) {
    events.push_back(std::move(event));
    return {};
  }
};

// Feeds `bytes` in pieces of the given sizes (cycled); returns the verdict.
micro::Error run(std::string_view bytes, const std::vector<size_t>& pieces, Recorder& events) {
  Parser parser(kMaxPayload, kMaxControlLine);
  size_t at = 0;
  for (size_t i = 0; at < bytes.size(); ++i) {
    const size_t n = pieces.empty() ? bytes.size() : pieces[i % pieces.size()];
    micro::Error e = parser.feed(bytes.substr(at, n), events);
    if (!e.ok()) return e;
    at += n;
  }
  return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first 4 bytes choose the piece sizes (1..64 each); the rest is the stream.
  if (size < 4) return 0;
  std::vector<size_t> pieces;
  for (size_t i = 0; i < 4; ++i) pieces.push_back(1 + data[i] % 64);
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 4, size - 4);

  Recorder whole, split;
  const micro::Error a = run(bytes, {}, whole);
  const micro::Error b = run(bytes, pieces, split);
  if (!a.ok() && (a.code() != 502 || a.detail().empty())) fail("a rejection that is not a 502");
  if (a.ok() != b.ok()) fail("split reads changed the verdict: " + a.to_string() + " vs " + b.to_string());
  if (whole.events != split.events) fail("split reads changed the events");
  return 0;
}
