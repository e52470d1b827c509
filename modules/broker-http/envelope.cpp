#include "envelope.hpp"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>

#include <cctype>
#include <cstdint>

#include "micro/content_type.hpp"

namespace micro::broker_http {

namespace {

namespace pb = google::protobuf;

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

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

// Standard base64 with padding (Go's encoding of []byte); false on anything else.
bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.empty()) return true;
  if (in.size() % 4 != 0 || in.size() > static_cast<size_t>(INT32_MAX)) return false;
  for (size_t i = 0; i < in.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    const bool pad = c == '=' && i + 2 >= in.size() && (i + 1 == in.size() || in[i + 1] == '=');
    if (!(std::isalnum(c) || c == '+' || c == '/' || pad)) return false;
  }
  out.resize(in.size() / 4 * 3);
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t size = static_cast<size_t>(n);
  if (in.back() == '=') --size;  // EVP_DecodeBlock counts padding as zero bytes
  if (in[in.size() - 2] == '=') --size;
  out.resize(size);
  return true;
}

// The field `upper` or else `lower_name` of an object ("Header" as go-micro writes it, "header").
const pb::Value* field(const pb::Struct& s, const char* upper, const char* lower_name) {
  auto it = s.fields().find(upper);
  if (it == s.fields().end()) it = s.fields().find(lower_name);
  return it == s.fields().end() ? nullptr : &it->second;
}

}  // namespace

std::string encode_envelope(std::string_view topic, const Message& message) {
  pb::Struct envelope;
  auto& header = *(*envelope.mutable_fields())["Header"].mutable_struct_value()->mutable_fields();
  for (const auto& [key, value] : message.header) header[key].set_string_value(value);
  header[kTopicHeader].set_string_value(std::string(topic));
  (*envelope.mutable_fields())["Body"].set_string_value(base64_encode(message.body));
  std::string out;
  const auto status = pb::util::MessageToJsonString(envelope, &out);
  if (!status.ok())  // only for strings that are not UTF-8
    throw Exception(Error::bad_request("the message's header is not valid UTF-8: " +
                                       status.ToString()));
  return out;
}

Error decode_envelope(std::string_view json, Message& out, std::string& topic) {
  const std::string shape = "the body is not a broker envelope {\"Header\":{...},\"Body\":\"<base64>\"}: ";
  pb::Value parsed;
  const auto status = pb::util::JsonStringToMessage(pb::StringPiece(json.data(), json.size()),
                                                     &parsed);
  if (!status.ok()) return Error::bad_request(shape + status.ToString());
  if (!parsed.has_struct_value()) return Error::bad_request(shape + "not a JSON object");
  const pb::Struct& envelope = parsed.struct_value();
  out.header.clear();
  out.body.clear();
  if (const pb::Value* header = field(envelope, "Header", "header");
      header != nullptr && !header->has_null_value()) {
    if (!header->has_struct_value())
      return Error::bad_request(shape + "\"Header\" is not an object");
    for (const auto& [key, value] : header->struct_value().fields()) {
      if (!value.has_string_value())
        return Error::bad_request(shape + "header '" + key + "' is not a string");
      std::string name = lower(key);
      if (name.empty()) return Error::bad_request("the envelope has a header with an empty name");
      out.header[std::move(name)] = value.string_value();
    }
  }
  if (const pb::Value* body = field(envelope, "Body", "body");
      body != nullptr && !body->has_null_value()) {
    if (!body->has_string_value() || !base64_decode(body->string_value(), out.body))
      return Error::bad_request(shape + "\"Body\" is not a base64 string");
  }
  auto it = out.header.find(lower(kTopicHeader));
  if (it == out.header.end() || it->second.empty())
    return Error::bad_request(std::string("the envelope names no topic (header ") + kTopicHeader +
                              ")");
  topic = it->second;
  return {};
}

Error check_request(std::string_view method, std::string_view target,
                    std::string_view content_type, std::string_view path,
                    std::string_view batch_type, std::string& id, BodyKind& kind) {
  const size_t q = target.find('?');
  const std::string_view target_path = target.substr(0, q);
  if (target_path != path)
    return Error::not_found("no broker endpoint at '" + std::string(target_path) +
                            "' (subscribers are reached at '" + std::string(path) + "')");
  if (method != "POST")
    return Error(405, "the broker endpoint takes POST, not " + std::string(method));
  const std::string media = media_type(content_type);
  if (media == "application/json") {
    kind = BodyKind::envelope;
  } else if (!batch_type.empty() && media == batch_type) {
    kind = BodyKind::batch;
  } else {
    return Error(415, "the broker endpoint takes application/json" +
                          (batch_type.empty() ? std::string() : " or " + std::string(batch_type)) +
                          ", not '" + std::string(content_type) + "'");
  }
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
