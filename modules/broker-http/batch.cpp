#include "batch.hpp"

#include <google/protobuf/stubs/common.h>

#include <cctype>

namespace micro::broker_http {

namespace {

// A length-delimited field's framing at most: its tag (1 byte for field numbers < 16) and a
// varint length (5 bytes cover any 32-bit size).
constexpr size_t kFraming = 1 + 5;

bool utf8(std::string_view s) {
  return google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
}

}  // namespace

size_t batch_bytes(const Message& message) {
  size_t n = kFraming + kFraming + message.body.size();  // the Envelope, its body
  for (const auto& [name, value] : message.header)       // entry { key, value }
    n += kFraming + kFraming + name.size() + kFraming + value.size();
  return n;
}

size_t batch_overhead(std::string_view topic) { return kFraming + topic.size(); }

bool header_is_utf8(const Message& message) {
  for (const auto& [name, value] : message.header)
    if (!utf8(name) || !utf8(value)) return false;
  return true;
}

void add_to_batch(wire::Batch& batch, const Message& message) {
  wire::Envelope* envelope = batch.add_messages();
  if (!message.header.empty()) {
    auto& header = *envelope->mutable_header();
    for (const auto& [name, value] : message.header) header[name] = value;
  }
  envelope->set_body(message.body);
}

Error decode_batch(std::string_view body, wire::Batch& out) {
  const std::string shape = std::string("the body is not a broker batch (") + kBatchType + "): ";
  if (body.size() > static_cast<size_t>(INT32_MAX)) return Error::bad_request(shape + "too large");
  if (!out.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return Error::bad_request(shape + "it does not parse as micro.broker_http.wire.Batch");
  if (out.topic().empty()) return Error::bad_request(shape + "it names no topic");
  if (out.messages_size() == 0) return Error::bad_request(shape + "it has no messages");
  for (int i = 0; i < out.messages_size(); ++i)
    for (const auto& [name, value] : out.messages(i).header())
      if (name.empty())
        return Error::bad_request(shape + "message " + std::to_string(i) +
                                  " has a header with an empty name");
  return {};
}

void to_message(std::string_view topic, const wire::Envelope& in, Message& out) {
  static const std::string kTopic = "micro-topic";
  if (in.header().empty() && out.header.size() == 1 && out.header.begin()->first == kTopic &&
      out.header.begin()->second == topic) {
    // the header of the previous message, which is all this one has: kept as it is
  } else {
    out.header.clear();
    for (const auto& [name, value] : in.header()) {
      std::string lower(name);
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.header.insert_or_assign(std::move(lower), value);
    }
    out.header.insert_or_assign(kTopic, std::string(topic));
  }
  out.body.assign(in.body());
}

void set_result(wire::Result& out, const Error& error, bool gone) {
  if (gone) {
    out.set_code(410);
    out.set_detail(error.detail());
    out.set_gone(true);
    return;
  }
  if (error.ok()) return;
  out.set_code(error.code() >= 400 && error.code() <= 599 ? error.code() : 500);
  out.set_id(error.id());
  out.set_detail(error.detail());
  out.set_status(error.status());
}

Error decode_results(std::string_view body, size_t count, std::vector<Error>& errors,
                     std::vector<bool>& gone) {
  thread_local wire::Results results;  // reused: its results stay allocated
  if (body.size() > static_cast<size_t>(INT32_MAX) ||
      !results.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return Error(502, std::string("the subscriber's answer to a batch is not ") + kBatchType +
                          " results");
  if (static_cast<size_t>(results.results_size()) != count) {
    const Error wrong(502, "the subscriber answered " + std::to_string(results.results_size()) +
                               " results to a batch of " + std::to_string(count) + " messages");
    if (static_cast<size_t>(results.results_size()) > count)
      wire::Results().Swap(&results);  // keep no more than a batch's worth for the next answer
    return wrong;
  }
  errors.assign(count, Error{});
  gone.assign(count, false);
  for (size_t i = 0; i < count; ++i) {
    const wire::Result& r = results.results(static_cast<int>(i));
    if (r.gone()) {
      gone[i] = true;
    } else if (r.code() != 0) {
      const int32_t code = r.code() >= 400 && r.code() <= 599 ? r.code() : 500;
      errors[i] = Error(code, r.detail(), r.id(), r.status());
    }
  }
  return {};
}

}  // namespace micro::broker_http
