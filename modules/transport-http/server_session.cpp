#include "server_session.hpp"

#include <optional>

#include "session_core.hpp"

namespace micro::transport_http {

namespace {

template <class Fields>
bool expects_continue(const http::header<true, Fields>& head) {
  auto it = head.find(http::field::expect);
  return it != head.end() && beast::iequals(it->value(), "100-continue");
}

template <class Stream>
class ServerSession final : public SessionCore<Stream> {
  using Core = SessionCore<Stream>;
  using Core::close_reason_;
  using Core::closed_;
  using Core::completions_;
  using Core::conn_;
  using Core::peer_;
  using Core::rt_;

 public:
  ServerSession(Runtime& rt, Stream stream, std::string remote)
      : Core(rt, stream.get_executor(), "connection from " + remote), remote_(std::move(remote)) {
    conn_ = std::make_unique<typename Core::Conn>(std::move(stream));
    local_ = conn_->local_address();
  }

  std::string local_address() const override { return local_; }
  std::string remote_address() const override { return remote_; }

  // Before the session starts: bytes already read from the connection, parsed first.
  void take_already_read(std::string_view bytes) {
    conn_->buffer.commit(net::buffer_copy(conn_->buffer.prepare(bytes.size()), net::buffer(bytes)));
  }

 private:
  enum class Reading { between_requests, unary_body, stream_body, finished };
  enum class Reply { none, head_sent, ended };

  bool steps_inline() const override { return !streaming_; }

  // ---- receiving
  void on_recv() override {
    if (streaming_ && this->frames_in_use()) return this->recv_from_inbox();
    if (closed_) return completions_.recv(close_reason_, std::nullopt);
    switch (reading_) {
      case Reading::between_requests:
        return start_request();
      case Reading::stream_body:
        return this->recv_from_inbox();
      case Reading::finished:
        return completions_.recv({}, std::nullopt);
      case Reading::unary_body:
        return;  // a read is under way for the pending recv
    }
  }

  void start_request() {
    reader_ = readers_.take(rt_.settings.limits);
    frames_.reset();
    if (conn_->buffer.size() > 0) return read_head();
    // Waiting for the next request: idle_timeout, until its first byte arrives.
    this->read_some(4096, rt_.settings.idle_timeout, [this](const beast::error_code& ec) {
      if (ec == net::error::eof) {
        reading_ = Reading::finished;
        return completions_.recv({}, std::nullopt);  // the client closed between requests
      }
      if (ec)
        return this->fail(this->failure(ec, "waiting for a request", rt_.settings.idle_timeout));
      read_head();
    });
  }

  void read_head() {
    this->read_message_head(
        *reader_, body_, rt_.settings.header_timeout, [this] { on_head(); },
        [this](const beast::error_code& ec) { head_failed(ec); });
  }

  void head_failed(const beast::error_code& ec) {
    if (ec == http::error::end_of_stream) {
      reading_ = Reading::finished;
      return completions_.recv({}, std::nullopt);
    }
    if (ec == beast::error::timeout)  // the connection is closed: no reply possible
      return this->fail(incomplete("head", rt_.settings.header_timeout));
    if (is_parse_error(ec)) return reject(parse_error(ec, "request from " + remote_));
    this->fail(this->failure(ec, "reading a request head", rt_.settings.header_timeout));
  }

  void on_head() {
    const auto& head = reader_->parser().get();
    keep_alive_ = head.keep_alive();
    version_ = head.version();
    head_request_ = head.method() == http::verb::head;
    if (expects_continue(head) && !reader_->parser().is_done()) {
      auto interim =
          std::make_shared<http::response<http::empty_body>>(http::status::continue_, version_);
      this->queue_write(
          [this, interim](typename Core::WriteHandler handler) {
            http::async_write(conn_->stream, *interim, std::move(handler));
          },
          [](beast::error_code) {});
    }
    if (is_stream_request(head)) {
      reader_->unlimited_body();
      frames_.emplace(rt_.settings.limits.max_body_bytes);
      reading_ = Reading::stream_body;
      streaming_ = true;
      reply_ = Reply::none;
      ++unanswered_;
      Message received = received_head();
      this->reset_send_closing();
      this->open_frames_in();  // frames are read ahead from now on
      return completions_.recv({}, std::move(received));
    }
    streaming_ = false;
    reading_ = Reading::unary_body;
    body_.clear();
    read_body();
  }

  void read_body() {
    this->read_body_into(
        *reader_, body_, rt_.settings.read_timeout, [this] { finish_unary(); },
        [this](const beast::error_code& ec) { body_failed(ec); });
  }

  // 408: the request's `part` did not arrive within `limit`.
  Error incomplete(const char* part, Millis limit) const {
    return Error(408,
                 std::string("the request ") + part + " from " + remote_ +
                     " was not complete within " + std::to_string(limit.count()) + " ms",
                 kModule);
  }

  void body_failed(const beast::error_code& ec) {
    if (ec == beast::error::timeout)
      return this->fail(incomplete("body", rt_.settings.read_timeout));
    if (is_parse_error(ec)) return reject(parse_error(ec, "request from " + remote_));
    this->fail(this->failure(ec, "reading a request body", rt_.settings.read_timeout));
  }

  // The request goes to the pending recv as a view of the parsed head and body, which are held
  // here until it returns (the handler may answer at once and the next request be read).
  void finish_unary() {
    std::unique_ptr<MessageReader<true>> reader = std::move(reader_);
    std::string body = std::move(body_);
    body_.clear();
    reading_ = Reading::between_requests;
    ++unanswered_;
    {
      ReceivedHead head(reader->parser().get(), &reader->arena());
      if constexpr (kIsTls<Stream>) head.set("micro-transport-protocol", kHttp11);
      completions_.recv(head.message(body));
    }
    this->recycle(readers_, std::move(reader), body_, std::move(body));
  }

  // A received head as a Message; over TLS it says which protocol carried it.
  Message received_head() const {
    Message head = reader_->head();
    if constexpr (kIsTls<Stream>) head.header["micro-transport-protocol"] = kHttp11;
    return head;
  }

  // Answers a request the transport refuses (400, 408, 413, 431), then closes: the pending recv
  // fails with the same error. The connection lingers, reading and dropping what the client still
  // sends, so the reply is not lost to a reset.
  void reject(const Error& error) {
    reading_ = Reading::finished;
    if (reply_ == Reply::head_sent || closed_) return this->fail(error);
    rejecting_ = true;
    auto reply =
        std::make_shared<http::response<http::string_body>>(error_response(error, version_));
    this->queue_write(
        [this, reply](typename Core::WriteHandler handler) {
          http::async_write(conn_->stream, *reply, std::move(handler));
        },
        [self = this->shared_from_this(), this](beast::error_code ec) {
          if (ec)
            return this->hard_close(
                this->failure(ec, "writing an error reply", rt_.settings.write_timeout));
          conn_->shutdown_send();
          linger();
        });
    completions_.recv(error, std::nullopt);
  }

  void linger() {
    if (closed_) return;
    conn_->tcp_layer().expires_after(rt_.settings.linger);
    conn_->buffer.consume(conn_->buffer.size());
    conn_->stream.async_read_some(
        conn_->buffer.prepare(64 * 1024),
        [self = this->shared_from_this(), this](beast::error_code ec, size_t) {
          if (ec) return this->hard_close(this->closed_locally());
          linger();
        });
  }

  // ---- sending
  void on_send(Message message) override {
    if (refused_send()) return;
    if (streaming_ && reply_ == Reply::head_sent) return this->send_frame(message);
    if (streaming_) return send_stream_head(std::move(message));
    send_unary(std::move(message));
  }

  // Completes a send the session's state does not allow, with why; true when it did.
  bool refused_send() {
    const char* why = nullptr;
    if (closed_) {
      completions_.send(close_reason_);
      return true;
    }
    if (send_closed_) {
      why = "send after close_send on ";
    } else if (unanswered_ == 0 && !(streaming_ && reply_ == Reply::head_sent)) {
      why = "send: no request to answer on ";
    }
    if (why == nullptr) return false;
    completions_.send(Error::bad_request(why + peer_).with_id(kModule));
    return true;
  }

  void send_unary(Message message) {
    if (send_unary_wire(message)) return;
    auto response = std::make_shared<http::response<http::string_body>>();
    const Error invalid = detail::guarded([&] { fill_response_head(message, response->base()); });
    if (!invalid.ok()) return refuse_send(invalid);
    const unsigned status = response->result_int();
    if (status != 204 && status != 304) response->body() = std::move(message.body);
    response->version(version_);
    response->keep_alive(keep_alive_);
    response->prepare_payload();
    if (head_request_) response->body().clear();  // HEAD: the length is told, the body is not sent
    --unanswered_;
    this->queue_write(
        [this, response](typename Core::WriteHandler handler) {
          http::async_write(conn_->stream, *response, std::move(handler));
        },
        response_written(response->keep_alive()));
  }

  // The usual response (HTTP/1.1, not to HEAD, a status with a body, a small body) is written
  // from one buffer, at once when the socket takes it. False: send_unary writes it through Beast.
  bool send_unary_wire(Message& message) {
    if (!wire_applies(message.body.size())) return false;
    unsigned status = 0;
    const Error invalid = detail::guarded([&] { status = response_status(message); });
    if (!invalid.ok()) {
      refuse_send(invalid);
      return true;
    }
    if (status == 204 || status == 304) return false;
    write_unary_wire(message, status, message.body);
    return true;
  }

  bool wire_applies(size_t body_size) const {
    return version_ == 11 && !head_request_ && this->fits_wire(body_size);
  }

  // Writes a response that wire_applies to, with a `status` that has a body; a head that cannot
  // be sent fails the send.
  void write_unary_wire(const OutHeaders& headers, unsigned status, std::string_view body) {
    const Error invalid = detail::guarded([&] {
      this->wire_.clear();
      write_response_head(headers, status, keep_alive_, body.size(), this->wire_);
    });
    if (!invalid.ok()) return refuse_send(invalid);
    this->wire_.append(body);
    --unanswered_;
    auto then = response_written(keep_alive_);
    this->write_wire(then);
  }

  // send_c's unary answer: a small response, written from the C view (see SessionCore::send_c).
  bool send_view(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    if (streaming_ || !wire_applies(message.body.size)) return false;
    const OutHeaders headers(message.header);
    unsigned status = 0;
    if (!detail::guarded([&] { status = response_status(headers); }).ok()) return false;
    if (status == 204 || status == 304) return false;
    if (!this->arm_send_c(done, ctx)) return true;
    const Error failed = detail::guarded([&] {
      if (!refused_send()) write_unary_wire(headers, status, to_view(message.body));
    });
    if (!failed.ok()) completions_.send(failed);
    return true;
  }

  void refuse_send(const Error& invalid) {
    completions_.send(Error(invalid.code(), "send: " + invalid.detail(), kModule));
  }

  // After a response is written: the send completes (and the connection ends, for close).
  auto response_written(bool keep_alive) {
    return [self = this->shared_from_this(), this, keep_alive](beast::error_code ec) {
      if (ec) {
        const Error error = this->failure(ec, "writing a response", rt_.settings.write_timeout);
        this->hard_close(error);
        return completions_.send(error);
      }
      if (!keep_alive) conn_->shutdown_send();  // Connection: close; recv then sees the end
      completions_.send({});
    };
  }

  void send_stream_head(Message message) {
    auto head = std::make_shared<http::response<http::empty_body>>();
    const Error invalid = detail::guarded([&] { fill_response_head(message, head->base()); });
    if (!invalid.ok())
      return completions_.send(Error(invalid.code(), "send: " + invalid.detail(), kModule));
    head->version(version_);
    head->keep_alive(keep_alive_);
    head->chunked(true);
    reply_ = Reply::head_sent;
    --unanswered_;
    this->open_frames_out();
    const bool has_frame = !message.body.empty();
    this->write_stream_head(std::move(head), [self = this->shared_from_this(), this,
                                              has_frame](beast::error_code ec) {
      if (ec) {
        const Error error = this->failure(ec, "writing a stream head", rt_.settings.write_timeout);
        this->hard_close(error);
        return completions_.send(error);
      }
      if (!has_frame) completions_.send({});
    });
    if (has_frame) this->send_frame(message);
  }

  void on_close_send() override {
    auto done = [self = this->shared_from_this(), this](beast::error_code ec) {
      completions_.close_send(ec ? this->failure(ec, "ending a stream", rt_.settings.write_timeout)
                                 : Error{});
    };
    if (closed_) return completions_.close_send(close_reason_);
    if (streaming_ && reply_ != Reply::ended) {
      this->end_frames_out();
      if (reply_ == Reply::none && unanswered_ > 0) {  // no head yet: an empty 200 stream
        auto head = std::make_shared<http::response<http::empty_body>>(http::status::ok, version_);
        head->keep_alive(keep_alive_);
        head->chunked(true);
        --unanswered_;
        this->write_stream_head(std::move(head), [](beast::error_code) {});
      }
      reply_ = Reply::ended;
      return this->write_last_chunk(done);
    }
    // A unary connection: no more responses; the client sees the connection end after them.
    send_closed_ = true;
    this->queue_write(
        [this](typename Core::WriteHandler handler) {
          conn_->shutdown_send();
          net::post(this->strand_, [handler] { handler({}, 0); });
        },
        done);
  }

  void pump_stream() override {
    if (reading_ != Reading::stream_body || !frames_) return;
    this->pump(*reader_, *frames_, [this] { reading_ = Reading::between_requests; });
  }

  void on_released() override {
    if (rejecting_ && !closed_) return;  // the linger closes it
    this->close_after_writes(this->closed_locally());
  }

  const std::string remote_;
  std::string local_;
  std::unique_ptr<MessageReader<true>> reader_;
  ReaderSpare<true> readers_;
  std::optional<FrameDecoder> frames_;
  std::string body_;
  Reading reading_ = Reading::between_requests;
  Reply reply_ = Reply::none;
  bool streaming_ = false;     // the current exchange is a stream
  int unanswered_ = 0;         // requests received whose response has not started
  bool keep_alive_ = true;     // of the latest request
  bool head_request_ = false;  // the latest request is a HEAD
  unsigned version_ = 11;
  bool send_closed_ = false;
  bool rejecting_ = false;
};

}  // namespace

template <class Stream>
std::shared_ptr<SessionBase> make_server_session(Runtime& runtime, Stream stream,
                                                 std::string_view already_read) {
  beast::error_code ec;
  auto& socket = beast::get_lowest_layer(stream).socket();
  socket.set_option(tcp::no_delay(true), ec);
  const auto remote = socket.remote_endpoint(ec);
  auto session = std::make_shared<ServerSession<Stream>>(
      runtime, std::move(stream), ec ? std::string("an unknown peer") : to_string(remote));
  if (!already_read.empty()) session->take_already_read(already_read);
  runtime.sessions.add(session);
  return session;
}

template std::shared_ptr<SessionBase> make_server_session(Runtime&, TcpStream, std::string_view);
template std::shared_ptr<SessionBase> make_server_session(Runtime&, TlsStream, std::string_view);

}  // namespace micro::transport_http
