#include "wire.hpp"

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <algorithm>
#include <charconv>
#include <cctype>
#include <sstream>

#include "micro/callback.hpp"

namespace micro::transport_http {

namespace {

// ASCII lower case (header names are tokens: ASCII by definition), without a locale call.
constexpr char lower_char(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower_char(c);
  return out;
}

// Compared in place: no lower-cased copies (this runs for every header of every message).
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower_char(a[i]) != lower_char(b[i])) return false;
  return true;
}

// RFC 9110 token: what a method or a header name may be made of (a table: this runs for every
// header of every message sent).
struct TokenTable {
  bool ok[256] = {};
  constexpr TokenTable() {
    for (int c = '0'; c <= '9'; ++c) ok[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) ok[c] = ok[c - 32] = true;
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) ok[static_cast<unsigned char>(c)] = true;
  }
};
constexpr TokenTable kToken;

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s)
    if (!kToken.ok[static_cast<unsigned char>(c)]) return false;
  return true;
}

// A header value: visible characters, spaces and tabs; no CR, LF, NUL (no header injection).
bool is_field_value(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

bool is_target(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

bool is_framing_header(std::string_view n) {
  switch (n.size()) {  // one comparison at most for the usual header, not eight
    case 2:
      return iequals(n, "te");
    case 4:
      return iequals(n, "host");
    case 7:
      return iequals(n, "upgrade") || iequals(n, "trailer");
    case 10:
      return iequals(n, "connection") || iequals(n, "keep-alive");
    case 14:
      return iequals(n, "content-length");
    case 17:
      return iequals(n, "transfer-encoding");
    default:
      return false;
  }
}

// Beast keeps a field's offsets in 16 bits.
constexpr size_t kMaxFieldBytes = 65000;

// Calls `add(name, value)` for each header of `message` that goes on the wire: pseudo-headers and
// framing headers are skipped; what cannot be sent throws (400).
template <class Add>
void for_each_field(const OutHeaders& message, Add add) {
  message.for_each([&](std::string_view name, std::string_view value) {
    if (!name.empty() && name[0] == ':') return;
    if (is_framing_header(name)) return;
    if (!is_token(name))
      throw Exception(
          Error::bad_request("header name '" + std::string(name) + "' is not an HTTP token"));
    if (!is_field_value(value))
      throw Exception(Error::bad_request("header '" + std::string(name) +
                                         "' has a control character (CR, LF or NUL) in its value"));
    if (name.size() + value.size() > kMaxFieldBytes)
      throw Exception(Error::bad_request("header '" + std::string(name) + "' is " +
                                         std::to_string(value.size()) +
                                         " bytes: more than an HTTP field can carry here (" +
                                         std::to_string(kMaxFieldBytes) + ")"));
    add(name, value);
  });
}

void copy_headers(const Message& message, http::fields& fields) {
  for_each_field(message, [&](std::string_view name, std::string_view value) {
    fields.insert(name, value);
  });
}

// The fields and the end of a head, in the order Beast's serializer writes them after
// fill_*_head, keep_alive and prepare_payload: the message's fields, Connection, Content-Length.
void append_fields(const OutHeaders& message, bool keep_alive, bool length, size_t body_size,
                   std::string& out) {
  for_each_field(message, [&](std::string_view name, std::string_view value) {
    out.append(name).append(": ").append(value).append("\r\n");
  });
  if (!keep_alive) out.append("Connection: close\r\n");
  if (length) out.append("Content-Length: ").append(std::to_string(body_size)).append("\r\n");
  out.append("\r\n");
}

void json_escape(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += hex[u >> 4];
          out += hex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
}

}  // namespace

template <class Fields>
void ReceivedHead::read_fields(const Fields& fields) {
  std::string* joined = nullptr;  // the last item's value, once it is a join
  std::string_view last_name;     // the last item's name as received
  for (const auto& field : fields) {
    const std::string_view name = field.name_string();
    const std::string_view value = field.value();
    if (!items_.empty() && iequals(name, last_name)) {  // repeated: one comma-separated list
      if (value.empty()) continue;                       // (empty items drop)
      if (joined == nullptr) {
        kept_.emplace_front(to_view(items_.back().value));
        joined = &kept_.front();
      }
      if (!joined->empty()) *joined += ", ";
      joined->append(value);
      items_.back().value = to_c(*joined);
      continue;
    }
    joined = nullptr;
    last_name = name;
    items_.push_back({to_c(lower_name(name)), to_c(value)});
  }
}

std::string_view ReceivedHead::lower_name(std::string_view name) {
  if (std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; }))
    return name;
  // The fields HTTP itself puts in every head, spelled as Beast writes them, need no copy.
  static constexpr std::string_view kCommon[] = {"host", "content-length", "connection",
                                                 "content-type", "transfer-encoding"};
  for (const std::string_view common : kCommon)
    if (iequals(name, common)) return common;
  return keep(lower(name));
}

std::string_view ReceivedHead::keep(std::string s) {
  kept_.push_front(std::move(s));
  return kept_.front();
}

void ReceivedHead::set(std::string_view lower_name, std::string_view value) {
  for (auto& item : items_) {
    if (to_view(item.key) == lower_name) {
      item.value = to_c(value);
      return;
    }
  }
  items_.push_back({to_c(lower_name), to_c(value)});
}

template <class Fields>
ReceivedHead::ReceivedHead(const http::header<true, Fields>& head, Arena* arena)
    : items_(ArenaAllocator<micro_kv_t>(arena != nullptr ? *arena : heap_)) {
  items_.reserve(16);
  read_fields(head);
  set(":method", head.method_string());
  set(":path", head.target());
}

template <class Fields>
ReceivedHead::ReceivedHead(const http::header<false, Fields>& head, Arena* arena)
    : items_(ArenaAllocator<micro_kv_t>(arena != nullptr ? *arena : heap_)) {
  items_.reserve(16);
  read_fields(head);
  status_ = std::to_string(head.result_int());
  set(":status", status_);
}

template <bool isRequest, class Fields>
Message to_message(const http::header<isRequest, Fields>& head) {
  return Message{from_c(ReceivedHead(head).view()), {}};
}

bool OutHeaders::ascending(micro_metadata_t list) noexcept {
  if (list.count > 0 && list.items == nullptr) return false;
  for (size_t i = 1; i < list.count; ++i)
    if (!(to_view(list.items[i - 1].key) < to_view(list.items[i].key))) return false;
  return true;
}

std::optional<std::string_view> OutHeaders::find(std::string_view name) const {
  if (map_ != nullptr) {
    auto it = map_->find(std::string(name));
    if (it == map_->end()) return std::nullopt;
    return std::string_view(it->second);
  }
  for (size_t i = 0; i < list_.count; ++i)
    if (to_view(list_.items[i].key) == name) return to_view(list_.items[i].value);
  return std::nullopt;
}

template <class Fields>
bool is_stream_request(const http::header<true, Fields>& head) {
  // Repeated fields are read as fields_to_message reads them (empty items drop, the rest
  // join with ", "), so a request is a stream exactly when its header map says
  // micro-stream: 1: "Micro-Stream:" followed by "Micro-Stream: 1" is a stream.
  std::string_view value;
  int items = 0;
  for (auto [it, end] = head.equal_range("Micro-Stream"); it != end; ++it) {
    if (it->value().empty()) continue;
    value = it->value();
    ++items;
  }
  return items == 1 && value == "1";
}

const std::string* find_header(const Message& message, std::string_view lower_name) {
  // One pass, no key copy: the exact (lower-case) name wins over another spelling.
  const std::string* other = nullptr;
  for (const auto& [name, value] : message.header) {
    if (name == lower_name) return &value;
    if (other == nullptr && iequals(name, lower_name)) other = &value;
  }
  return other;
}

void request_line(const OutHeaders& message, std::string& m, std::string& p) {
  const auto method = message.find(":method");
  const auto path = message.find(":path");
  m = method ? *method : "POST";
  p = path ? *path : "/";
  if (!is_token(m))
    throw Exception(Error::bad_request(":method '" + m + "' is not an HTTP method"));
  if (!is_target(p))
    throw Exception(Error::bad_request(":path '" + p +
                                       "' is not a request target (no spaces or "
                                       "control characters)"));
}

unsigned response_status(const OutHeaders& message) {
  unsigned status = 200;
  if (const auto found = message.find(":status")) {
    const std::string s(*found);
    char* end = nullptr;
    const unsigned long v = std::strtoul(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || v < 200 || v > 599)
      throw Exception(
          Error::bad_request(":status '" + s + "' is not a final HTTP status (200..599)"));
    status = static_cast<unsigned>(v);
  }
  return status;
}

void HeaderList::remove(std::string_view name) {
  fields_.erase(std::remove_if(fields_.begin(), fields_.end(),
                               [&](const Field& f) { return f.first == name; }),
                fields_.end());
}

std::string_view HeaderList::number(uint64_t value) {
  if (numbers_used_ == numbers_.size()) return keep(std::to_string(value));
  auto& buffer = numbers_[numbers_used_++];
  const auto printed = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return {buffer.data(), static_cast<size_t>(printed.ptr - buffer.data())};
}

void h2_fields(const OutHeaders& message, HeaderList& out) {
  out.reserve(message.size() + 6);  // and the pseudo-headers, content-length, micro-stream
  message.for_each([&](std::string_view name, std::string_view value) {
    if (!name.empty() && name[0] == ':') return;
    if (is_framing_header(name) || iequals(name, "proxy-connection")) return;
    if (!is_token(name))
      throw Exception(
          Error::bad_request("header name '" + std::string(name) + "' is not an HTTP token"));
    if (!is_field_value(value))
      throw Exception(Error::bad_request("header '" + std::string(name) +
                                         "' has a control character (CR, LF or NUL) in its value"));
    const bool lower_case =
        std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
    out.add(lower_case ? name : out.keep(lower(name)), value);
  });
}

void fill_request_head(const Message& message, std::string_view host,
                       http::request_header<>& head) {
  std::string m, p;
  request_line(message, m, p);
  head.version(11);
  head.method_string(m);
  head.target(p);
  head.set(http::field::host, host);
  copy_headers(message, head);
}

void fill_response_head(const Message& message, http::response_header<>& head) {
  const unsigned status = response_status(message);
  head.version(11);
  head.result(status);
  copy_headers(message, head);
}

void write_request_head(const OutHeaders& message, std::string_view host, size_t body_size,
                        std::string& out) {
  std::string m, p;
  request_line(message, m, p);
  out.append(m).append(" ").append(p).append(" HTTP/1.1\r\nHost: ").append(host).append("\r\n");
  // As prepare_payload: an empty body is announced only for the methods that expect one.
  const bool length = body_size > 0 || m == "POST" || m == "PUT" || m == "OPTIONS";
  append_fields(message, true, length, body_size, out);
}

void write_response_head(const OutHeaders& message, unsigned status, bool keep_alive,
                         size_t body_size, std::string& out) {
  const auto reason = http::obsolete_reason(static_cast<http::status>(status));
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  out.append(reason.data(), reason.size()).append("\r\n");
  append_fields(message, keep_alive, true, body_size, out);
}

std::string error_json(const Error& error) {
  std::string out = "{\"id\":\"";
  json_escape(out, error.id());
  out += "\",\"code\":" + std::to_string(error.code()) + ",\"detail\":\"";
  json_escape(out, error.detail());
  out += "\",\"status\":\"";
  json_escape(out, error.status());
  out += "\"}";
  return out;
}

Error parse_error_json(std::string_view json, int32_t fallback_code) {
  try {
    std::istringstream in{std::string(json)};
    boost::property_tree::ptree tree;
    boost::property_tree::read_json(in, tree);
    const int32_t code = tree.get<int32_t>("code", fallback_code);
    return Error(code == 0 ? fallback_code : code, tree.get<std::string>("detail", ""),
                 tree.get<std::string>("id", ""), tree.get<std::string>("status", ""));
  } catch (const std::exception&) {
    return Error(fallback_code, "malformed error from the peer: " + std::string(json));
  }
}

Error http_error(int32_t code, std::string detail) {
  std::string status;
  if (code == 431) status = "Request Header Fields Too Large";
  return Error(code, std::move(detail), kModule, std::move(status));
}

http::response<http::string_body> error_response(const Error& error, unsigned version) {
  const int32_t code = error.code() >= 400 && error.code() <= 599 ? error.code() : 500;
  http::response<http::string_body> res{static_cast<http::status>(code), version};
  res.set("Micro-Error", error_json(error));
  res.set(http::field::content_type, "application/json");
  res.keep_alive(false);
  res.body() = error_json(error);
  res.prepare_payload();
  return res;
}

// The two kinds of fields heads come with: Beast's default, and the transport's readers'.
#define MICRO_HTTP_WIRE_FOR(F)                                                     \
  template ReceivedHead::ReceivedHead(const http::header<true, F>&, Arena*);         \
  template ReceivedHead::ReceivedHead(const http::header<false, F>&, Arena*);        \
  template Message to_message(const http::header<true, F>&);                         \
  template Message to_message(const http::header<false, F>&);                        \
  template bool is_stream_request(const http::header<true, F>&);
MICRO_HTTP_WIRE_FOR(http::fields)
MICRO_HTTP_WIRE_FOR(ArenaFields)
#undef MICRO_HTTP_WIRE_FOR

}  // namespace micro::transport_http
