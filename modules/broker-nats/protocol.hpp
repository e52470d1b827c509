// The NATS client protocol as broker-nats speaks it: an incremental parser for what the server
// sends (INFO, MSG, HMSG, PING, PONG, +OK, -ERR), the commands the client writes (CONNECT, PUB,
// HPUB, SUB, UNSUB) and the NATS/1.0 header block that carries a message's header map.
// No I/O here, so the parser can be fuzzed on its own (tests/fuzz/fuzz_nats_parser).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "micro/types.hpp"

namespace micro::broker_nats {

// What the server's INFO says, as far as the client cares.
struct ServerInfo {
  std::string server_id;
  std::string version;
  bool headers = false;        // HPUB/HMSG understood (nats-server >= 2.2)
  bool auth_required = false;
  bool tls_required = false;
  uint64_t max_payload = 1u << 20;  // largest headers + body of one message
};

// Reads INFO's JSON (protobuf's JSON mapping into google.protobuf.Struct). Unknown fields are
// ignored; a malformed document or a max_payload that is not a positive number is a 502.
Error parse_info(std::string_view json, ServerInfo& out);

// The CONNECT line (with its CRLF), verbose off, headers on when the server supports them.
struct ConnectOptions {
  std::string name;
  std::string user;
  std::string pass;
  std::string token;
  bool headers = true;
};
std::string connect_command(const ConnectOptions& options);

// A subject or queue name is one token of printable non-space ASCII (the protocol separates
// arguments with spaces). Returns an error naming `what` when `name` is not.
Error check_name(std::string_view name, const char* what);

// "NATS/1.0\r\nkey: value\r\n...\r\n"; empty for an empty map. Keys must be printable ASCII
// without ':' or spaces, values must hold no CR or LF (400 otherwise).
Error encode_headers(const Metadata& header, std::string& out);
// The reverse; also accepts "NATS/1.0 <status> [text]" as the first line (the status is ignored)
// and one optional space after each ':', so values round-trip byte for byte.
Error decode_headers(std::string_view block, Metadata& out);

// Appends PUB (no headers) or HPUB (`header_block` non-empty) for `subject`.
void append_publish(std::string& out, std::string_view subject, std::string_view header_block,
                    std::string_view body);
void append_subscribe(std::string& out, std::string_view subject, std::string_view queue,
                      uint64_t sid);
void append_unsubscribe(std::string& out, uint64_t sid);

// Receives what the parser finds, in order. The views live until the callback returns. A
// non-ok result stops the parse and is returned by Parser::feed.
class ProtocolEvents {
 public:
  virtual ~ProtocolEvents() = default;
  virtual Error on_info(std::string_view json) = 0;
  // `header_block` is empty for MSG, the raw NATS/1.0 block for HMSG.
  virtual Error on_msg(std::string_view subject, uint64_t sid, std::string_view reply,
                       std::string_view header_block, std::string_view payload) = 0;
  virtual Error on_ping() = 0;
  virtual Error on_pong() = 0;
  virtual Error on_ok() = 0;
  virtual Error on_err(std::string_view message) = 0;
};

// Incremental parser of the server's byte stream: feed() it whatever a read returned; a command
// split across reads is completed by the next feed. Any protocol violation (unknown operation,
// bad arguments, a control line longer than max_control_line, a message larger than
// max_payload, a payload not followed by CRLF) is a 502 naming what was wrong; the connection
// must then be dropped (call reset() before reusing the parser).
class Parser {
 public:
  static constexpr size_t kDefaultMaxControlLine = 64 * 1024;

  explicit Parser(uint64_t max_payload = 1u << 20,
                  size_t max_control_line = kDefaultMaxControlLine)
      : max_payload_(max_payload), max_control_line_(max_control_line) {}

  // From the server's INFO; applies to messages whose control line comes after.
  void set_max_payload(uint64_t max_payload) noexcept { max_payload_ = max_payload; }
  uint64_t max_payload() const noexcept { return max_payload_; }

  Error feed(std::string_view bytes, ProtocolEvents& events);
  void reset();
  // Bytes held back waiting for the rest of a command.
  size_t buffered() const noexcept { return buffer_.size() - consumed_; }

 private:
  struct PendingMsg {
    std::string subject;
    std::string reply;
    uint64_t sid = 0;
    uint64_t header_bytes = 0;
    uint64_t total_bytes = 0;
  };

  Error parse(ProtocolEvents& events);
  Error control_line(std::string_view line, ProtocolEvents& events);
  Error msg_line(std::string_view args, bool with_headers);

  uint64_t max_payload_;
  size_t max_control_line_;
  std::string buffer_;
  size_t consumed_ = 0;
  bool awaiting_payload_ = false;
  PendingMsg msg_;
  bool failed_ = false;
};

}  // namespace micro::broker_nats
