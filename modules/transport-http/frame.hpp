// Stream frames (docs/rpc-wire.md, "Streams"): 1 byte of flags (0 a message, 1 an error), a
// 4-byte big-endian payload length, then the payload. Frames ride in a chunked body and need not
// line up with its chunks, so the decoder works on the body's bytes as they arrive.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "micro/error.hpp"
#include "micro/transport.h"

namespace micro::transport_http {

enum class FrameKind : uint8_t { message = 0, error = 1 };

struct Frame {
  FrameKind kind = FrameKind::message;
  std::string payload;
};

constexpr size_t kFrameHeaderBytes = 5;

inline std::array<char, kFrameHeaderBytes> frame_header(FrameKind kind, uint32_t payload_size) {
  return {static_cast<char>(kind), static_cast<char>((payload_size >> 24) & 0xff),
          static_cast<char>((payload_size >> 16) & 0xff),
          static_cast<char>((payload_size >> 8) & 0xff), static_cast<char>(payload_size & 0xff)};
}

// The kind and payload of the whole frame at the start of `bytes` (as FrameDecoder::next_into
// appends them; the caller knows one is there).
inline FrameKind frame_kind_at(std::string_view bytes) noexcept {
  return static_cast<FrameKind>(bytes[0]);
}
inline std::string_view frame_payload_at(std::string_view bytes) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size =
      (size_t(p[1]) << 24) | (size_t(p[2]) << 16) | (size_t(p[3]) << 8) | size_t(p[4]);
  return bytes.substr(kFrameHeaderBytes, size);
}

// Body bytes received and not yet taken, and the frames cut from them.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint64_t max_payload) : max_payload_(max_payload) {}

  // Bytes are appended here (by the HTTP reader).
  std::string& bytes() noexcept { return bytes_; }
  // True when some bytes of a frame have arrived but not all of it.
  bool has_partial() const noexcept { return bytes_.size() > start_; }

  // The next whole frame, or nullopt when more bytes are needed (or `error` was set: bad flags,
  // or a payload over the limit; the stream cannot go on after that).
  std::optional<Frame> next(Error& error) {
    const auto size = whole_frame(error);
    if (!size) return std::nullopt;
    Frame frame{static_cast<FrameKind>(bytes_[start_]),
                bytes_.substr(start_ + kFrameHeaderBytes, *size)};
    take(*size);
    return frame;
  }

  // As next, but appends the whole frame (header and payload, as on the wire) to `out` and
  // returns its payload's size: nothing allocated per frame. Nullopt as next.
  std::optional<size_t> next_into(std::string& out, Error& error) {
    const auto size = whole_frame(error);
    if (!size) return std::nullopt;
    out.append(bytes_, start_, kFrameHeaderBytes + *size);
    take(*size);
    return size;
  }

 private:
  // The payload size of the frame at start_ once it has arrived whole; nullopt while more bytes
  // are needed, or with `error` set for bad flags or a payload over the limit.
  std::optional<size_t> whole_frame(Error& error) const {
    const size_t available = bytes_.size() - start_;
    if (available < kFrameHeaderBytes) return std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data() + start_);
    if (p[0] > 1) {
      error = Error::bad_request("stream frame with unknown flags " + std::to_string(p[0]));
      return std::nullopt;
    }
    const uint64_t size =
        (uint64_t(p[1]) << 24) | (uint64_t(p[2]) << 16) | (uint64_t(p[3]) << 8) | uint64_t(p[4]);
    if (size > max_payload_) {
      error =
          Error(413, "stream frame of " + std::to_string(size) + " bytes exceeds max_body_bytes (" +
                         std::to_string(max_payload_) + ")");
      return std::nullopt;
    }
    if (available < kFrameHeaderBytes + size) return std::nullopt;
    return static_cast<size_t>(size);
  }
  // Past the frame at start_ (of `size` payload bytes).
  void take(size_t size) {
    start_ += kFrameHeaderBytes + size;
    compact();
  }

  // Drops taken bytes once they are most of the buffer, so it does not grow without bound.
  void compact() {
    if (start_ == bytes_.size()) {
      bytes_.clear();
      start_ = 0;
    } else if (start_ > 65536 && start_ * 2 > bytes_.size()) {
      bytes_.erase(0, start_);
      start_ = 0;
    }
  }

  uint64_t max_payload_;
  std::string bytes_;
  size_t start_ = 0;
};

}  // namespace micro::transport_http
