#include "envelope.hpp"

#include <google/protobuf/util/json_util.h>

#include <cctype>

#include "envelope.pb.h"
#include "micro/content_type.hpp"

namespace micro::broker_http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes a query value ('+' is a space); false on a broken escape.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return true;
}

}  // namespace

std::string encode_envelope(std::string_view topic, const Message& message) {
  Envelope envelope;
  auto& header = *envelope.mutable_header();
  for (const auto& [key, value] : message.header) header[key] = value;
  header[kTopicHeader] = std::string(topic);
  envelope.set_body(message.body);
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;  // "Header", "Body", as go-micro writes them
  const auto status = google::protobuf::util::MessageToJsonString(envelope, &out, options);
  if (!status.ok())  // only for strings that are not UTF-8; their bytes go as they are
    throw Exception(Error::bad_request("the message's header is not valid UTF-8: " +
                                       status.ToString()));
  return out;
}

Error decode_envelope(std::string_view json, Message& out, std::string& topic) {
  Envelope envelope;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &envelope, options);
  if (!status.ok())
    return Error::bad_request("the body is not a broker envelope {\"Header\":{...},\"Body\":"
                              "\"<base64>\"}: " + status.ToString());
  out.header.clear();
  for (const auto& [key, value] : envelope.header()) {
    std::string name = lower(key);
    if (name.empty()) return Error::bad_request("the envelope has a header with an empty name");
    out.header[std::move(name)] = value;
  }
  auto it = out.header.find(lower(kTopicHeader));
  if (it == out.header.end() || it->second.empty())
    return Error::bad_request(std::string("the envelope names no topic (header ") + kTopicHeader +
                              ")");
  topic = it->second;
  out.body = std::move(*envelope.mutable_body());
  return {};
}

Error check_request(std::string_view method, std::string_view target,
                    std::string_view content_type, std::string_view path, std::string& id) {
  const size_t q = target.find('?');
  const std::string_view target_path = target.substr(0, q);
  if (target_path != path)
    return Error::not_found("no broker endpoint at '" + std::string(target_path) +
                            "' (subscribers are reached at '" + std::string(path) + "')");
  if (method != "POST")
    return Error(405, "the broker endpoint takes POST, not " + std::string(method));
  if (media_type(content_type) != "application/json")
    return Error(415, "the broker endpoint takes application/json, not '" +
                          std::string(content_type) + "'");
  id.clear();
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) == "id" && eq != std::string_view::npos) {
      if (!percent_decode(pair.substr(eq + 1), id))
        return Error::bad_request("the id in the query is not percent-encoded properly");
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

std::string id_query(std::string_view id) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "?id=";
  for (unsigned char c : id) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace micro::broker_http
