#include "protocol.hpp"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace micro::broker_nats {
namespace {

constexpr int32_t kBadGateway = 502;  // the server sent something this client cannot accept

Error bad_server(std::string detail) { return Error(kBadGateway, "nats: " + std::move(detail)); }

// A shortened, printable copy of server bytes for an error message.
std::string printable(std::string_view text, size_t limit = 64) {
  std::string out;
  for (char c : text.substr(0, limit)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (text.size() > limit) out += "...";
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

// Splits at runs of spaces and tabs.
std::vector<std::string_view> split_args(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

// A decimal count without sign; false on anything else or on overflow.
bool parse_count(std::string_view text, uint64_t& out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  out = value;
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
    if (x != y) return false;
  }
  return true;
}

void append_number(std::string& out, uint64_t n) {
  char digits[24];
  size_t len = 0;
  do {
    digits[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n != 0);
  while (len > 0) out += digits[--len];
}

constexpr std::string_view kHeaderVersion = "NATS/1.0";

}  // namespace

Error parse_info(std::string_view json, ServerInfo& out) {
  google::protobuf::Struct info;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &info, options);
  if (!status.ok())
    return bad_server("INFO is not a JSON object (" + std::string(status.message()) +
                      "): " + printable(json));
  const auto& fields = info.fields();
  auto text = [&](const char* key) {
    auto it = fields.find(key);
    return it != fields.end() && it->second.has_string_value() ? it->second.string_value()
                                                              : std::string();
  };
  auto flag = [&](const char* key) {
    auto it = fields.find(key);
    return it != fields.end() && it->second.has_bool_value() && it->second.bool_value();
  };
  ServerInfo parsed;
  parsed.server_id = text("server_id");
  parsed.version = text("version");
  parsed.headers = flag("headers");
  parsed.auth_required = flag("auth_required");
  parsed.tls_required = flag("tls_required");
  auto max_payload = fields.find("max_payload");
  if (max_payload != fields.end()) {
    const double v = max_payload->second.has_number_value() ? max_payload->second.number_value()
                                                             : -1;
    if (!(v >= 1 && v <= 9.0e15) || std::floor(v) != v)
      return bad_server("INFO max_payload is not a positive integer: " + printable(json));
    parsed.max_payload = static_cast<uint64_t>(v);
  }
  out = std::move(parsed);
  return {};
}

std::string connect_command(const ConnectOptions& options) {
  google::protobuf::Struct connect;
  auto& f = *connect.mutable_fields();
  f["verbose"].set_bool_value(false);
  f["pedantic"].set_bool_value(false);
  f["tls_required"].set_bool_value(false);
  f["lang"].set_string_value("cpp");
  f["version"].set_string_value("1.0.0");
  f["protocol"].set_number_value(1);
  f["echo"].set_bool_value(true);
  f["headers"].set_bool_value(options.headers);
  f["no_responders"].set_bool_value(options.headers);
  if (!options.name.empty()) f["name"].set_string_value(options.name);
  if (!options.user.empty()) f["user"].set_string_value(options.user);
  if (!options.pass.empty()) f["pass"].set_string_value(options.pass);
  if (!options.token.empty()) f["auth_token"].set_string_value(options.token);
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(connect, &json);  // a Struct always prints
  return "CONNECT " + json + "\r\n";
}

Error check_name(std::string_view name, const char* what) {
  if (name.empty()) return Error::bad_request(std::string("nats: the ") + what + " is empty");
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f)
      return Error::bad_request(std::string("nats: the ") + what + " '" + printable(name) +
                                "' holds a space or a non-printable byte; NATS names are one "
                                "token of printable ASCII");
  }
  return {};
}

Error encode_headers(const Metadata& header, std::string& out) {
  out.clear();
  if (header.empty()) return {};
  out += kHeaderVersion;
  out += "\r\n";
  for (const auto& [key, value] : header) {
    if (key.empty()) return Error::bad_request("nats: a header has an empty name");
    for (char c : key) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || c == ':')
        return Error::bad_request("nats: header name '" + printable(key) +
                                  "' must be printable ASCII without ':' or spaces");
    }
    if (value.find_first_of("\r\n") != std::string::npos)
      return Error::bad_request("nats: the value of header '" + key +
                                "' holds CR or LF, which NATS headers cannot carry");
    out += key;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  return {};
}

Error decode_headers(std::string_view block, Metadata& out) {
  out.clear();
  auto bad = [&](const std::string& why) {
    return bad_server("malformed message headers (" + why + "): " + printable(block));
  };
  if (block.size() < kHeaderVersion.size() + 4 || block.substr(0, kHeaderVersion.size()) != kHeaderVersion)
    return bad("no NATS/1.0 line");
  if (block.substr(block.size() - 4) != "\r\n\r\n") return bad("not ended by an empty line");
  size_t pos = block.find("\r\n");
  const std::string_view first = block.substr(0, pos);
  if (first.size() > kHeaderVersion.size() && first[kHeaderVersion.size()] != ' ')
    return bad("unknown version");
  pos += 2;
  const size_t end = block.size() - 2;  // the final empty line
  while (pos < end) {
    const size_t eol = block.find("\r\n", pos);
    const std::string_view line = block.substr(pos, eol - pos);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return bad("a line without 'name:'");
    std::string_view value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    out.insert_or_assign(std::string(line.substr(0, colon)), std::string(value));
    pos = eol + 2;
  }
  return {};
}

void append_publish(std::string& out, std::string_view subject, std::string_view header_block,
                    std::string_view body) {
  if (header_block.empty()) {
    out += "PUB ";
    out += subject;
    out += ' ';
  } else {
    out += "HPUB ";
    out += subject;
    out += ' ';
    append_number(out, header_block.size());
    out += ' ';
  }
  append_number(out, header_block.size() + body.size());
  out += "\r\n";
  out += header_block;
  out += body;
  out += "\r\n";
}

void append_subscribe(std::string& out, std::string_view subject, std::string_view queue,
                      uint64_t sid) {
  out += "SUB ";
  out += subject;
  out += ' ';
  if (!queue.empty()) {
    out += queue;
    out += ' ';
  }
  append_number(out, sid);
  out += "\r\n";
}

void append_unsubscribe(std::string& out, uint64_t sid) {
  out += "UNSUB ";
  append_number(out, sid);
  out += "\r\n";
}

// ---- Parser ----------------------------------------------------------------------------------

void Parser::reset() {
  buffer_.clear();
  consumed_ = 0;
  awaiting_payload_ = false;
  msg_ = {};
  failed_ = false;
}

Error Parser::feed(std::string_view bytes, ProtocolEvents& events) {
  if (failed_) return bad_server("the parser stopped at an earlier protocol error");
  buffer_.append(bytes.data(), bytes.size());
  Error error = parse(events);
  // Drop what was consumed; keep the unfinished command at the front.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
  } else if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
  }
  consumed_ = 0;
  if (!error.ok()) failed_ = true;
  return error;
}

Error Parser::parse(ProtocolEvents& events) {
  for (;;) {
    const std::string_view rest = std::string_view(buffer_).substr(consumed_);
    if (awaiting_payload_) {
      const uint64_t need = msg_.total_bytes + 2;
      if (rest.size() < need) return {};
      if (rest[msg_.total_bytes] != '\r' || rest[msg_.total_bytes + 1] != '\n')
        return bad_server("the payload of a message on '" + printable(msg_.subject) +
                          "' is not followed by CRLF (its size is wrong): " +
                          printable(rest.substr(msg_.total_bytes)));
      const auto header_bytes = static_cast<size_t>(msg_.header_bytes);
      const auto total = static_cast<size_t>(msg_.total_bytes);
      awaiting_payload_ = false;
      consumed_ += need;
      Error e = events.on_msg(msg_.subject, msg_.sid, msg_.reply, rest.substr(0, header_bytes),
                              rest.substr(header_bytes, total - header_bytes));
      if (!e.ok()) return e;
      continue;
    }
    const size_t eol = rest.find('\n');
    if (eol == std::string_view::npos) {
      if (rest.size() > max_control_line_)
        return bad_server("a control line longer than " + std::to_string(max_control_line_) +
                          " bytes: " + printable(rest));
      return {};
    }
    if (eol > max_control_line_)
      return bad_server("a control line longer than " + std::to_string(max_control_line_) +
                        " bytes: " + printable(rest));
    std::string_view line = rest.substr(0, eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    consumed_ += eol + 1;
    Error e = control_line(line, events);
    if (!e.ok()) return e;
  }
}

Error Parser::control_line(std::string_view line, ProtocolEvents& events) {
  size_t op_end = 0;
  while (op_end < line.size() && !is_space(line[op_end])) ++op_end;
  const std::string_view op = line.substr(0, op_end);
  std::string_view args = line.substr(op_end);
  while (!args.empty() && is_space(args.front())) args.remove_prefix(1);

  if (iequals(op, "MSG")) return msg_line(args, false);
  if (iequals(op, "HMSG")) return msg_line(args, true);
  if (iequals(op, "PING") && args.empty()) return events.on_ping();
  if (iequals(op, "PONG") && args.empty()) return events.on_pong();
  if (iequals(op, "+OK") && args.empty()) return events.on_ok();
  if (iequals(op, "INFO")) return events.on_info(args);
  if (iequals(op, "-ERR")) {
    while (!args.empty() && is_space(args.back())) args.remove_suffix(1);
    if (args.size() >= 2 && args.front() == '\'' && args.back() == '\'')
      args = args.substr(1, args.size() - 2);
    return events.on_err(args);
  }
  return bad_server("unexpected protocol line from the server: '" + printable(line) + "'");
}

Error Parser::msg_line(std::string_view args, bool with_headers) {
  const char* op = with_headers ? "HMSG" : "MSG";
  const auto parts = split_args(args);
  const size_t counts = with_headers ? 2 : 1;  // the numbers at the end
  if (parts.size() != 2 + counts && parts.size() != 3 + counts)
    return bad_server(std::string(op) + " with " + std::to_string(parts.size()) +
                      " arguments: '" + printable(args) + "'");
  PendingMsg msg;
  msg.subject = std::string(parts[0]);
  if (!parse_count(parts[1], msg.sid))
    return bad_server(std::string(op) + " with a non-numeric sid: '" + printable(args) + "'");
  if (parts.size() == 3 + counts) msg.reply = std::string(parts[2]);
  const size_t first_count = parts.size() - counts;
  if (!parse_count(parts[first_count], with_headers ? msg.header_bytes : msg.total_bytes) ||
      (with_headers && !parse_count(parts[first_count + 1], msg.total_bytes)))
    return bad_server(std::string(op) + " with a size that is not a number: '" +
                      printable(args) + "'");
  if (with_headers && msg.header_bytes > msg.total_bytes)
    return bad_server("HMSG whose header size exceeds its total size: '" + printable(args) + "'");
  if (msg.total_bytes > max_payload_)
    return bad_server(std::string(op) + " of " + std::to_string(msg.total_bytes) +
                      " bytes exceeds max_payload " + std::to_string(max_payload_) + ": '" +
                      printable(args) + "'");
  msg_ = std::move(msg);
  awaiting_payload_ = true;
  return {};
}

}  // namespace micro::broker_nats
