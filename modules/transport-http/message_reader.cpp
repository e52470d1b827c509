#include "message_reader.hpp"

namespace micro::transport_http {

template <bool isRequest>
size_t MessageReader<isRequest>::feed(std::string_view bytes, bool end, std::string& body,
                                      beast::error_code& ec) {
  size_t used = 0;
  int stalls = 0;
  ec = {};
  const bool had_head = parser_->is_header_done();
  while (!parser_->is_done()) {
    if (!had_head && parser_->is_header_done()) return used;  // the caller looks at the head
    const bool in_body = parser_->is_header_done();
    if (in_body) prepare_body(next_body_window());
    size_t n = 0;
    if (used < bytes.size()) {
      n = parser_->put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    } else {
      ec = http::error::need_more;
    }
    if (in_body) commit_body(body);
    used += n;
    stalls = n == 0 ? stalls + 1 : 0;
    if (ec == http::error::need_buffer) ec = {};  // the window is full: prepare another
    if (!ec && stalls < 3) continue;
    if (!ec) ec = http::error::need_more;  // no progress on what is left
    if (ec != http::error::need_more) return used;
    if (n > 0 && used < bytes.size()) continue;
    if (!end) return used;
    // The input ends here, as a peer closing its side does.
    if (!parser_->got_some()) {
      ec = http::error::end_of_stream;
      return used;
    }
    parser_->put_eof(ec);
    return used;
  }
  return used;
}

template class MessageReader<true>;
template class MessageReader<false>;

int32_t parse_error_status(const beast::error_code& ec) {
  if (ec == http::error::header_limit) return 431;
  if (ec == http::error::body_limit) return 413;
  return 400;
}

Error parse_error(const beast::error_code& ec, const std::string& what) {
  const int32_t status = parse_error_status(ec);
  if (status == 431) return http_error(431, what + ": the head exceeds max_header_bytes");
  if (status == 413) return http_error(413, what + ": the body exceeds max_body_bytes");
  return http_error(400, "malformed HTTP " + what + ": " + ec.message());
}

ParsedRequest parse_request(std::string_view bytes, const Limits& limits) {
  ParsedRequest out;
  MessageReader<true> reader(limits);
  beast::error_code ec;
  std::string body;
  // The head first, as the server reads it, so a stream's body is not capped as a whole.
  const size_t used = reader.feed(bytes, true, body, ec);
  if (ec) {
    if (ec != http::error::end_of_stream) out.error = parse_error(ec, "request");
    return out;
  }
  out.message = reader.head();
  out.stream = is_stream_request(reader.parser().get().base());
  if (out.stream) reader.unlimited_body();
  if (!reader.parser().is_done()) reader.feed(bytes.substr(used), true, body, ec);
  if (ec) {
    out.error = parse_error(ec, "request");
    return out;
  }
  out.complete = reader.parser().is_done();
  if (!out.stream) {
    out.message.body = std::move(body);
    return out;
  }
  FrameDecoder frames(limits.max_body_bytes);
  frames.bytes() = std::move(body);
  Error frame_error;
  while (auto frame = frames.next(frame_error)) out.frames.push_back(std::move(*frame));
  if (!frame_error.ok()) {
    out.error = frame_error;
  } else if (frames.has_partial()) {
    out.error = Error::bad_request("the stream ended in the middle of a frame");
  }
  return out;
}

}  // namespace micro::transport_http
