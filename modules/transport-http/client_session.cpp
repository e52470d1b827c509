#include "client_session.hpp"

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <optional>

#include "address.hpp"
#include "h2.hpp"
#include "session_core.hpp"
#include "socket.hpp"

namespace micro::transport_http {

namespace {

template <class Stream>
class ClientSession final : public SessionCore<Stream> {
  using Core = SessionCore<Stream>;
  using Core::close_reason_;
  using Core::closed_;
  using Core::completions_;
  using Core::conn_;
  using Core::peer_;
  using Core::rt_;
  using Core::strand_;
  using Done = std::function<void(const Error&)>;

 public:
  ClientSession(Runtime& rt, std::string address, HostPort target, const DialOptions& options,
                Strand strand)
      : Core(rt, strand, "connection to " + address),
        address_(std::move(address)),
        target_(std::move(target)),
        stream_mode_(options.stream),
        connect_timeout_(options.timeout_ms != 0 ? Millis(options.timeout_ms)
                                                 : rt.settings.connect_timeout),
        read_timeout_(options.timeout_ms != 0 ? Millis(options.timeout_ms)
                                              : rt.settings.read_timeout),
        resolver_(strand),
        resolve_timer_(strand) {}

  std::string local_address() const override { return local_; }
  std::string remote_address() const override { return address_; }

  // A pooled connection, known open: the socket is ready at once.
  void adopt(std::unique_ptr<typename Core::Conn> conn) {
    conn_ = std::move(conn);
    local_ = conn_->local_address();
  }

  // On the strand: connects, then hands the socket to `on_dialed`.
  void start(SocketImplCallback on_dialed) {
    connect_fresh([self = this->shared_from_this(), this, on_dialed](const Error& error) {
      if (!error.ok()) {
        this->hard_close(error);
        return on_dialed(error, nullptr);
      }
      // The connection becomes the address's HTTP/2 connection when ALPN settled h2 (TLS) or
      // h2c is on (plaintext).
      bool h2 = rt_.settings.h2c;
      if constexpr (kIsTls<Stream>) h2 = protocol_ == kH2;
      if (h2) {
        closed_ = true;
        close_reason_ = this->closed_locally();
        return on_dialed({}, h2_adopt_client(rt_, address_, std::move(conn_), stream_mode_,
                                             read_timeout_));
      }
      on_dialed({}, std::make_unique<HttpSocket>(self));
    });
  }

 private:
  static constexpr size_t kFirstRead = 16 * 1024;  // a response's first read

  bool steps_inline() const override { return !stream_mode_; }

  enum class Exchange { idle, sending, awaiting_response, receiving };
  enum class Request { none, head_sent, ended };

  // ---- connecting: resolve, then connect, within connect_timeout
  void connect_fresh(Done then) {
    if (closed_) return then(close_reason_);
    if (conn_) conn_->close();
    conn_ = std::make_unique<typename Core::Conn>(new_stream());
    const auto deadline = std::chrono::steady_clock::now() + connect_timeout_;
    resolving_ = true;
    resolve_timed_out_ = false;
    resolve_timer_.expires_at(deadline);
    resolve_timer_.async_wait([self = this->shared_from_this(), this](beast::error_code ec) {
      if (ec || !resolving_) return;
      resolve_timed_out_ = true;
      resolver_.cancel();
    });
    resolver_.async_resolve(
        target_.host, target_.port,
        [self = this->shared_from_this(), this, then, deadline](
            beast::error_code ec, tcp::resolver::results_type results) {
          resolving_ = false;
          resolve_timer_.cancel();
          if (resolve_timed_out_) return then(timed_out("resolving the host"));
          if (closed_) return then(close_reason_);
          if (ec)
            return then(Error(
                503, "cannot resolve '" + target_.host + "' for " + peer_ + ": " + ec.message(),
                kModule));
          conn_->tcp_layer().expires_at(deadline);
          conn_->tcp_layer().async_connect(
              results, [self, this, then](beast::error_code ec, const tcp::endpoint&) {
                if (ec == beast::error::timeout) return then(timed_out("connecting"));
                if (ec) return then(this->failure(ec, "connecting", connect_timeout_));
                beast::error_code ignored;
                conn_->socket().set_option(tcp::no_delay(true), ignored);
                local_ = conn_->local_address();
                if constexpr (kIsTls<Stream>) {
                  handshake(std::move(then));
                } else {
                  conn_dead_ = false;
                  then({});
                }
              });
        });
  }

  Stream new_stream() {
    if constexpr (kIsTls<Stream>)
      return Stream(strand_, *rt_.tls_client);
    else
      return Stream(strand_);
  }

  // TLS: verifies the server (within what is left of connect_timeout) and settles the protocol.
  // Only the dial's first connection offers h2: a socket that runs HTTP/1.1 stays on it.
  void handshake(Done then) {
    const Error prepared = prepare_client(conn_->stream, rt_.settings.tls, target_.host,
                                          offer_h2_ && rt_.settings.http2);
    offer_h2_ = false;
    if (!prepared.ok()) return then(Error(prepared.code(), prepared.detail(), kModule));
    conn_->stream.async_handshake(
        net::ssl::stream_base::client,
        [self = this->shared_from_this(), this, then](beast::error_code ec) {
          if (ec == beast::error::timeout) return then(timed_out("the TLS handshake"));
          if (closed_) return then(close_reason_);
          if (ec)
            return then(
                Error(503, handshake_failure(conn_->stream, ec, address_), kModule));
          protocol_ = negotiated_protocol(conn_->stream);
          conn_dead_ = false;
          then({});
        });
  }

  // A received head as a Message; over TLS it says which protocol carried it.
  Message received_head() const {
    Message head = reader_->head();
    if constexpr (kIsTls<Stream>) head.header["micro-transport-protocol"] = kHttp11;
    return head;
  }

  Error timed_out(const char* doing) const {
    return Error(408,
                 peer_ + " timed out after " + std::to_string(connect_timeout_.count()) +
                     " ms while " + doing,
                 kModule);
  }

  void on_closing() override {
    resolver_.cancel();
    resolve_timer_.cancel();
  }

  // ---- unary: send writes the request, recv reads its response
  void on_send(Message message) override {
    if (closed_) return completions_.send(close_reason_);
    if (stream_mode_) return stream_send(std::move(message));
    if (!unary_send_allowed()) return;
    // A small request is written from one buffer (wire_, kept for a retry); a larger one
    // through Beast, with its body not copied.
    request_.reset();
    const Error invalid = detail::guarded([&] {
      if (this->fits_wire(message.body.size())) return encode_wire(message, message.body);
      auto request = std::make_shared<http::request<http::string_body>>();
      fill_request_head(message, address_, request->base());
      request->body() = std::move(message.body);
      request->keep_alive(true);
      request->prepare_payload();
      request_ = std::move(request);
      head_request_ = request_->method() == http::verb::head;
    });
    if (!invalid.ok())
      return completions_.send(Error(invalid.code(), "send: " + invalid.detail(), kModule));
    start_exchange();
  }

  // send_c's unary send: a small request, written from the C view (see SessionCore::send_c).
  bool send_view(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    if (stream_mode_) return false;
    if (!this->arm_send_c(done, ctx)) return true;
    const Error failed = detail::guarded([&] {
      if (closed_) return completions_.send(close_reason_);
      if (!unary_send_allowed()) return;
      request_.reset();
      const Error invalid = detail::guarded(
          [&] { encode_wire(OutHeaders(message.header), to_view(message.body)); });
      if (!invalid.ok())
        return completions_.send(Error(invalid.code(), "send: " + invalid.detail(), kModule));
      start_exchange();
    });
    if (!failed.ok()) completions_.send(failed);
    return true;
  }

  // Refuses (completing the send) what the exchange's state does not allow.
  bool unary_send_allowed() {
    if (send_closed_) {
      completions_.send(Error::bad_request("send after close_send on " + peer_).with_id(kModule));
      return false;
    }
    if (exchange_ != Exchange::idle) {
      completions_.send(Error::conflict("send: the response to the previous request on " +
                                        peer_ + " has not been received")
                            .with_id(kModule));
      return false;
    }
    return true;
  }

  // A small request, head and body, into wire_.
  void encode_wire(const OutHeaders& headers, std::string_view body) {
    this->wire_.clear();
    write_request_head(headers, address_, body.size(), this->wire_);
    this->wire_.append(body);
    head_request_ = this->wire_.compare(0, 5, "HEAD ") == 0;
  }

  // The request is encoded: it goes out, on a fresh connection when there is none.
  void start_exchange() {
    retried_ = false;
    reusable_ = false;
    exchange_ = Exchange::sending;
    user_send_pending_ = true;
    if (!conn_ || conn_dead_) {
      may_retry_ = false;
      return connect_fresh([self = this->shared_from_this(), this](const Error& error) {
        if (!error.ok()) return fail_exchange(error);
        write_request();
      });
    }
    // A connection that has carried an exchange may have been closed by the server while idle:
    // a request it loses before any response byte is sent again, once, on a fresh connection.
    may_retry_ = conn_->exchanges > 0;
    write_request();
  }

  void write_request() {
    auto then = [self = this->shared_from_this(), this](beast::error_code ec) {
      if (ec) {
        if (may_retry_ && !retried_ && closed_by_peer(ec) && !closed_) return retry();
        return fail_exchange(this->failure(ec, "writing the request", rt_.settings.write_timeout));
      }
      exchange_ = Exchange::awaiting_response;
      if (user_send_pending_) {
        user_send_pending_ = false;
        completions_.send({});
      }
      if (recv_waiting_) {
        recv_waiting_ = false;
        start_response();
      }
    };
    if (!request_) return this->write_wire(then);
    this->queue_write(
        [this, request = request_](typename Core::WriteHandler handler) {
          http::async_write(conn_->stream, *request, std::move(handler));
        },
        std::move(then));
  }

  void retry() {
    retried_ = true;
    rt_.log.debug("retrying a request on a fresh connection: ", peer_, " was closed while idle");
    exchange_ = Exchange::sending;
    connect_fresh([self = this->shared_from_this(), this](const Error& error) {
      if (!error.ok()) return fail_exchange(error);
      write_request();
    });
  }

  void on_recv() override {
    if (stream_mode_ && this->frames_in_use()) return this->recv_from_inbox();
    if (closed_) return completions_.recv(close_reason_, std::nullopt);
    if (stream_mode_) return stream_recv();
    switch (exchange_) {
      case Exchange::sending:
        recv_waiting_ = true;
        return;
      case Exchange::awaiting_response:
        return start_response();
      case Exchange::receiving:
        return;
      case Exchange::idle:
        return completions_.recv(
            Error::bad_request("recv: no request is waiting for its response on " + peer_)
                .with_id(kModule),
            std::nullopt);
    }
  }

  void start_response() {
    exchange_ = Exchange::receiving;
    new_reader();
    read_response_head();
  }

  void new_reader() {
    reader_ = readers_.take(rt_.settings.limits);
    if (head_request_) reader_->parser().skip(true);
    body_.clear();
  }

  // The response: one read, then Beast's parser over what arrived; a response that came whole
  // (the usual case) is handled with no further asynchronous step.
  void read_response_head() {
    if (conn_->buffer.size() > 0) return parse_response_head();
    this->read_some(kFirstRead, read_timeout_, [this](const beast::error_code& ec) {
      if (ec) return response_head_failed(ec);
      parse_response_head();
    });
  }

  void parse_response_head() {
    this->read_message_head(
        *reader_, body_, read_timeout_, [this] { on_response_head(); },
        [this](const beast::error_code& ec) { response_head_failed(ec); });
  }

  void response_head_failed(const beast::error_code& ec) {
    if (may_retry_ && !retried_ && !reader_->parser().got_some() && closed_by_peer(ec) &&
        !closed_) {
      recv_waiting_ = true;  // read again once the request is written again
      return retry();
    }
    fail_exchange(response_error(ec, "waiting for the response"));
  }

  void on_response_head() {
    const unsigned status = reader_->parser().get().result_int();
    if (status >= 100 && status < 200 && status != 101) {  // interim (100 Continue): skip
      new_reader();
      return read_response_head();
    }
    read_body([self = this->shared_from_this(), this](const Error& error) {
      if (!error.ok()) return fail_exchange(error);
      finish_response();
    });
  }

  // Reads the rest of the response body into body_; then `then(error)`.
  template <class Then>
  void read_body(Then then) {
    this->read_body_into(
        *reader_, body_, read_timeout_, [then] { then({}); },
        [this, then](const beast::error_code& ec) {
          then(response_error(ec, "reading the response body"));
        });
  }

  Error response_error(const beast::error_code& ec, std::string_view doing) const {
    if (is_parse_error(ec)) {
      const Error parsed = parse_error(ec, "response from " + address_);
      return Error(parsed.code() == 400 ? 502 : parsed.code(), parsed.detail(), kModule);
    }
    return this->failure(ec, doing, read_timeout_);
  }

  // The response goes to the pending recv as a view of the parsed head and body, which are held
  // here until it returns (the callback may start the next exchange on this connection).
  void finish_response() {
    std::unique_ptr<MessageReader<false>> reader = std::move(reader_);
    std::string body = std::move(body_);
    body_.clear();
    exchange_ = Exchange::idle;
    ++conn_->exchanges;
    conn_dead_ = !reader->parser().get().keep_alive();
    reusable_ = !conn_dead_ && conn_->buffer.size() == 0 && !send_closed_;
    {
      ReceivedHead head(reader->parser().get(), &reader->arena());
      if constexpr (kIsTls<Stream>) head.set("micro-transport-protocol", kHttp11);
      completions_.recv(head.message(body));
    }
    this->recycle(readers_, std::move(reader), body_, std::move(body));
  }

  // The exchange failed: the connection is dropped (a later send connects afresh) and whoever
  // waits hears why.
  void fail_exchange(const Error& error) {
    exchange_ = Exchange::idle;
    conn_dead_ = true;
    if (conn_) conn_->close();
    if (user_send_pending_) {
      user_send_pending_ = false;
      completions_.send(error);
    }
    recv_waiting_ = false;
    completions_.recv(error, std::nullopt);
  }

  void on_close_send() override {
    if (closed_) return completions_.close_send(close_reason_);
    if (!stream_mode_) {  // a unary socket: no more requests (the connection may still be pooled)
      send_closed_ = true;
      return completions_.close_send({});
    }
    this->end_frames_out();
    if (request_state_ == Request::ended) return completions_.close_send({});
    if (request_state_ == Request::none) write_stream_request_head(Message{});
    request_state_ = Request::ended;
    this->write_last_chunk([self = this->shared_from_this(), this](beast::error_code ec) {
      if (ec) {
        const Error error = this->failure(ec, "ending the stream", rt_.settings.write_timeout);
        this->hard_close(error);
        return completions_.close_send(error);
      }
      completions_.close_send({});
    });
  }

  void on_released() override {
    const bool clean = !stream_mode_ && exchange_ == Exchange::idle && conn_ && !conn_dead_ &&
                       !closed_ && conn_->buffer.size() == 0 && rt_.settings.pool_size > 0;
    if (!clean) return this->close_after_writes(this->closed_locally());
    closed_ = true;
    rt_.template pool_for<Stream>().put(address_, std::move(conn_));
  }

  bool wait_on_release() const override { return reusable_.load(); }

  // ---- stream: the first send opens it, later sends are frames; recv gives the response head,
  // then frames, then the end
  void stream_send(Message message) {
    if (request_state_ == Request::ended)
      return completions_.send(
          Error::bad_request("send after close_send on " + peer_).with_id(kModule));
    if (request_state_ == Request::head_sent) return this->send_frame(message);
    const bool has_frame = !message.body.empty();
    const Error invalid = write_stream_request_head(
        message, [self = this->shared_from_this(), this, has_frame](beast::error_code ec) {
          if (ec) {
            const Error error =
                this->failure(ec, "writing the stream's request head", rt_.settings.write_timeout);
            this->hard_close(error);
            return completions_.send(error);
          }
          if (!has_frame) completions_.send({});
        });
    if (!invalid.ok()) return completions_.send(invalid);
    this->open_frames_out();
    if (has_frame) this->send_frame(message);
  }

  Error write_stream_request_head(
      const Message& message, typename Core::WriteThen then = [](beast::error_code) {}) {
    auto head = std::make_shared<http::request<http::empty_body>>();
    const Error invalid =
        detail::guarded([&] { fill_request_head(message, address_, head->base()); });
    if (!invalid.ok()) return Error(invalid.code(), "send: " + invalid.detail(), kModule);
    head->set("Micro-Stream", "1");
    head->keep_alive(true);
    head->chunked(true);
    request_state_ = Request::head_sent;
    this->write_stream_head(std::move(head), std::move(then));
    return {};
  }

  void stream_recv() {
    if (response_done_) return completions_.recv({}, std::nullopt);
    if (head_received_) return this->recv_from_inbox();  // (the inbox delivers the end)
    new_reader();
    conn_->tcp_layer().expires_after(read_timeout_);
    http::async_read_header(
        conn_->stream, conn_->buffer, reader_->parser(),
        [self = this->shared_from_this(), this](beast::error_code ec, size_t) {
          if (ec) return this->fail(response_error(ec, "waiting for the stream's response"));
          head_received_ = true;
          if (!reader_->parser().chunked()) {
            // Not a stream after all (an error answered at once): the whole reply, then the end.
            return read_body([self, this](const Error& error) {
              if (!error.ok()) return this->fail(error);
              response_done_ = true;
              Message reply = received_head();
              reply.body = std::move(body_);
              completions_.recv({}, std::move(reply));
            });
          }
          reader_->unlimited_body();
          frames_.emplace(rt_.settings.limits.max_body_bytes);
          Message head = received_head();
          this->open_frames_in();  // frames are read ahead from now on
          completions_.recv({}, std::move(head));
        });
  }

  void pump_stream() override {
    if (!head_received_ || !frames_ || response_done_) return;
    this->pump(*reader_, *frames_, [this] { response_done_ = true; });
  }

  const std::string address_;
  const HostPort target_;
  const bool stream_mode_;
  const Millis connect_timeout_;
  const Millis read_timeout_;
  tcp::resolver resolver_;
  net::steady_timer resolve_timer_;
  bool resolving_ = false;
  bool resolve_timed_out_ = false;
  std::string local_;
  std::string protocol_;   // TLS: what ALPN settled
  bool offer_h2_ = true;   // TLS: the next handshake offers h2 (the dial's first only)

  std::unique_ptr<MessageReader<false>> reader_;
  ReaderSpare<false> readers_;
  std::string body_;

  // unary
  std::shared_ptr<http::request<http::string_body>> request_;  // kept for a retry (else wire_)
  Exchange exchange_ = Exchange::idle;
  bool head_request_ = false;
  bool may_retry_ = false;
  bool retried_ = false;
  bool user_send_pending_ = false;  // the write under way completes a user's send
  bool recv_waiting_ = false;       // a recv came before the request was written
  bool conn_dead_ = false;          // the connection cannot carry another request
  bool send_closed_ = false;
  std::atomic<bool> reusable_{false};  // read by release() on the destroying thread

  // stream
  Request request_state_ = Request::none;
  bool head_received_ = false;
  bool response_done_ = false;
  std::optional<FrameDecoder> frames_;
};

template <class Stream>
void dial_with(Runtime& runtime, const std::string& address, const HostPort& target,
               const DialOptions& options, SocketImplCallback on_dialed) {
  using Session = ClientSession<Stream>;
  if (!options.stream) {
    if (auto conn = runtime.pool_for<Stream>().take(address)) {
      auto session =
          std::make_shared<Session>(runtime, address, target, options, conn->stream.get_executor());
      session->adopt(std::move(conn));
      runtime.sessions.add(session);
      return on_dialed({}, std::make_unique<HttpSocket>(session));
    }
  }
  auto session =
      std::make_shared<Session>(runtime, address, target, options, net::make_strand(runtime.next_context()));
  runtime.sessions.add(session);
  net::post(session->strand(), [session, on_dialed = std::move(on_dialed)]() mutable {
    session->start(std::move(on_dialed));
  });
}

// A dial that HTTP/2 may carry: a live HTTP/2 connection to the address carries the socket,
// else a new connection (which becomes that HTTP/2 connection when it speaks HTTP/2).
template <class Stream>
void dial_h2(Runtime& runtime, const std::string& address, const HostPort& target,
             const DialOptions& options, SocketImplCallback on_dialed) {
  if (auto socket = h2_dial_pooled(runtime, address, options))
    return on_dialed({}, std::move(socket));
  // While a first connection is being set up, later dials wait for it: once it settles they use
  // it when it speaks HTTP/2, else each dials for itself.
  Runtime* rt = &runtime;
  auto retry = [rt, address, target, options, on_dialed]() {
    if (rt->h2_pool->closed())
      return on_dialed(Error(499, "dial " + address + ": the transport is shutting down", kModule),
                       nullptr);
    if (auto socket = h2_dial_pooled(*rt, address, options)) return on_dialed({}, std::move(socket));
    dial_with<Stream>(*rt, address, target, options, on_dialed);
  };
  const int attempts = runtime.settings.http2_connections;
  if (runtime.h2_pool->wait_for_connection(address, retry, attempts)) return;
  // This dial's connection and the others (http2_connections in all) are set up at once; the
  // dials waiting meanwhile spread over them once all have settled.
  auto settled = [rt, address] {
    for (auto& waiter : rt->h2_pool->connection_settled(address)) waiter();
  };
  for (int i = 1; i < attempts; ++i)
    dial_with<Stream>(runtime, address, target, DialOptions{options.timeout_ms, false},
                      [settled](const Error&, std::unique_ptr<SocketImpl>) { settled(); });
  dial_with<Stream>(runtime, address, target, options,
                    [settled, on_dialed = std::move(on_dialed)](
                        const Error& error, std::unique_ptr<SocketImpl> socket) {
                      on_dialed(error, std::move(socket));
                      settled();
                    });
}

}  // namespace

void dial_http(Runtime& runtime, const std::string& address, const DialOptions& options,
               SocketImplCallback on_dialed) {
  HostPort target;
  if (!split_host_port(address, target) || target.host.empty())
    return on_dialed(
        Error::bad_request("dial: '" + address + "' is not host:port").with_id(kModule), nullptr);
  if (!runtime.tls_client) {
    if (runtime.settings.h2c)
      return dial_h2<TcpStream>(runtime, address, target, options, std::move(on_dialed));
    return dial_with<TcpStream>(runtime, address, target, options, std::move(on_dialed));
  }
  if (!runtime.settings.http2)
    return dial_with<TlsStream>(runtime, address, target, options, std::move(on_dialed));
  dial_h2<TlsStream>(runtime, address, target, options, std::move(on_dialed));
}

}  // namespace micro::transport_http
