// The HTTP mapping of docs/rpc-wire.md on Beast's types: received heads become Messages
// (lower-case names, :method/:path/:status pseudo-headers), Messages become heads to send, and
// errors travel as the compact JSON {"id","code","detail","status"}.
#pragma once

#include <boost/beast/http.hpp>
#include <array>
#include <forward_list>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "arena.hpp"
#include "micro/types.hpp"

static_assert(
    std::is_same_v<boost::beast::string_view, std::string_view>,
    "compile transport-http with -DBOOST_BEAST_USE_STD_STRING_VIEW (see its CMakeLists.txt)");

namespace micro::transport_http {

namespace http = boost::beast::http;

// The fields of a head the transport parses (MessageReader): allocated from the reader's arena.
using ArenaFields = http::basic_fields<ArenaAllocator<char>>;

// The id on errors the transport makes itself.
inline constexpr const char* kModule = "transport-http";

// A received head's headers as a C header list, canonical as a Message holds them: lower-case
// names, a repeated field's non-empty items joined with ", " in the order received (Beast keeps a
// name's fields together), and the pseudo-headers :method and :path (a request) or :status (a
// response). The list borrows from the parsed head (keep it alive and unchanged while the list is
// used) and from strings kept here (lower-cased names and joined values, only when needed).
class ReceivedHead {
 public:
  // (Fields: http::fields or ArenaFields.) The list is allocated from `arena` when given (the
  // reader's, which outlives it).
  template <class Fields>
  explicit ReceivedHead(const http::header<true, Fields>& head, Arena* arena = nullptr);
  template <class Fields>
  explicit ReceivedHead(const http::header<false, Fields>& head, Arena* arena = nullptr);
  ReceivedHead(const ReceivedHead&) = delete;
  ReceivedHead& operator=(const ReceivedHead&) = delete;

  // Sets `lower_name` to `value` (a view that must outlive the list), replacing a received field
  // of that name.
  void set(std::string_view lower_name, std::string_view value);

  micro_metadata_t view() const noexcept { return {items_.data(), items_.size()}; }
  // A C message of this head and `body` (a view of it, valid as long as both are).
  micro_message_t message(std::string_view body) const noexcept {
    return {sizeof(micro_message_t), view(), to_c_bytes(body)};
  }

 private:
  template <class Fields>
  void read_fields(const Fields& fields);
  // `name` in lower case: itself, a constant, or a kept copy.
  std::string_view lower_name(std::string_view name);
  std::string_view keep(std::string s);

  Arena heap_{nullptr, 0};  // no buffer: everything from the heap
  std::vector<micro_kv_t, ArenaAllocator<micro_kv_t>> items_;
  std::forward_list<std::string> kept_;  // stable addresses: the list points into them
  std::string status_;
};

// Received heads as Messages with an empty body (a ReceivedHead, copied).
template <bool isRequest, class Fields>
Message to_message(const http::header<isRequest, Fields>& head);

// The headers of a message to send: a Message's map, or a C header list whose keys strictly
// ascend (unique, in the order a map iterates and MessageView lists them; see ascending()), so
// both give the same bytes on the wire.
class OutHeaders {
 public:
  OutHeaders(const Message& message) noexcept : map_(&message.header) {}  // NOLINT: implicit
  explicit OutHeaders(micro_metadata_t list) noexcept : list_(list) {}

  // Whether `list` may be sent as it is: its keys strictly ascend.
  static bool ascending(micro_metadata_t list) noexcept;

  template <class F>
  void for_each(F f) const {
    if (map_ != nullptr) {
      for (const auto& [name, value] : *map_) f(std::string_view(name), std::string_view(value));
      return;
    }
    for (size_t i = 0; i < list_.count; ++i)
      f(to_view(list_.items[i].key), to_view(list_.items[i].value));
  }
  std::optional<std::string_view> find(std::string_view name) const;
  size_t size() const noexcept { return map_ != nullptr ? map_->size() : list_.count; }

 private:
  const Metadata* map_ = nullptr;
  micro_metadata_t list_{};
};

// True for a request that opens a stream (Micro-Stream: 1).
template <class Fields>
bool is_stream_request(const http::header<true, Fields>& head);

// Fill a head to send from a Message's headers. Framing headers (Content-Length,
// Transfer-Encoding, Connection, Host) are the transport's and are skipped. Throws
// micro::Exception (400) for what cannot be sent: a bad :method, :path or :status, a header name
// that is not an HTTP token, a value with CR, LF or NUL.
void fill_request_head(const Message& message, std::string_view host, http::request_header<>& head);
void fill_response_head(const Message& message, http::response_header<>& head);

// The same heads written straight into `out` (appended), as Beast's serializer writes what
// fill_*_head and prepare_payload make, for an HTTP/1.1 message with a Content-Length body of
// `body_size` bytes (a response: not HEAD, 204 or 304; `status` from response_status). Throw as
// fill_*_head do. (No basic_fields in between: a unary call's heads cost no allocation here.)
void write_request_head(const OutHeaders& message, std::string_view host, size_t body_size,
                        std::string& out);
void write_response_head(const OutHeaders& message, unsigned status, bool keep_alive,
                         size_t body_size, std::string& out);

// HTTP/2 (h2.cpp): the request line and status of a Message, checked as fill_*_head checks them,
// and its other headers with lower-case names, framing and connection headers skipped. Throw
// micro::Exception (400) for what cannot be sent.
void request_line(const OutHeaders& message, std::string& method, std::string& path);
unsigned response_status(const OutHeaders& message);

// An HTTP/2 head to submit: views of the sender's strings, and what the transport makes itself
// (numbers, a lowered name), kept here. Views into it stay valid while it lives, so it is
// neither copied nor moved.
class HeaderList {
 public:
  using Field = std::pair<std::string_view, std::string_view>;
  HeaderList() = default;
  HeaderList(std::initializer_list<Field> fields) : fields_(fields) {}
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;

  void add(std::string_view name, std::string_view value) { fields_.emplace_back(name, value); }
  void reserve(size_t n) { fields_.reserve(n); }
  void add_front(std::initializer_list<Field> fields) {
    fields_.insert(fields_.begin(), fields);
  }
  // Drops every field named `name`.
  void remove(std::string_view name);
  // `value` in decimal, kept here.
  std::string_view number(uint64_t value);
  // `s`, kept here.
  std::string_view keep(std::string s) { return kept_.emplace_front(std::move(s)); }
  const std::vector<Field>& fields() const noexcept { return fields_; }

 private:
  std::vector<Field> fields_;
  std::array<std::array<char, 24>, 2> numbers_{};
  size_t numbers_used_ = 0;
  std::forward_list<std::string> kept_;
};
// Appends the message's headers but pseudo-headers, framing and connection headers, names in
// lower case (the views of `message` must outlive `out`).
void h2_fields(const OutHeaders& message, HeaderList& out);

// Header names are matched without regard to case (senders may use any).
const std::string* find_header(const Message& message, std::string_view lower_name);

// The error JSON, and back. A payload that is not that JSON gives `fallback_code` with the text.
std::string error_json(const Error& error);
Error parse_error_json(std::string_view json, int32_t fallback_code);

// The reply the transport writes itself when it rejects a request (400, 408, 413, 431):
// Micro-Error set, the error JSON as the body, Connection: close.
http::response<http::string_body> error_response(const Error& error, unsigned version);

// An error with the status text HTTP gives its code, where go-micro's table has none.
Error http_error(int32_t code, std::string detail);

}  // namespace micro::transport_http
