// broker-http's batch body (broker_http_batch.proto, README.md "Batches"): what a publisher POSTs
// to a subscriber that advertises batches, and the per-message results the subscriber answers.
// Protobuf does the encoding; these functions add the checks and the mapping to micro's types.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "broker_http_batch.pb.h"
#include "micro/types.hpp"

namespace micro::broker_http {

// The media type of a batch request and of its answer.
inline constexpr const char* kBatchType = "application/x-micro-batch+proto";

// An upper bound of the bytes `message` adds to a batch (its encoded Envelope, framing included):
// what a publisher counts against the subscriber's body limit.
size_t batch_bytes(const Message& message);
// The bytes a batch of `topic` takes before its first message.
size_t batch_overhead(std::string_view topic);

// Whether every header name and value of `message` is UTF-8 (protobuf's string rule); a message
// that is not cannot travel in a batch (nor in the JSON envelope).
bool header_is_utf8(const Message& message);

// Appends `message` to `batch` (copies header and body).
void add_to_batch(wire::Batch& batch, const Message& message);

// Parses a batch body: a protobuf Batch with a topic and at least one message, no empty header
// name. Bad input is a 400 naming what is wrong; never throws.
Error decode_batch(std::string_view body, wire::Batch& out);

// The message as a handler gets it, written into `out` (its storage is reused): header names
// lower-cased, "micro-topic" set to `topic` (as from the JSON envelope), the body.
void to_message(std::string_view topic, const wire::Envelope& in, Message& out);

// One result: ok, the handler's error, or gone (the subscription went).
void set_result(wire::Result& out, const Error& error, bool gone);

// Reads the answer to a batch of `count` messages into `errors` / `gone` (one per message).
// A body that does not parse or has another count is a 502 naming it.
Error decode_results(std::string_view body, size_t count, std::vector<Error>& errors,
                     std::vector<bool>& gone);

}  // namespace micro::broker_http
