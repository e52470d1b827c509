// What registry-etcd writes to and reads from etcd, with no I/O: the key layout, the node record
// stored as each key's value, and the parsing of the gateway's answers (unary and streaming).
// Everything here takes untrusted bytes and answers with an Error, never a crash
// (tests/fuzz/fuzz_etcd_response).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "etcd_gateway.pb.h"
#include "micro/error.hpp"
#include "micro/types.hpp"

namespace micro::registry_etcd {

// ---- keys ------------------------------------------------------------------------------------

// A name as one key segment: bytes outside [A-Za-z0-9._-] become %XX, so that no service name
// reaches into another's range ("a/b" is "a%2Fb"); the empty name is "%".
std::string encode_segment(std::string_view name);
// `prefix` ("/micro/registry/") + service + "/": the range of one service's nodes.
std::string service_prefix(const std::string& prefix, std::string_view service);
// `prefix` + service + "/" + node id: one node's key.
std::string node_key(const std::string& prefix, std::string_view service, std::string_view node);
// etcd's range_end for every key starting with `key`: the key with its last byte incremented,
// dropping trailing 0xff bytes; "\0" (every key) when none is left.
std::string range_end_of_prefix(std::string_view key);

// ---- node records ----------------------------------------------------------------------------

// The value stored for one node: its service version with that node only, as protobuf JSON.
// Refuses strings protobuf's JSON cannot carry unchanged (invalid UTF-8).
Result<std::string> encode_record(const Service& service, const Node& node);
// The service (with its one node) a stored value holds; 400 if it is not a node record.
Result<Service> decode_record(std::string_view value);

// ---- gateway answers -------------------------------------------------------------------------

// The body of a JSON request.
std::string to_json(const google::protobuf::Message& message);
// Reads a unary answer: a 200 body into `out`, or the gateway's error ({"error","message","code"})
// as an Error naming `what` ("range /micro/registry/") and the gRPC reason.
Error parse_answer(unsigned http_status, std::string_view body, google::protobuf::Message* out,
                   std::string_view what);

// Splits a streaming answer (the gateway writes one JSON object per line) into its objects.
class StreamSplitter {
 public:
  // Longest object accepted; a longer one is an error (the stream is then useless).
  static constexpr size_t kMaxObject = 16u << 20;
  // Appends bytes read from the stream.
  void feed(std::string_view bytes) { pending_.append(bytes.data(), bytes.size()); }
  // Takes the next complete object; false when none is complete yet (or `error()` is set).
  bool next(std::string& object);
  const Error& error() const noexcept { return error_; }

 private:
  std::string pending_;
  size_t scanned_ = 0;  // bytes of pending_ known to hold no newline
  Error error_;
};

// One object of a watch stream: {"result": WatchResponse} or {"error": ...} (an Error).
Result<WatchResponse> parse_watch_message(std::string_view object);
// One object of a keepalive answer: {"result": LeaseKeepAliveResponse} or {"error": ...}.
Result<LeaseKeepAliveResponse> parse_keepalive_message(std::string_view object);

}  // namespace micro::registry_etcd
