// The HTTP mapping of docs/rpc-wire.md on Beast's types: received heads become Messages
// (lower-case names, :method/:path/:status pseudo-headers), Messages become heads to send, and
// errors travel as the compact JSON {"id","code","detail","status"}.
#pragma once

#include <boost/beast/http.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "micro/types.hpp"

static_assert(
    std::is_same_v<boost::beast::string_view, std::string_view>,
    "compile transport-http with -DBOOST_BEAST_USE_STD_STRING_VIEW (see its CMakeLists.txt)");

namespace micro::transport_http {

namespace http = boost::beast::http;

// The id on errors the transport makes itself.
inline constexpr const char* kModule = "transport-http";

// Received heads as Messages with an empty body.
Message to_message(const http::request_header<>& head);
Message to_message(const http::response_header<>& head);

// True for a request that opens a stream (Micro-Stream: 1).
bool is_stream_request(const http::request_header<>& head);

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
void write_request_head(const Message& message, std::string_view host, size_t body_size,
                        std::string& out);
void write_response_head(const Message& message, unsigned status, bool keep_alive,
                         size_t body_size, std::string& out);

// HTTP/2 (h2.cpp): the request line and status of a Message, checked as fill_*_head checks them,
// and its other headers with lower-case names, framing and connection headers skipped. Throw
// micro::Exception (400) for what cannot be sent.
void request_line(const Message& message, std::string& method, std::string& path);
unsigned response_status(const Message& message);
using HeaderList = std::vector<std::pair<std::string, std::string>>;
HeaderList h2_fields(const Message& message);

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
