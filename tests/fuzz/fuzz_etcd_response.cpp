// libFuzzer target: what registry-etcd reads from etcd (modules/registry-etcd/wire.cpp): the
// splitting of a streaming answer (watch, keepalive) into JSON objects, each object as a watch
// or keepalive message, the node records in a watch's events, and a unary answer (range) with
// any HTTP status. Beyond "no crash, no hang, no sanitizer report":
//  - the stream splits into the same objects whether fed whole or in pieces;
//  - every error has a detail;
//  - a node record that decodes encodes again and decodes to the same service.
// Seeds: tests/fuzz/corpus/fuzz_etcd_response/ (run by scripts/fuzz).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "wire.hpp"

namespace {

using namespace micro::registry_etcd;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_etcd_response: %s\n", why.c_str());
  std::abort();
}

void check_error(const micro::Error& e, const char* where) {
  if (!e.ok() && e.detail().empty()) fail(std::string(where) + ": an error without a detail");
}

std::vector<std::string> split(std::string_view bytes, size_t piece) {
  StreamSplitter splitter;
  std::vector<std::string> out;
  std::string object;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    splitter.feed(bytes.substr(at, piece));
    while (splitter.next(object)) out.push_back(object);
  }
  check_error(splitter.error(), "splitter");
  return out;
}

void check_record(const std::string& value) {
  auto record = decode_record(value);
  check_error(record.error, "decode_record");
  if (!record.ok()) return;
  if (record.value.nodes.size() != 1) fail("a node record without exactly one node");
  auto encoded = encode_record(record.value, record.value.nodes[0]);
  check_error(encoded.error, "encode_record");
  if (!encoded.ok()) return;
  auto again = decode_record(encoded.value);
  if (!again.ok() || !(again.value == record.value))
    fail("a node record does not come back the same after encode and decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte sets the size of the pieces the stream arrives in.
  const size_t piece = 1 + data[0] % 64;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  const auto whole = split(bytes, bytes.size() + 1);
  if (split(bytes, piece) != whole) fail("splitting depends on how the bytes arrive");

  for (const auto& object : whole) {
    auto watch = parse_watch_message(object);
    check_error(watch.error, "parse_watch_message");
    if (watch.ok())
      for (const auto& event : watch.value.events()) {
        check_record(event.kv().value());
        check_record(event.prev_kv().value());
      }
    check_error(parse_keepalive_message(object).error, "parse_keepalive_message");
  }

  RangeResponse range;
  check_error(parse_answer(200, bytes, &range, "range"), "parse_answer 200");
  if (parse_answer(200, bytes, &range, "range").ok())
    for (const auto& kv : range.kvs()) check_record(kv.value());
  RangeResponse unused;
  const auto error = parse_answer(500, bytes, &unused, "range");
  if (error.ok()) fail("an HTTP 500 answer read as success");
  check_record(std::string(bytes));
  return 0;
}
