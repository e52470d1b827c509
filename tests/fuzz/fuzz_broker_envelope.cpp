// libFuzzer target: broker-http's subscriber endpoint parsers (modules/broker-http/envelope.cpp
// and batch.cpp), the request checks on the request line's target and content type, then the
// body as the content type says: the JSON envelope or a batch (application/x-micro-batch+proto).
// Input: "<target>\n<content-type>\n<body>" (missing parts are empty). Beyond "no crash, no
// sanitizer report":
//  - a rejection is 400, 404, 405 or 415 with a detail;
//  - an accepted envelope has a non-empty topic, lower-case header names, and "micro-topic" set;
//  - an accepted envelope, written again as a publisher writes it, parses to the same message;
//  - an accepted batch has a topic and messages; each, as a handler gets it, has lower-case
//    header names and "micro-topic"; written again as a publisher writes it (within the size it
//    estimates) it parses to the same messages;
//  - the same bytes read as a batch's results are refused with 502 or give one result each.
// Build (clang++): compile with envelope.cpp, batch.cpp and the generated broker_http_batch.pb.cc,
// link libprotobuf and libcrypto, -fsanitize=fuzzer,address,undefined.
// Seeds: tests/fuzz/corpus/fuzz_broker_envelope/.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "batch.hpp"
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

void batch(std::string_view in) {
  using namespace micro::broker_http;
  std::vector<micro::Error> errors;
  std::vector<bool> gone;
  const micro::Error results = decode_results(in, 3, errors, gone);
  if (!results.ok() && (results.code() != 502 || results.detail().empty()))
    fail("decode_results rejected with " + results.to_string());
  if (results.ok() && (errors.size() != 3 || gone.size() != 3)) fail("not one result each");

  wire::Batch read;
  const micro::Error decoded = decode_batch(in, read);
  if (!decoded.ok()) {
    if (decoded.code() != 400 || decoded.detail().empty())
      fail("decode_batch rejected with " + decoded.to_string());
    return;
  }
  if (read.topic().empty() || read.messages_size() == 0) fail("accepted an empty batch");
  std::vector<micro::Message> messages(static_cast<size_t>(read.messages_size()));
  wire::Batch again;
  again.set_topic(read.topic());
  size_t estimate = batch_overhead(read.topic());
  micro::Message reused;
  for (int i = 0; i < read.messages_size(); ++i) {
    micro::Message& m = messages[static_cast<size_t>(i)];
    to_message(read.topic(), read.messages(i), m);
    to_message(read.topic(), read.messages(i), reused);
    if (reused.header != m.header || reused.body != m.body) fail("a reused message differs");
    for (const auto& [name, value] : m.header)
      for (char c : name)
        if (c >= 'A' && c <= 'Z') fail("header name not lower case");
    if (m.header["micro-topic"] != read.topic()) fail("micro-topic is not the topic");
    if (!header_is_utf8(m)) fail("a parsed header is not UTF-8");
    add_to_batch(again, m);
    estimate += batch_bytes(m);
  }
  const std::string written = again.SerializeAsString();
  if (written.size() > estimate) fail("a batch is larger than its estimate");
  wire::Batch round;
  if (!decode_batch(written, round).ok()) fail("a written batch does not parse");
  for (int i = 0; i < round.messages_size(); ++i) {
    micro::Message m;
    to_message(round.topic(), round.messages(i), m);
    if (m.header != messages[static_cast<size_t>(i)].header ||
        m.body != messages[static_cast<size_t>(i)].body)
      fail("a batch written again parses to other messages");
  }
  if (round.messages_size() != read.messages_size()) fail("a batch written again lost messages");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view target = next_line(in);
  const std::string_view content_type = next_line(in);
  using namespace micro::broker_http;

  std::string id;
  BodyKind kind = BodyKind::envelope;
  const micro::Error checked =
      check_request("POST", target, content_type, "/", kBatchType, id, kind);
  if (!checked.ok()) {
    const int c = checked.code();
    if ((c != 400 && c != 404 && c != 405 && c != 415) || checked.detail().empty())
      fail("check_request rejected with " + checked.to_string());
  }
  if (checked.ok() && kind == BodyKind::batch) {
    batch(in);
    return 0;
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
