#include "wire.hpp"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

namespace micro::registry_etcd {
namespace {

namespace util = google::protobuf::util;

util::JsonParseOptions lenient() {
  util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // the gateway sends more than we mirror
  return options;
}

// A short, printable excerpt of untrusted bytes for an error message.
std::string excerpt(std::string_view bytes) {
  std::string out;
  for (char c : bytes.substr(0, 120)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (bytes.size() > 120) out += "...";
  return out;
}

// The text of a streamed {"error": ...}: a string, or an object with "message".
std::string stream_error_text(const google::protobuf::Value& error) {
  if (error.has_string_value()) return error.string_value();
  if (error.has_struct_value()) {
    const auto& fields = error.struct_value().fields();
    auto it = fields.find("message");
    if (it != fields.end() && it->second.has_string_value()) return it->second.string_value();
  }
  std::string json;
  (void)util::MessageToJsonString(error, &json);
  return excerpt(json);
}

template <class Envelope, class Out>
Result<Out> parse_stream_object(std::string_view object, const char* what) {
  Result<Out> out;
  Envelope envelope;
  const auto status = util::JsonStringToMessage(object, &envelope, lenient());
  if (!status.ok()) {
    out.error = Error::internal(std::string("etcd sent a ") + what +
                                " message that is not valid: " + std::string(status.message()) +
                                " in '" + excerpt(object) + "'");
    return out;
  }
  if (envelope.has_error()) {
    out.error = Error::unavailable(std::string("etcd ended the ") + what +
                                   " stream: " + stream_error_text(envelope.error()));
    return out;
  }
  if (!envelope.has_result()) {
    out.error =
        Error::internal(std::string("etcd sent a ") + what +
                        " message with neither result nor error: '" + excerpt(object) + "'");
    return out;
  }
  out.value = std::move(*envelope.mutable_result());
  return out;
}

}  // namespace

std::string encode_segment(std::string_view name) {
  if (name.empty()) return "%";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : name) {
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string service_prefix(const std::string& prefix, std::string_view service) {
  return prefix + encode_segment(service) + "/";
}

std::string node_key(const std::string& prefix, std::string_view service, std::string_view node) {
  return service_prefix(prefix, service) + encode_segment(node);
}

std::string range_end_of_prefix(std::string_view key) {
  std::string end(key);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return std::string(1, '\0');
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

Result<std::string> encode_record(const Service& service, const Node& node) {
  NodeRecord record;
  record.set_name(service.name);
  record.set_version(service.version);
  record.mutable_metadata()->insert(service.metadata.begin(), service.metadata.end());
  for (const auto& e : service.endpoints) {
    auto* out = record.add_endpoints();
    out->set_name(e.name);
    out->set_request(e.request);
    out->set_response(e.response);
    out->mutable_metadata()->insert(e.metadata.begin(), e.metadata.end());
  }
  auto* n = record.mutable_node();
  n->set_id(node.id);
  n->set_address(node.address);
  n->mutable_metadata()->insert(node.metadata.begin(), node.metadata.end());
  Result<std::string> out;
  const auto status = util::MessageToJsonString(record, &out.value);
  if (!status.ok())
    out.error = Error::bad_request("cannot store node '" + node.id + "' of service '" +
                                   service.name + "' in etcd: " + std::string(status.message()) +
                                   " (strings must be valid UTF-8)");
  return out;
}

Result<Service> decode_record(std::string_view value) {
  Result<Service> out;
  NodeRecord record;
  const auto status = util::JsonStringToMessage(value, &record, lenient());
  if (!status.ok()) {
    out.error =
        Error::bad_request("not a registry-etcd node record: " + std::string(status.message()) +
                           " in '" + excerpt(value) + "'");
    return out;
  }
  if (record.name().empty() || record.node().id().empty()) {
    out.error = Error::bad_request("not a registry-etcd node record (no name or node id): '" +
                                   excerpt(value) + "'");
    return out;
  }
  Service& s = out.value;
  s.name = record.name();
  s.version = record.version();
  s.metadata = Metadata(record.metadata().begin(), record.metadata().end());
  for (const auto& e : record.endpoints())
    s.endpoints.push_back(
        {e.name(), e.request(), e.response(), Metadata(e.metadata().begin(), e.metadata().end())});
  const auto& n = record.node();
  s.nodes.push_back({n.id(), n.address(), Metadata(n.metadata().begin(), n.metadata().end())});
  return out;
}

std::string to_json(const google::protobuf::Message& message) {
  std::string json;
  util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;  // the gateway reads etcd's own names
  (void)util::MessageToJsonString(message, &json, options);
  return json;
}

Error parse_answer(unsigned http_status, std::string_view body, google::protobuf::Message* out,
                   std::string_view what) {
  if (http_status != 200) {
    GatewayError error;
    std::string reason;
    if (util::JsonStringToMessage(body, &error, lenient()).ok() &&
        !(error.message().empty() && error.error().empty()))
      reason = (error.message().empty() ? error.error() : error.message()) + " (gRPC code " +
               std::to_string(error.code()) + ")";
    else
      reason = "'" + excerpt(body) + "'";
    const std::string detail =
        std::string(what) + ": etcd answered HTTP " + std::to_string(http_status) + ": " + reason;
    // 4xx: the request or the credentials; anything else: the server is not able to answer.
    if (http_status == 401 || http_status == 403) return Error{403, detail};
    if (http_status >= 400 && http_status < 500) return Error::bad_request(detail);
    return Error::unavailable(detail);
  }
  const auto status = util::JsonStringToMessage(body, out, lenient());
  if (!status.ok())
    return Error::unavailable(std::string(what) + ": etcd's answer is not valid: " +
                              std::string(status.message()) + " in '" + excerpt(body) + "'");
  return {};
}

bool StreamSplitter::next(std::string& object) {
  while (error_.ok()) {
    const size_t newline = pending_.find('\n', scanned_);
    if (newline == std::string::npos) {
      scanned_ = pending_.size();
      if (pending_.size() > kMaxObject)
        error_ = Error::unavailable("etcd sent a stream object longer than " +
                                    std::to_string(kMaxObject) + " bytes");
      return false;
    }
    object.assign(pending_, 0, newline);
    pending_.erase(0, newline + 1);
    scanned_ = 0;
    if (object.find_first_not_of(" \t\r") != std::string::npos) return true;  // skip blank lines
  }
  return false;
}

Result<WatchResponse> parse_watch_message(std::string_view object) {
  return parse_stream_object<WatchStreamMessage, WatchResponse>(object, "watch");
}

Result<LeaseKeepAliveResponse> parse_keepalive_message(std::string_view object) {
  return parse_stream_object<KeepAliveStreamMessage, LeaseKeepAliveResponse>(object, "keepalive");
}

}  // namespace micro::registry_etcd
