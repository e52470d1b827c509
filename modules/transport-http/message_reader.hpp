// Reads one HTTP message with Beast's parser: its head, then its body into a caller's string as it
// arrives (whole for a unary message, frame by frame for a stream). The sessions drive the parser
// with Beast's async reads; parse_request drives the same parser from a buffer, for the fuzzer
// and the unit tests.
#pragma once

#include <boost/beast/http.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "frame.hpp"
#include "settings.hpp"
#include "wire.hpp"

namespace micro::transport_http {

namespace beast = boost::beast;

template <bool isRequest>
class MessageReader {
 public:
  using Parser = http::parser<isRequest, http::buffer_body, ArenaAllocator<char>>;

  // The head's fields are allocated from a buffer held here (the usual head needs no heap).
  explicit MessageReader(const Limits& limits) { start(limits); }

  // Ready for the next message, as a new reader (a session reuses its readers: no allocation).
  // Nothing allocated from arena() may be in use.
  void restart(const Limits& limits) {
    parser_.reset();
    arena_.reset();
    prepared_ = 0;
    start(limits);
  }

  Parser& parser() noexcept { return *parser_; }
  // Where the head's fields live; more may go there while the reader lives (a ReceivedHead's list).
  Arena& arena() noexcept { return arena_; }
  const Parser& parser() const noexcept { return *parser_; }

  // After the head of a stream: no limit on the whole body (each frame is checked instead).
  // (Not eager: Beast's read_some would then wait for more input after a chunk whose trailing
  // CRLF is all that is left.)
  void unlimited_body() { parser_->body_limit(boost::none); }

  // Points the parser's body at up to `n` free bytes (a scratch area: no zero-filling of the
  // caller's string); call before each body read.
  void prepare_body(size_t n) {
    if (scratch_.size() < n) scratch_.resize(n);
    parser_->get().body().data = scratch_.data();
    parser_->get().body().size = n;
    parser_->get().body().more = true;
    prepared_ = n;
  }
  // Appends to `into` what the parser wrote since prepare_body; call after each body read. The
  // first call reserves room for a body of known length.
  void commit_body(std::string& into) {
    const size_t written = prepared_ - parser_->get().body().size;
    if (into.empty() && parser_->content_length())
      into.reserve(static_cast<size_t>(*parser_->content_length()));
    into.append(scratch_.data(), written);
    parser_->get().body().data = nullptr;
    parser_->get().body().size = 0;
    prepared_ = 0;
  }

  // How many bytes to prepare for the next body read: the rest of a known length (up to the
  // limit Beast enforces), else a chunk.
  size_t next_body_window() const {
    constexpr size_t kChunk = 64 * 1024;
    if (auto remaining = parser_->content_length_remaining())
      return *remaining == 0 ? 1 : static_cast<size_t>(std::min<uint64_t>(*remaining, 256 * 1024));
    return kChunk;
  }

  // The head as a Message (lower-case names, pseudo-headers), body empty.
  Message head() const { return to_message(parser_->get().base()); }

  // Feeds bytes the way Beast's read operation does (put, then put_eof at `end`); returns the
  // number consumed. Body bytes go to `body`. `ec` is set as Beast sets it (need_more: feed
  // more; need_buffer never escapes).
  size_t feed(std::string_view bytes, bool end, std::string& body, beast::error_code& ec);

 private:
  void start(const Limits& limits) {
    parser_.emplace(std::piecewise_construct, std::make_tuple(),
                    std::make_tuple(ArenaAllocator<char>(arena_)));
    parser_->header_limit(limits.max_header_bytes);
    parser_->body_limit(limits.max_body_bytes);
  }

  static constexpr size_t kArenaBytes = 2048;
  alignas(std::max_align_t) char arena_bytes_[kArenaBytes];
  Arena arena_{arena_bytes_, kArenaBytes};  // before parser_, which allocates from it
  std::optional<Parser> parser_;
  std::vector<char> scratch_;
  size_t prepared_ = 0;
};

// A session's reader for its next message: the one it delivered last, restarted, once that
// message's recv callback has returned (give), else a new one.
template <bool isRequest>
class ReaderSpare {
 public:
  using Reader = MessageReader<isRequest>;
  std::unique_ptr<Reader> take(const Limits& limits) {
    if (spare_ == nullptr) return std::make_unique<Reader>(limits);
    spare_->restart(limits);
    return std::move(spare_);
  }
  void give(std::unique_ptr<Reader> reader) {
    if (spare_ == nullptr) spare_ = std::move(reader);
  }

 private:
  std::unique_ptr<Reader> spare_;
};

// A request as the server reads it, from a buffer: what the fuzzer exercises.
struct ParsedRequest {
  Error error;                // what the server would answer: 400, 413, 431 (ok: no error)
  bool complete = false;      // a whole request was read
  bool stream = false;        // Micro-Stream: 1
  Message message;            // head (and, for a unary request, the body)
  std::vector<Frame> frames;  // for a stream: the frames of its body, in order
};
ParsedRequest parse_request(std::string_view bytes, const Limits& limits);

// The status a server answers a parse failure with (header_limit 431, body_limit 413, else 400).
int32_t parse_error_status(const beast::error_code& ec);

// "malformed HTTP request from X: <what Beast says>", and the like, with its status.
Error parse_error(const beast::error_code& ec, const std::string& what);

extern template class MessageReader<true>;
extern template class MessageReader<false>;

}  // namespace micro::transport_http
