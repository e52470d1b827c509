// micro::Error: the C++ face of micro_error_t, and the conversions at the ABI edge.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "micro/error.h"

namespace micro {

inline std::string_view to_view(micro_str_t s) noexcept {
  return s.data == nullptr ? std::string_view{} : std::string_view{s.data, s.size};
}
inline micro_str_t to_c(std::string_view s) noexcept { return micro_str_t{s.data(), s.size()}; }

// The text go-micro gives each code.
inline const char* status_text(int32_t code) noexcept {
  switch (code) {
    case 0: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
  }
}

// Reads a struct that the other side of the boundary may have built from an older or newer
// header: copies the members both sides know and zeroes the rest, so a reader never touches
// memory past what the writer declared.
template <class T>
T read_struct(const T* from) noexcept {
  T out{};
  if (from == nullptr) return out;
  const size_t size = from->struct_size < sizeof(T) ? from->struct_size : sizeof(T);
  std::memcpy(static_cast<void*>(&out), from, size);
  out.struct_size = size;
  return out;
}

// A go-micro error, or success (code 0). Value type; cheap to move.
class Error {
 public:
  Error() = default;
  Error(int32_t code, std::string detail, std::string id = {}, std::string status = {})
      : code_(code),
        id_(std::move(id)),
        detail_(std::move(detail)),
        status_(status.empty() ? status_text(code) : std::move(status)) {}

  // Copies a C error; NULL means success. A zero code on a non-NULL error is read as 500, since
  // the sender meant failure.
  static Error from_c(const micro_error_t* error) {
    if (error == nullptr) return Error{};
    const micro_error_t e = read_struct(error);
    const int32_t code = e.code == 0 ? MICRO_CODE_INTERNAL : e.code;
    return Error{code, std::string(to_view(e.detail)), std::string(to_view(e.id)),
                 std::string(to_view(e.status))};
  }

  static Error bad_request(std::string detail) { return {400, std::move(detail)}; }
  static Error not_found(std::string detail) { return {404, std::move(detail)}; }
  static Error timeout(std::string detail) { return {408, std::move(detail)}; }
  static Error conflict(std::string detail) { return {409, std::move(detail)}; }
  static Error internal(std::string detail) { return {500, std::move(detail)}; }
  static Error not_implemented(std::string detail) { return {501, std::move(detail)}; }
  static Error unavailable(std::string detail) { return {503, std::move(detail)}; }

  bool ok() const noexcept { return code_ == 0; }
  int32_t code() const noexcept { return code_; }
  const std::string& id() const noexcept { return id_; }
  const std::string& detail() const noexcept { return detail_; }
  const std::string& status() const noexcept { return status_; }

  // Sets the id if none was given: the module or service that produced the error.
  Error& with_id(std::string id) {
    if (id_.empty()) id_ = std::move(id);
    return *this;
  }

  // "id: detail (404 Not Found)", or "OK".
  std::string to_string() const {
    if (ok()) return "OK";
    std::string out;
    if (!id_.empty()) out += id_ + ": ";
    out += detail_ + " (" + std::to_string(code_) + " " + status_ + ")";
    return out;
  }

  // A C view borrowing this error's strings; NULL-equivalent (nullptr) when ok. Lives as long as
  // this object and the returned struct.
  micro_error_t view() const noexcept {
    micro_error_t e{};
    e.struct_size = sizeof(micro_error_t);
    e.release = nullptr;
    e.code = code_;
    e.id = to_c(id_);
    e.detail = to_c(detail_);
    e.status = to_c(status_);
    return e;
  }

  // A heap copy that the receiver owns and frees with micro_error_free(); nullptr when ok.
  micro_error_t* to_owned_c() const;

 private:
  int32_t code_ = 0;
  std::string id_;
  std::string detail_;
  std::string status_;
};

namespace detail {
// An owned C error: the C struct first, then the strings it points into.
struct OwnedError : micro_error_t {
  std::string id_text, detail_text, status_text;
  static void release_fn(micro_error_t* self) { delete static_cast<OwnedError*>(self); }
};
}  // namespace detail

inline micro_error_t* Error::to_owned_c() const {
  if (ok()) return nullptr;
  auto owned = std::make_unique<detail::OwnedError>();
  owned->id_text = id_;
  owned->detail_text = detail_;
  owned->status_text = status_;
  micro_error_t& c = *owned;
  c.struct_size = sizeof(micro_error_t);
  c.release = &detail::OwnedError::release_fn;
  c.code = code_;
  c.id = to_c(owned->id_text);
  c.detail = to_c(owned->detail_text);
  c.status = to_c(owned->status_text);
  return owned.release();
}

// Takes ownership of a C error returned by a call and converts it.
inline Error take_error(micro_error_t* error) {
  Error out = Error::from_c(error);
  micro_error_free(error);
  return out;
}

// A value or an error, for the blocking conveniences.
template <class T>
struct Result {
  Error error;
  T value{};
  bool ok() const noexcept { return error.ok(); }
};

}  // namespace micro
