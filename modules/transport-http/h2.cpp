// HTTP/2 on libnghttp2: nghttp2 does the framing, HPACK, flow control and stream states; this
// file moves bytes between it and the TLS or TCP stream (one read loop, one write at a time, on the
// connection's strand) and maps its streams onto sockets, as docs/rpc-wire.md says.
#include "h2.hpp"

#include <nghttp2/nghttp2.h>

#include <atomic>
#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <map>
#include <deque>
#include <mutex>
#include <optional>

#include "completions.hpp"
#include "errors.hpp"
#include "frame.hpp"
#include "h2_head.hpp"
#include "h2_memory.hpp"
#include "socket.hpp"
#include "wire.hpp"

namespace micro::transport_http {

namespace {
class H2Connection;
}  // namespace

// ---- the client's pool of HTTP/2 connections

class H2ClientPool::Impl {
 public:
  explicit Impl(int per_address) : per_address_(static_cast<size_t>(per_address)) {}
  // The usable connection to `address` with the fewest sockets on it, or null.
  std::shared_ptr<H2Connection> find(const std::string& address);
  // Pools `conn` unless the address has per_address usable connections already.
  void put(const std::string& address, const std::shared_ptr<H2Connection>& conn);
  void remove(const std::string& address, const H2Connection* conn) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(address);
    if (it == live_.end()) return;
    auto& conns = it->second;
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [conn](const std::weak_ptr<H2Connection>& weak) {
                                 auto live = weak.lock();
                                 return !live || live.get() == conn;
                               }),
                conns.end());
    if (conns.empty()) live_.erase(it);
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    live_.clear();
  }

  bool closed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_;
  }

  // Runs `waiter` at once when a usable connection is there; else keeps it while the first
  // connections (`attempts` of them) are set up (true), or records that the caller's dial starts
  // them (false).
  bool wait_for_connection(const std::string& address, H2ClientPool::Waiter& waiter, int attempts);
  std::vector<H2ClientPool::Waiter> connection_settled(const std::string& address) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = connecting_.find(address);
    if (it == connecting_.end() || --it->second.unsettled > 0) return {};
    auto waiters = std::move(it->second.waiters);
    connecting_.erase(it);
    return waiters;
  }

 private:
  struct Connecting {
    int unsettled = 0;  // attempts under way
    std::vector<H2ClientPool::Waiter> waiters;
  };
  std::shared_ptr<H2Connection> find_locked(const std::string& address);

  const size_t per_address_;
  size_t turn_ = 0;  // where find's next look starts (ties among connections go round)
  std::map<std::string, Connecting> connecting_;
  std::mutex mutex_;
  std::map<std::string, std::vector<std::weak_ptr<H2Connection>>> live_;
  bool closed_ = false;
};

namespace {

// Generous windows, so a stream is not held back by flow control on a fast link.
constexpr int32_t kStreamWindow = 4 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;
constexpr uint32_t kMaxConcurrentStreams = 1024;
constexpr size_t kOutboxLimit = 256 * 1024;  // a stream send completes at once below this
constexpr size_t kWriteBatch = 64 * 1024;    // nghttp2 output gathered into one write

enum class Role { client, server };

// Runs `f` on the connection under an HTTP/2 session, whichever stream type it has.
template <class F>
decltype(auto) visit_wire(H2Wire& wire, F&& f) {
  return std::visit([&](auto& conn) -> decltype(auto) { return f(*conn); }, wire);
}

class H2Socket;

// One connection (TLS, or plaintext with h2c) speaking HTTP/2, and its nghttp2 session. Everything but abort() and
// usable() runs on the connection's strand. Kept alive by its read loop until it closes.
class H2Connection final : public Abortable, public std::enable_shared_from_this<H2Connection> {
 public:
  H2Connection(Runtime& rt, H2Wire conn, Role role, std::string address, DeliverSocket deliver)
      : rt(rt),
        role(role),
        address(std::move(address)),
        protocol(std::holds_alternative<std::unique_ptr<Connection<TlsStream>>>(conn) ? kH2 : kH2c),
        scheme(protocol == kH2 ? "https" : "http"),
        conn_(std::move(conn)),
        local(visit_wire(conn_, [](auto& c) { return c.local_address(); })),
        remote(visit_wire(conn_, [](auto& c) { return c.remote_address(); })),
        peer((role == Role::client ? "connection to " : "connection from ") +
             (role == Role::client ? this->address : remote)),
        strand(visit_wire(conn_, [](auto& c) { return c.stream.get_executor(); })),
        deliver_(std::move(deliver)),
        idle_timer_(strand) {}

  ~H2Connection() override {
    rt.sessions.remove(this);
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  // Sends SETTINGS and, when `reading`, starts the read loop.
  void start(bool reading = true);
  // Bytes read from the peer, for nghttp2; then flushes what it has to say.
  void receive(const uint8_t* data, size_t size);
  void abort() override {
    net::post(strand, [self = shared_from_this()] {
      self->fail(Error(499, self->peer + " closed: the transport is shutting down", kModule));
    });
  }
  // Any thread: whether a new dial may use it.
  bool usable() const noexcept { return usable_.load(); }
  // Any thread: client sockets on it (a dial picks the connection with the fewest).
  int users() const noexcept { return users_.load(std::memory_order_relaxed); }
  void add_user(int n) noexcept { users_.fetch_add(n, std::memory_order_relaxed); }

  // On the strand.
  nghttp2_session* session() const noexcept { return session_; }
  bool closed() const noexcept { return closed_; }
  const Error& close_reason() const noexcept { return close_reason_; }
  void attach(int32_t id, std::shared_ptr<H2Socket> socket) {
    streams_[id] = std::move(socket);
    idle_timer_.cancel();
  }
  void deliver(std::unique_ptr<SocketImpl> socket) { deliver_(std::move(socket)); }
  // Writes what nghttp2 has to say, on the strand's next turn.
  void flush();
  void fail(const Error& error);

  Runtime& rt;
  const Role role;
  const std::string address;  // client: the dialed address
  const char* const protocol;  // "h2" (TLS) or "h2c" (plaintext), as micro-transport-protocol says
  const char* const scheme;    // of the requests it sends: "https" or "http"

 private:
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t flags,
                       void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                           size_t len, void* self);
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* self);

  H2Socket* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void read();
  bool tls_input_buffered();
  void write_out();
  void arm_idle();
  void stop_pooling();
  template <class F>
  decltype(auto) on_wire(F&& f) {
    return visit_wire(conn_, std::forward<F>(f));
  }

  H2Wire conn_;

 public:
  const std::string local;
  const std::string remote;
  const std::string peer;  // for errors: "connection to X" / "connection from X"
  const Strand strand;

 private:
  DeliverSocket deliver_;
  net::steady_timer idle_timer_;
  H2Memory memory_;  // nghttp2's, for session_ (which it outlives)
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::shared_ptr<H2Socket>> streams_;  // streams open on the wire
  std::array<uint8_t, 64 * 1024> read_buffer_{};
  std::string write_buffer_;
  bool writing_ = false;
  bool flush_posted_ = false;
  bool received_any_ = false;
  bool draining_ = false;        // TLS input is buffered beyond the record being handled
  bool flush_deferred_ = false;  // a flush waits for it
  bool in_nghttp2_ = false;  // inside nghttp2_session_mem_recv/mem_send (and so its callbacks)
  bool closed_ = false;
  Error close_reason_;
  std::atomic<bool> usable_{true};
  std::atomic<int> users_{0};
};

// A socket over HTTP/2. Server: one request stream. Client: each unary exchange on a stream of
// its own, or (dialed with stream = true) one bidi stream. Facade calls post to the connection's
// strand; the rest runs there.
class H2Socket final : public SessionBase,
                       public CFastPath,
                       public std::enable_shared_from_this<H2Socket> {
 public:
  H2Socket(std::shared_ptr<H2Connection> conn, Role role, bool stream_mode, Millis read_timeout)
      : conn_(std::move(conn)),
        role_(role),
        stream_mode_(stream_mode),
        read_timeout_(read_timeout),
        timer_(conn_->strand) {}
  ~H2Socket() override { conn_->rt.sessions.remove(this); }

  // ---- the facade (any thread)
  // Once a stream is open (its first frame queued, nothing failed), a frame's send completes
  // here, on the caller's thread, while the frames not yet taken by nghttp2 stay under
  // kOutboxLimit; the strand appends it to the outbox in the order sent (posts to one strand keep
  // their order). A failure later fails the stream, and the next operation reports it, as on
  // HTTP/1.1. Otherwise (the head, errors, back-pressure, closing) the send goes to the strand
  // and completes from there. The peer's receive window (opened as its reader takes frames)
  // bounds what nghttp2 takes from the outbox.
  void send(Message message, Done done) override {
    if (find_header(message, "micro-error") == nullptr && send_behind(message.body)) {
      ++inline_depth();
      done({});
      --inline_depth();
      return;
    }
    if (refused(completions_.arm_send(done), "send", done)) return;
    net::post(conn_->strand, [self = shared_from_this(), m = std::move(message)]() mutable {
      self->on_send(std::move(m));
    });
  }
  // A frame read ahead (see fill_inbox) is taken here, on the caller's thread; its bytes go back
  // to the receive windows from the strand, in batches. Nested inline completions stop at a
  // small depth (then the strand delivers), so a callback that receives again cannot grow the
  // stack without bound.
  // The same two fast paths for a C call (HttpSocket's send_c/recv_c): no Message copy, nothing
  // boxed; false (having done nothing) sends the call the ordinary way.
  bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    return send_frame_c(message, done, ctx) || send_unary_c(message, done, ctx);
  }
  bool send_frame_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    for (size_t i = 0; i < message.header.count && message.header.items != nullptr; ++i)
      if (to_view(message.header.items[i].key) == "micro-error") return false;
    if (!send_behind(to_view(message.body))) return false;
    ++inline_depth();
    done(ctx, nullptr);
    --inline_depth();
    return true;
  }
  // A C caller's unary send on the connection's strand (from one of its completions: the next
  // call on a pooled socket, a handler's answer): its headers go to nghttp2 from the C list as it
  // is (keys in ascending order, as a Message's map would list them), with no Message built.
  bool send_unary_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    const bool unary = role_ == Role::client ? !stream_mode_ : !stream_in_;
    if (!unary || !conn_->strand.running_in_this_thread() || inline_depth() >= kMaxInlineDepth ||
        !OutHeaders::ascending(message.header))
      return false;
    if (completions_.arm_send(done, ctx) != Completions::Arm::ok) return false;  // say why there
    ++inline_depth();
    const Error thrown = detail::guarded([&] {
      send_unary(OutHeaders(message.header), to_view(message.body), nullptr);
    });
    if (!thrown.ok()) completions_.send(thrown);
    --inline_depth();
    return true;
  }
  bool recv_c(micro_message_fn on_message, void* ctx) noexcept override {
    return recv_frame_c(on_message, ctx) || recv_armed_c(on_message, ctx);
  }
  bool recv_frame_c(micro_message_fn on_message, void* ctx) noexcept {
    if (!inbox_on_.load(std::memory_order_acquire) || inline_depth() >= kMaxInlineDepth ||
        completions_.closed())
      return false;
    std::optional<Frame> frame = take_for_caller(/*messages_only=*/true);
    if (!frame) return false;
    ++inline_depth();
    const micro_message_t view{sizeof(micro_message_t), {nullptr, 0}, to_c_bytes(frame->payload)};
    on_message(ctx, nullptr, &view);
    --inline_depth();
    return true;
  }
  // Any other C recv waits with its own completion (no boxed callback), as on HTTP/1.1.
  bool recv_armed_c(micro_message_fn on_message, void* ctx) noexcept {
    const auto armed = completions_.arm_recv(on_message, ctx);
    if (armed != Completions::Arm::ok) {
      detail::call_message_fn(on_message, ctx, arm_error(armed, "recv"), nullptr);
      return true;
    }
    const Error failed = detail::guarded([&] { post_recv(); });
    if (!failed.ok()) completions_.recv(failed, std::nullopt);
    return true;
  }

  void recv(MessageCallback on_message) override {
    if (inbox_on_.load(std::memory_order_acquire) && inline_depth() < kMaxInlineDepth &&
        !completions_.closed()) {
      if (std::optional<Frame> frame = take_for_caller(/*messages_only=*/false)) {
        ++inline_depth();
        if (frame->kind == FrameKind::error)
          on_message(parse_error_json(frame->payload, 500), std::nullopt);
        else
          on_message({}, Message{{}, std::move(frame->payload)});
        --inline_depth();
        return;
      }
    }
    const auto armed = completions_.arm_recv(on_message);
    if (armed != Completions::Arm::ok) return on_message(arm_error(armed, "recv"), std::nullopt);
    post_recv();
  }
  void post_recv() {
    net::post(conn_->strand, [self = shared_from_this()] {
      self->recv_wanted_ = true;
      self->pump();
    });
  }
  void close_send(Done done) override {
    frames_behind_ = false;  // what was sent before is appended first (one strand, in order)
    if (refused(completions_.arm_close_send(done), "close_send", done)) return;
    net::post(conn_->strand, [self = shared_from_this()] { self->on_close_send(); });
  }
  void close() override {
    frames_behind_ = false;
    inbox_on_ = false;
    completions_.cancel_all(closed_locally());
    net::post(conn_->strand, [self = shared_from_this()] { self->cancel(self->closed_locally()); });
  }
  void release() override {
    if (role_ == Role::client) conn_->add_user(-1);  // the user is done with it: at once
    frames_behind_ = false;
    inbox_on_ = false;
    completions_.shut_down_with(
        [this] { return Error(499, where() + " closed: the socket was destroyed", kModule); });
    net::post(conn_->strand, [self = shared_from_this()] { self->on_released(); });
  }
  void abort() override {
    net::post(conn_->strand, [self = shared_from_this()] {
      self->cancel(Error(499, self->where() + " closed: the transport is shutting down", kModule));
    });
  }
  std::string local_address() const override { return conn_->local; }
  std::string remote_address() const override {
    return role_ == Role::client ? conn_->address : conn_->remote;
  }

  // ---- from the connection, on the strand; `id` says which stream the event is about
  void begin_server_stream(int32_t id) { stream_id_ = id; }
  void on_header(int32_t id, std::string_view name, std::string_view value) {
    if (id != stream_id_) return;
    header_bytes_ += name.size() + value.size() + 32;  // HTTP/2's accounting of a header list
    if (header_bytes_ > conn_->rt.settings.limits.max_header_bytes) {
      head_too_big_ = true;
      return;
    }
    if (!name.empty() && name[0] == ':') {
      if (name == ":authority") return head_.add("host", value);
      if (name != ":method" && name != ":path" && name != ":status") return;
    }
    head_.add(name, value);
  }
  void on_headers_done(int32_t id) {
    if (id != stream_id_ || head_done_) return;  // trailers: nothing in them for us
    if (role_ == Role::client) {
      const auto status = head_.find(":status");
      if (status && !status->empty() && status->front() == '1') {
        head_.clear();  // an interim response (100 Continue): the real one follows
        header_bytes_ = 0;
        return;
      }
    }
    head_done_ = true;
    if (head_too_big_) {
      const Error error =
          http_error(431, "the head from " + conn_->peer + " exceeds max_header_bytes");
      if (role_ == Role::server) return reject(error);
      error_ = error;
      cancel_stream();
      return pump();
    }
    head_.set("micro-transport-protocol", conn_->protocol);
    stream_in_ = head_.find("micro-stream") == std::optional<std::string_view>("1");
    if (stream_in_) frames_.emplace(conn_->rt.settings.limits.max_body_bytes);
    if (role_ == Role::server) {
      conn_->rt.sessions.add(shared_from_this());
      conn_->deliver(std::make_unique<HttpSocket>(shared_from_this()));
      return;
    }
    pump();
  }
  // Returns true when the bytes are kept for the stream's reader (consumed as it takes them).
  bool on_data(int32_t id, const uint8_t* data, size_t size) {
    if (id != stream_id_ || discard_in_) return false;
    if (stream_in_) {
      frames_->bytes().append(reinterpret_cast<const char*>(data), size);
      unconsumed_ += size;
      fill_inbox();
      pump();
      return true;
    }
    if (body_.size() + size > conn_->rt.settings.limits.max_body_bytes) {
      discard_in_ = true;
      const Error error = http_error(
          413, "the body from " + conn_->peer + " exceeds max_body_bytes (" +
                   std::to_string(conn_->rt.settings.limits.max_body_bytes) + ")");
      if (role_ == Role::server && head_delivered_ == false) {
        reject(error);
        return false;
      }
      error_ = error;
      cancel_stream();
      pump();
      return false;
    }
    body_.append(reinterpret_cast<const char*>(data), size);
    pump();
    return false;
  }
  void on_end_stream(int32_t id) {
    if (id != stream_id_) return;
    in_ended_ = true;
    pump();
  }
  void on_stream_closed(int32_t id, uint32_t code) {
    if (id != stream_id_) return;
    stream_closed_ = true;
    frames_behind_ = false;
    if (!in_ended_ && !error_) {
      error_ = code == NGHTTP2_CANCEL
                   ? Error(499, "the stream on " + conn_->peer + " was cancelled by the peer",
                           kModule)
                   : Error(503,
                           "the stream on " + conn_->peer + " was reset by the peer (" +
                               nghttp2_http2_strerror(code) + ")",
                           kModule);
    }
    if (send_parked_) {
      send_parked_ = false;
      completions_.send(error_ ? *error_ : Error{});
    }
    if (error_) release_unconsumed();  // failed: what is left is never read
    pump();
  }
  void on_connection_failed(const Error& error) {
    stream_closed_ = true;
    frames_behind_ = false;
    if (!error_) error_ = error;
    if (send_parked_) {
      send_parked_ = false;
      completions_.send(*error_);
    }
    pump();
  }

  // nghttp2 asks for the next DATA bytes of this socket's stream.
  ssize_t read_out(uint8_t* buf, size_t length, uint32_t* flags) {
    const size_t n = std::min(length, out_.size() - out_pos_);
    if (n > 0) std::memcpy(buf, out_.data() + out_pos_, n);
    out_pos_ += n;
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
    } else if (out_pos_ > kOutboxLimit && out_pos_ * 2 > out_.size()) {
      out_.erase(0, out_pos_);
      out_pos_ = 0;
    }
    out_pending_ = pending_out();
    if (send_parked_ && pending_out() < kOutboxLimit) {
      send_parked_ = false;
      completions_.send({});
    }
    if (pending_out() == 0 && out_eof_) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      out_done_ = true;
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

 private:
  static ssize_t read_callback(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                               uint32_t* flags, nghttp2_data_source* source, void*) {
    return static_cast<H2Socket*>(source->ptr)->read_out(buf, length, flags);
  }

  std::string where() const { return "HTTP/2 stream on " + conn_->peer; }
  Error closed_locally() const {
    return Error(499, "the socket for " + conn_->peer + " was closed", kModule);
  }
  Error arm_error(Completions::Arm armed, const char* op) const {
    if (armed == Completions::Arm::closed) return closed_locally();
    return Error::conflict(std::string("a ") + op + " is already pending on the socket for " +
                           conn_->peer)
        .with_id(kModule);
  }
  bool refused(Completions::Arm armed, const char* op, Done& done) const {
    if (armed == Completions::Arm::ok) return false;
    done(arm_error(armed, op));
    return true;
  }

  size_t pending_out() const noexcept { return out_.size() - out_pos_; }

  // Why a send cannot go out now; ok when it can.
  Error send_refusal() const {
    if (conn_->closed()) return conn_->close_reason();
    if (error_ && stream_id_ != 0) return *error_;
    if (send_closed_)
      return Error::bad_request("send after close_send on " + conn_->peer).with_id(kModule);
    return {};
  }

  // ---- sending
  void on_send(Message message) {
    const bool unary = role_ == Role::client ? !stream_mode_ : !stream_in_;
    if (unary) return send_unary(message, message.body, &message.body);
    if (const Error refusal = send_refusal(); !refusal.ok()) return completions_.send(refusal);
    if (role_ == Role::client) return client_send(std::move(message));
    server_send(std::move(message));
  }

  // A unary request or answer, from a Message (`movable` its body, taken) or a C list (`body`
  // copied); completes the armed send. On the strand.
  void send_unary(const OutHeaders& message, std::string_view body, std::string* movable) {
    if (const Error refusal = send_refusal(); !refusal.ok()) return completions_.send(refusal);
    const Error failed = role_ == Role::client ? start_request(message, body, movable)
                                               : answer(message, body, movable);
    if (!failed.ok()) return completions_.send(failed);
    conn_->flush();
    completions_.send({});
  }

  void client_send(Message message) {
    if (stream_id_ != 0) return queue_frame(message);
    if (const Error failed = start_request(message, {}, nullptr); !failed.ok())
      return completions_.send(failed);
    if (!message.body.empty()) return queue_frame(message);
    conn_->flush();
    completions_.send({});
  }

  // Opens the request's stream: a unary request with `body` (`movable`, when set, is taken
  // instead of copied), or a bidi stream whose frames follow. The error to complete the send with.
  Error start_request(const OutHeaders& message, std::string_view body, std::string* movable) {
    if (!stream_mode_ && exchange_active_)
      return Error::conflict("send: the response to the previous request on " + conn_->peer +
                             " has not been received")
          .with_id(kModule);
    HeaderList headers;
    std::string method, path;
    const Error invalid = detail::guarded([&] {
      request_line(message, method, path);
      h2_fields(message, headers);
      headers.add_front({{":method", method},
                         {":scheme", conn_->scheme},
                         {":authority", conn_->address},
                         {":path", path}});
    });
    if (!invalid.ok()) return Error(invalid.code(), "send: " + invalid.detail(), kModule);
    reset_exchange();
    const bool has_body = stream_mode_ || !body.empty();
    if (stream_mode_) {
      mark_stream(headers);
    } else {
      headers.add("content-length", headers.number(body.size()));
      take_body(body, movable);
      out_eof_ = true;
    }
    out_done_ = !has_body;
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = read_callback;
    const int32_t id = with_nv(headers, [&](const nghttp2_nv* nv, size_t count) {
      return nghttp2_submit_request(conn_->session(), nullptr, nv, count,
                                    has_body ? &provider : nullptr, nullptr);
    });
    if (id < 0)
      return Error(503,
                   "cannot start an HTTP/2 stream on " + conn_->peer + ": " + nghttp2_strerror(id),
                   kModule);
    stream_id_ = id;
    exchange_active_ = true;
    conn_->attach(id, shared_from_this());
    return {};
  }

  // A stream's answer: its head, then frames.
  void server_send(Message message) {
    if (response_started_) return queue_frame(message);
    if (!head_delivered_)
      return completions_.send(
          Error::bad_request("send: no request to answer on " + where()).with_id(kModule));
    HeaderList headers;
    const Error invalid = detail::guarded([&] { response_fields(message, headers); });
    if (!invalid.ok())
      return completions_.send(Error(invalid.code(), "send: " + invalid.detail(), kModule));
    mark_stream(headers);
    submit_response(headers, true);
    if (!message.body.empty()) return queue_frame(message);
    conn_->flush();
    completions_.send({});
  }

  // The answer to a unary request (`movable` as for start_request).
  Error answer(const OutHeaders& message, std::string_view body, std::string* movable) {
    if (response_started_ || !head_delivered_)
      return Error::bad_request("send: no request to answer on " + where()).with_id(kModule);
    HeaderList headers;
    unsigned status = 200;
    const Error invalid = detail::guarded([&] { status = response_fields(message, headers); });
    if (!invalid.ok()) return Error(invalid.code(), "send: " + invalid.detail(), kModule);
    const bool has_body = status != 204 && status != 304;
    if (has_body) headers.add("content-length", headers.number(body.size()));
    if (has_body && head_.find(":method") != std::optional<std::string_view>("HEAD"))
      take_body(body, movable);
    out_eof_ = true;
    submit_response(headers, has_body && !out_.empty());
    return {};
  }

  // ":status" first, then the other headers (throws as h2_fields does); the status.
  static unsigned response_fields(const OutHeaders& message, HeaderList& headers) {
    const unsigned status = response_status(message);
    h2_fields(message, headers);
    headers.add_front({{":status", headers.number(status)}});
    return status;
  }

  void take_body(std::string_view body, std::string* movable) {
    if (movable != nullptr)
      out_ = std::move(*movable);
    else
      out_.assign(body.data(), body.size());
  }

  void submit_response(const HeaderList& headers, bool with_data) {
    response_started_ = true;
    out_done_ = !with_data;
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = read_callback;
    const int rv = with_nv(headers, [&](const nghttp2_nv* nv, size_t count) {
      return nghttp2_submit_response(conn_->session(), stream_id_, nv, count,
                                     with_data ? &provider : nullptr);
    });
    if (rv != 0) conn_->rt.log.debug("HTTP/2 response on ", where(), ": ", nghttp2_strerror(rv));
  }

  // A stream frame joins the outbox (docs/rpc-wire.md: flags, length, payload), as on HTTP/1.1.
  void queue_frame(const Message& message) {
    const std::string* error = find_header(message, "micro-error");
    const FrameKind kind = error != nullptr ? FrameKind::error : FrameKind::message;
    const std::string& payload = error != nullptr ? *error : message.body;
    if (payload.size() > UINT32_MAX)
      return completions_.send(Error(413, "a stream frame cannot exceed 4 GiB", kModule));
    const auto header = frame_header(kind, static_cast<uint32_t>(payload.size()));
    out_.append(header.data(), header.size());
    out_.append(payload);
    out_pending_ = pending_out();
    if (!error_ && !stream_closed_ && !send_closed_) frames_behind_ = true;
    resume_out();
    if (pending_out() < kOutboxLimit) return completions_.send({});
    send_parked_ = true;
  }

  // A message frame's send on the caller's thread, once the stream is open: the frame joins the
  // frames behind (one buffer; the strand is posted to only when it was empty) and the send may
  // complete at once. False when it must go through the strand.
  bool send_behind(std::string_view body) {
    if (!frames_behind_.load(std::memory_order_acquire) || inline_depth() >= kMaxInlineDepth ||
        body.size() >= kOutboxLimit)
      return false;
    const size_t bytes = body.size() + kFrameHeaderBytes;
    if (behind_.fetch_add(bytes) + bytes + out_pending_.load() > kOutboxLimit) {
      behind_.fetch_sub(bytes);
      return false;
    }
    bool post = false;
    {
      std::lock_guard<std::mutex> lock(behind_mutex_);
      post = behind_frames_.empty();
      const auto header = frame_header(FrameKind::message, static_cast<uint32_t>(body.size()));
      behind_frames_.append(header.data(), header.size());
      behind_frames_.append(body);
    }
    // Posted after the append, so a later send or close_send posted by this thread runs after it.
    if (post) net::post(conn_->strand, [self = shared_from_this()] { self->queue_frames_behind(); });
    return true;
  }

  // The frames whose sends already completed on the caller's thread (see send_behind): appended
  // unless the stream has failed meanwhile (then the next operation reports why).
  void queue_frames_behind() {
    {
      std::lock_guard<std::mutex> lock(behind_mutex_);
      behind_taken_.swap(behind_frames_);
    }
    if (!error_ && !stream_closed_ && !send_closed_ && !released_) {
      out_.append(behind_taken_);
      out_pending_ = pending_out();
      resume_out();
    }
    behind_.fetch_sub(behind_taken_.size());
    behind_taken_.clear();
  }

  void resume_out() {
    if (deferred_ && stream_id_ != 0 && !stream_closed_) {
      deferred_ = false;
      nghttp2_session_resume_data(conn_->session(), stream_id_);
    }
    conn_->flush();
  }

  void on_close_send() {
    if (conn_->closed()) return completions_.close_send(conn_->close_reason());
    if (!stream_mode_ && role_ == Role::client) {  // a unary socket: no more requests
      send_closed_ = true;
      return completions_.close_send({});
    }
    if (send_closed_) return completions_.close_send({});
    send_closed_ = true;
    if (role_ == Role::server && stream_in_ && !response_started_ && head_delivered_) {
      out_eof_ = true;  // no head yet: an empty 200 stream
      submit_response({{":status", "200"}, {"micro-stream", "1"}}, true);
    } else if (role_ == Role::client && stream_id_ == 0) {
      // Never opened: open it and end it at once.
      out_eof_ = true;
      send_closed_ = false;
      Message open;
      return client_send_then_close(std::move(open));
    }
    out_eof_ = true;
    resume_out();
    completions_.close_send(error_ && stream_closed_ ? *error_ : Error{});
  }

  void client_send_then_close(Message open) {
    // Like a first send, without completing a send.
    std::string method, path;
    const Error invalid = detail::guarded([&] { request_line(open, method, path); });
    if (!invalid.ok()) return completions_.close_send(invalid);
    const HeaderList headers{{":method", method},
                             {":scheme", conn_->scheme},
                             {":authority", conn_->address},
                             {":path", path},
                             {"micro-stream", "1"}};
    reset_exchange();
    out_eof_ = true;
    const int32_t id = with_nv(headers, [&](const nghttp2_nv* nv, size_t count) {
      return nghttp2_submit_request(conn_->session(), nullptr, nv, count, nullptr, nullptr);
    });
    send_closed_ = true;
    if (id < 0)
      return completions_.close_send(Error(
          503, "cannot start an HTTP/2 stream on " + conn_->peer + ": " + nghttp2_strerror(id),
          kModule));
    stream_id_ = id;
    exchange_active_ = true;
    conn_->attach(id, shared_from_this());
    conn_->flush();
    completions_.close_send({});
  }

  // Sets micro-stream: 1, replacing the sender's own (any case) so it is not sent twice.
  static void mark_stream(HeaderList& headers) {
    headers.remove("micro-stream");
    headers.add("micro-stream", "1");
  }

  // Calls `submit` with the headers as nghttp2's array (which nghttp2 copies), on the stack when
  // short.
  // Fields whose values change from call to call (a call's id and timeout) are sent without
  // indexing: in HPACK's dynamic table each would only push out an entry that is reused.
  template <class Submit>
  static int32_t with_nv(const HeaderList& headers, Submit submit) {
    const auto to_nv = [](const HeaderList::Field& field) {
      const bool once = field.first == "micro-id" || field.first == "micro-timeout";
      return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(field.first.data())),
                        reinterpret_cast<uint8_t*>(const_cast<char*>(field.second.data())),
                        field.first.size(), field.second.size(),
                        static_cast<uint8_t>(once ? NGHTTP2_NV_FLAG_NO_INDEX
                                                  : NGHTTP2_NV_FLAG_NONE)};
    };
    const auto& fields = headers.fields();
    constexpr size_t kOnStack = 32;
    if (fields.size() <= kOnStack) {
      std::array<nghttp2_nv, kOnStack> nv;
      std::transform(fields.begin(), fields.end(), nv.begin(), to_nv);
      return submit(nv.data(), fields.size());
    }
    std::vector<nghttp2_nv> nv(fields.size());
    std::transform(fields.begin(), fields.end(), nv.begin(), to_nv);
    return submit(nv.data(), nv.size());
  }

  // A request the transport refuses (431, 413): answered with the error, as on HTTP/1.1.
  void reject(const Error& error) {
    discard_in_ = true;
    error_ = error;
    if (!response_started_) {
      const std::string json = error_json(error);
      out_ = json;
      out_eof_ = true;
      HeaderList headers{{"micro-error", json}, {"content-type", "application/json"}};
      headers.add_front({{":status", headers.number(static_cast<uint64_t>(error.code()))}});
      headers.add("content-length", headers.number(json.size()));
      submit_response(headers, true);
      conn_->flush();
    }
    pump();
  }

  // ---- receiving: hands the pending recv what has arrived, or waits (bounded in time)
  void pump() {
    if (!recv_wanted_) return;
    if (error_) return finish_recv(*error_, std::nullopt);
    if (role_ == Role::client && stream_id_ == 0) {
      if (stream_mode_) return;  // the first send opens the stream; the recv waits for it
      return finish_recv(Error::bad_request("recv: no request is waiting for its response on " +
                                            conn_->peer)
                             .with_id(kModule),
                         std::nullopt);
    }
    if (!head_delivered_) {
      if (!head_done_) return wait(read_timeout_, "waiting for the response");
      if (stream_in_) {
        head_delivered_ = true;
        return finish_recv_whole(head_, std::string());
      }
      if (!in_ended_)
        return wait(read_timeout_, role_ == Role::client ? "reading the response body"
                                                         : "reading the request body");
      head_delivered_ = true;
      // Taken out first: the recv's callback may start the next exchange on this socket.
      H2Head head = std::move(head_);
      std::string body = std::move(body_);
      if (role_ == Role::client && !stream_mode_) end_exchange();
      finish_recv_whole(head, std::move(body));
      if (head_.empty()) {  // no exchange received anything meanwhile: keep the buffers
        head.clear();
        head_ = std::move(head);
      }
      return;
    }
    if (stream_in_) {
      Error bad;
      std::optional<Frame> frame = take_from_inbox();
      if (!frame) frame = frames_->next(bad);
      if (frame) {
        consume(kFrameHeaderBytes + frame->payload.size());
        if (frame->kind == FrameKind::error)
          return finish_recv(parse_error_json(frame->payload, 500), std::nullopt);
        return finish_recv({}, Message{{}, std::move(frame->payload)});
      }
      if (!bad.ok()) {
        error_ = Error(bad.code(), bad.detail() + " on " + where(), kModule);
        cancel_stream();
        return finish_recv(*error_, std::nullopt);
      }
      if (in_ended_) {
        if (frames_->has_partial()) {
          error_ = Error::bad_request("the stream on " + conn_->peer +
                                      " ended in the middle of a frame")
                       .with_id(kModule);
          return finish_recv(*error_, std::nullopt);
        }
        return finish_recv({}, std::nullopt);
      }
      const bool mid_frame = frames_->has_partial();
      return wait(mid_frame ? conn_->rt.settings.read_timeout : conn_->rt.settings.idle_timeout,
                  "reading a stream");
    }
    // After a whole message: the end. A server waits until its answer has gone out.
    if (role_ == Role::server && !stream_closed_) return wait(Millis(0), "");
    finish_recv({}, std::nullopt);
  }

  // Waits for more, failing the recv with 408 (and cancelling the stream) after `timeout`. One
  // timer per socket, armed lazily: a wait moves the deadline, and the timer (when it fires
  // before that) re-arms itself for it, so exchanges that end in time cost no timer operation.
  void wait(Millis timeout, const char* doing) {
    if (timeout.count() == 0) return;
    wait_deadline_ = std::chrono::steady_clock::now() + timeout;
    wait_timeout_ = timeout;
    wait_doing_ = doing;
    if (!timer_armed_ || timer_expiry_ > wait_deadline_) arm_wait_timer();
  }
  void arm_wait_timer() {
    timer_armed_ = true;
    timer_expiry_ = wait_deadline_;
    timer_.expires_at(timer_expiry_);  // a wait pending before completes as aborted
    timer_.async_wait([weak = weak_from_this(), this](beast::error_code ec) {
      if (ec) return;  // re-armed, or the socket is going away
      auto self = weak.lock();
      if (!self) return;
      timer_armed_ = false;
      if (!recv_wanted_ || wait_deadline_ == kNoDeadline) return;
      if (std::chrono::steady_clock::now() < wait_deadline_) return arm_wait_timer();
      error_ = Error(408,
                     conn_->peer + " timed out after " + std::to_string(wait_timeout_.count()) +
                         " ms while " + wait_doing_,
                     kModule);
      cancel_stream();
      pump();
    });
  }

  void finish_recv(const Error& error, std::optional<Message> message) {
    recv_wanted_ = false;
    wait_deadline_ = kNoDeadline;
    completions_.recv(error, std::move(message));
  }
  // A head (and its body) received whole: a C recv gets it as a view, a C++ one as a Message.
  void finish_recv_whole(const H2Head& head, std::string body) {
    recv_wanted_ = false;
    wait_deadline_ = kNoDeadline;
    completions_.recv_whole(
        [&](auto&& deliver) { head.with_view(body, deliver); },
        [&] { return head.to_message(std::move(body)); });
  }

  // The reader took `n` bytes of the stream: they no longer count against the receive windows.
  void consume(size_t n) {
    n = std::min(n, unconsumed_);
    if (n == 0 || conn_->closed()) return;
    unconsumed_ -= n;
    nghttp2_session_consume(conn_->session(), stream_id_ != 0 ? stream_id_ : last_stream_id_, n);
    conn_->flush();  // a WINDOW_UPDATE, when nghttp2 decides one is due
  }
  // Nobody will read what is left: give it back to the windows, and drop the read-ahead.
  void release_unconsumed() {
    {
      std::lock_guard<std::mutex> lock(inbox_mutex_);
      inbox_on_ = false;
      inbox_.clear();
    }
    consume(unconsumed_);
  }

  // Read-ahead: once a stream's head has been delivered and while no recv waits here, whole
  // frames move to the inbox, where recv takes them on the caller's thread (see recv).
  void fill_inbox() {
    if (!head_delivered_ || recv_wanted_ || error_ || discard_in_) return;
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    Error bad;
    while (auto frame = frames_->next(bad)) inbox_.push_back(std::move(*frame));
    inbox_on_ = !inbox_.empty() || inbox_on_;
    // A malformed frame stays for pump, which fails the stream once the inbox is drained.
  }
  // The oldest frame read ahead, if any (only a message frame with `messages_only`); `drained`
  // says whether it was the last. Any thread.
  std::optional<Frame> take_from_inbox(bool* drained = nullptr, bool messages_only = false) {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    if (inbox_.empty() || (messages_only && inbox_.front().kind != FrameKind::message))
      return std::nullopt;
    Frame frame = std::move(inbox_.front());
    inbox_.pop_front();
    if (drained != nullptr) *drained = inbox_.empty();
    return frame;
  }
  // The same on the caller's thread (recv): the frame's bytes go back to the receive windows
  // from the strand, in batches.
  std::optional<Frame> take_for_caller(bool messages_only) {
    bool drained = false;
    std::optional<Frame> frame = take_from_inbox(&drained, messages_only);
    if (!frame) return frame;
    const size_t bytes = kFrameHeaderBytes + frame->payload.size();
    const size_t taken = to_consume_.fetch_add(bytes) + bytes;
    if (drained || taken >= kConsumeBatch) {
      net::post(conn_->strand, [self = shared_from_this()] {
        self->consume(self->to_consume_.exchange(0));
        self->fill_inbox();
      });
    }
    return frame;
  }

  // A client's unary exchange is over: the socket may send the next request (on a new stream).
  void end_exchange() {
    if (!out_done_ && !stream_closed_) cancel_stream();  // answered before the request was sent
    exchange_active_ = false;
    release_unconsumed();
    last_stream_id_ = stream_id_;
    stream_id_ = 0;
  }

  void reset_exchange() {
    release_unconsumed();
    head_.clear();
    body_.clear();
    header_bytes_ = 0;
    head_done_ = head_delivered_ = head_too_big_ = false;
    stream_in_ = in_ended_ = stream_closed_ = discard_in_ = false;
    frames_.reset();
    error_.reset();
    out_.clear();
    out_pos_ = 0;
    out_eof_ = out_done_ = deferred_ = false;
  }

  // RST_STREAM(CANCEL) for a stream still open.
  void cancel_stream() {
    if (stream_id_ == 0 || stream_closed_ || conn_->closed()) return;
    nghttp2_submit_rst_stream(conn_->session(), NGHTTP2_FLAG_NONE, stream_id_, NGHTTP2_CANCEL);
    conn_->flush();
  }

  void cancel(const Error& reason) {
    frames_behind_ = false;
    if (!error_) error_ = reason;
    cancel_stream();
    release_unconsumed();
    pump();
  }

  // The facade is gone. An answer already queued goes out in full; anything else is cancelled.
  void on_released() {
    released_ = true;
    release_unconsumed();
    if (role_ == Role::server && out_eof_) return;
    if (!error_) error_ = closed_locally();
    cancel_stream();
  }

  const std::shared_ptr<H2Connection> conn_;
  const Role role_;
  const bool stream_mode_;
  const Millis read_timeout_;
  Completions completions_;
  net::steady_timer timer_;
  static constexpr auto kNoDeadline = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point wait_deadline_ = kNoDeadline;  // of the recv waiting
  std::chrono::steady_clock::time_point timer_expiry_;
  bool timer_armed_ = false;
  Millis wait_timeout_{0};
  const char* wait_doing_ = "";

  // strand only
  int32_t stream_id_ = 0;   // the stream of the current exchange (0: none)
  bool exchange_active_ = false;
  bool recv_wanted_ = false;
  bool released_ = false;
  std::optional<Error> error_;  // the stream (or connection) failed: every recv hears it

  H2Head head_;  // the received head
  std::string body_;
  size_t header_bytes_ = 0;
  bool head_done_ = false;
  bool head_too_big_ = false;
  bool head_delivered_ = false;
  bool stream_in_ = false;  // the peer marked its side a stream (micro-stream: 1)
  bool in_ended_ = false;   // END_STREAM received
  bool discard_in_ = false;
  bool stream_closed_ = false;
  std::optional<FrameDecoder> frames_;
  size_t unconsumed_ = 0;       // stream bytes received and not yet taken by the reader
  int32_t last_stream_id_ = 0;  // for giving back what arrived on an exchange already ended

  std::string out_;  // DATA not yet taken by nghttp2
  size_t out_pos_ = 0;
  bool out_eof_ = false;   // the body ends after out_
  bool out_done_ = false;  // nghttp2 has taken the end
  bool deferred_ = false;  // nghttp2 waits for resume_data
  bool send_parked_ = false;
  bool response_started_ = false;
  bool send_closed_ = false;

  // Write-behind and read-ahead of stream frames (see send, recv): any thread.
  static constexpr size_t kConsumeBatch = 64 * 1024;
  // Completions run inline on the caller's thread at most this deep (a callback that sends or
  // receives again from its own completion); deeper ones go through the strand.
  static constexpr int kMaxInlineDepth = 16;
  static int& inline_depth() noexcept {
    static thread_local int depth = 0;
    return depth;
  }
  std::atomic<bool> frames_behind_{false};  // a frame's send may complete on the caller's thread
  std::atomic<size_t> behind_{0};           // bytes of such frames not yet appended to out_
  std::atomic<size_t> out_pending_{0};      // pending_out(), as last seen on the strand
  std::mutex behind_mutex_;
  std::string behind_frames_;  // frames sent on callers' threads, for the strand to append
  std::string behind_taken_;   // (strand) the last batch of them, its buffer kept
  std::mutex inbox_mutex_;
  std::deque<Frame> inbox_;                 // whole frames read ahead, oldest first
  std::atomic<bool> inbox_on_{false};       // recv may look in the inbox
  std::atomic<size_t> to_consume_{0};       // bytes taken from the inbox, not yet consumed
};

// ---- H2Connection

void H2Connection::start(bool reading) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  // Receive windows open as the application takes what arrived (nghttp2_session_consume), not as
  // it arrives: a stream whose reader falls behind holds at most its window (kStreamWindow) here,
  // and its sender is held back, instead of this side buffering without bound.
  nghttp2_option* option = nullptr;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_auto_window_update(option, 1);
  const int rv = role == Role::server
                     ? nghttp2_session_server_new3(&session_, callbacks, this, option, memory_.mem())
                     : nghttp2_session_client_new3(&session_, callbacks, this, option, memory_.mem());
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) {
    session_ = nullptr;
    return fail(Error(500, "cannot start HTTP/2 on " + peer + ": " + nghttp2_strerror(rv), kModule));
  }
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kStreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, rt.settings.limits.max_header_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  on_wire([](auto& c) { c.tcp_layer().expires_never(); });
  // Bytes read before the session began (a listener's sniff of the preface) go first.
  std::string already_read = on_wire([](auto& c) {
    std::string bytes = beast::buffers_to_string(c.buffer.data());
    c.buffer.consume(c.buffer.size());
    return bytes;
  });
  if (!already_read.empty()) receive(reinterpret_cast<const uint8_t*>(already_read.data()),
                                     already_read.size());
  if (closed_) return;
  if (reading) read();
  flush();
  arm_idle();
}

void H2Connection::read() {
  on_wire([&](auto& c) { c.stream.async_read_some(
      net::buffer(read_buffer_), [self = shared_from_this(), this](beast::error_code ec, size_t n) {
        if (closed_) return;
        if (ec) {
          // A peer that said GOAWAY and closed, with nothing open, is a clean end.
          const bool clean = streams_.empty() && closed_by_peer(ec);
          if (clean) rt.log.trace("HTTP/2 ", peer, " closed by the peer");
          return fail(io_error(ec, peer, "reading HTTP/2 frames", rt.settings.idle_timeout));
        }
        // Over TLS a read returns one record. While more is already buffered (the peer wrote
        // records back to back), what the handlers queue waits for it: else each record's
        // answers would go out in a write (and a record) of their own, and a peer that answers
        // likewise would keep both sides at one stream per write.
        draining_ = tls_input_buffered();
        receive(read_buffer_.data(), n);
        if (!draining_ && flush_deferred_) {
          flush_deferred_ = false;
          flush();
        }
        if (!closed_) read();
      }); });
}

bool H2Connection::tls_input_buffered() {
  return on_wire([](auto& c) {
    if constexpr (kIsTls<std::decay_t<decltype(c.stream)>>) {
      SSL* ssl = c.stream.native_handle();
      return SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
    } else {
      return false;
    }
  });
}

void H2Connection::receive(const uint8_t* data, size_t size) {
  // A plaintext server that does not speak HTTP/2 answers the preface in HTTP/1.1 (a 400): say
  // that, not what nghttp2 makes of those bytes.
  if (role == Role::client && !received_any_ && std::string_view(protocol) == kH2c &&
      std::string_view(reinterpret_cast<const char*>(data), size).substr(0, 5) == "HTTP/")
    return fail(Error(502,
                      peer + " answered in HTTP/1.1, not HTTP/2: it does not take plaintext "
                             "HTTP/2 (set h2c = true on its transport, or drop h2c here)",
                      kModule));
  received_any_ = true;
  in_nghttp2_ = true;
  const ssize_t used = nghttp2_session_mem_recv(session_, data, size);
  in_nghttp2_ = false;
  if (used < 0)
    return fail(Error(
        502, "HTTP/2 protocol error on " + peer + ": " + nghttp2_strerror(static_cast<int>(used)),
        kModule));
  flush();
}

// What is said on the connection goes out on the strand's next turn, not at once: frames queued
// by the handlers already waiting to run there (other streams' requests or answers) join the
// same write, so a busy connection makes one write and one TLS record for many streams.
void H2Connection::flush() {
  if (flush_posted_ || writing_ || closed_ || session_ == nullptr) return;
  if (draining_) {  // the read loop flushes once the buffered input is taken (see read)
    flush_deferred_ = true;
    return;
  }
  flush_posted_ = true;
  net::post(strand, [self = shared_from_this(), this] {
    flush_posted_ = false;
    write_out();
  });
}

// Not re-entrant: from inside nghttp2's callbacks it does nothing (the read loop and the write
// loop flush after nghttp2 returns).
void H2Connection::write_out() {
  if (writing_ || closed_ || session_ == nullptr || in_nghttp2_) return;
  write_buffer_.clear();
  while (write_buffer_.size() < kWriteBatch) {
    const uint8_t* data = nullptr;
    in_nghttp2_ = true;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    in_nghttp2_ = false;
    if (n < 0)
      return fail(Error(502,
                        "HTTP/2 error on " + peer + ": " + nghttp2_strerror(static_cast<int>(n)),
                        kModule));
    if (n == 0) break;
    write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (write_buffer_.empty()) {
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0)
      fail(Error(503, peer + " closed (HTTP/2 GOAWAY)", kModule));
    return;
  }
  writing_ = true;
  on_wire([&](auto& c) {
    net::async_write(c.stream, net::buffer(write_buffer_),
                     [self = shared_from_this(), this](beast::error_code ec, size_t) {
                       writing_ = false;
                       if (ec) {
                         if (!closed_)
                           fail(io_error(ec, peer, "writing HTTP/2 frames",
                                         rt.settings.write_timeout));
                         return;
                       }
                       write_out();
                     });
  });
}

void H2Connection::fail(const Error& error) {
  if (closed_) return;
  closed_ = true;
  close_reason_ = error;
  stop_pooling();
  idle_timer_.cancel();
  on_wire([](auto& c) { c.close(); });
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, socket] : streams) socket->on_connection_failed(error);
}

void H2Connection::stop_pooling() {
  usable_ = false;
  if (role == Role::client) rt.h2_pool->impl().remove(address, this);
}

// With no stream open for idle_timeout (server) or pool_idle_ms (client), says GOAWAY and closes.
void H2Connection::arm_idle() {
  if (!streams_.empty() || closed_) return;
  idle_timer_.expires_after(role == Role::server ? rt.settings.idle_timeout : rt.settings.pool_idle);
  idle_timer_.async_wait([self = shared_from_this(), this](beast::error_code ec) {
    if (ec || closed_ || !streams_.empty()) return;
    stop_pooling();
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    flush();
  });
}

int H2Connection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (self->role != Role::server || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  auto socket = std::make_shared<H2Socket>(self->shared_from_this(), Role::server, false,
                                           self->rt.settings.read_timeout);
  socket->begin_server_stream(frame->hd.stream_id);
  self->attach(frame->hd.stream_id, std::move(socket));
  return 0;
}

int H2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                            size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                            void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (H2Socket* socket = self->find(frame->hd.stream_id))
    socket->on_header(frame->hd.stream_id,
                      std::string_view(reinterpret_cast<const char*>(name), namelen),
                      std::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int H2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  const int32_t id = frame->hd.stream_id;
  switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
      self->stop_pooling();  // streams open go on; new dials make a new connection
      return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: {
      // Keep the socket alive across its callbacks (they may end its stream).
      auto it = self->streams_.find(id);
      if (it == self->streams_.end()) return 0;
      auto socket = it->second;
      if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS) != 0)
        socket->on_headers_done(id);
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) socket->on_end_stream(id);
      return 0;
    }
    default:
      return 0;
  }
}

int H2Connection::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                const uint8_t* data, size_t len, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  H2Socket* socket = self->find(stream_id);
  // What a stream's socket keeps for its reader is consumed as the reader takes it; the rest
  // (unary bodies, bounded by max_body_bytes; data for a stream nobody reads) at once.
  if (socket == nullptr || !socket->on_data(stream_id, data, len))
    nghttp2_session_consume(session, stream_id, len);
  return 0;
}

int H2Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                  void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  auto socket = std::move(it->second);
  self->streams_.erase(it);
  socket->on_stream_closed(stream_id, error_code);
  self->arm_idle();
  return 0;
}

}  // namespace

// Forgets the connections that are gone or no longer take new streams.
static void prune(std::vector<std::weak_ptr<H2Connection>>& conns) {
  conns.erase(std::remove_if(conns.begin(), conns.end(),
                             [](const std::weak_ptr<H2Connection>& weak) {
                               auto live = weak.lock();
                               return !live || !live->usable();
                             }),
              conns.end());
}

void H2ClientPool::Impl::put(const std::string& address,
                             const std::shared_ptr<H2Connection>& conn) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  auto& conns = live_[address];
  prune(conns);
  if (conns.size() < per_address_) conns.push_back(conn);
}

std::shared_ptr<H2Connection> H2ClientPool::Impl::find(const std::string& address) {
  std::lock_guard<std::mutex> lock(mutex_);
  // While the first connections are being set up, dials wait for all of them (so that a burst
  // spreads over them), even once one is up.
  if (connecting_.count(address) != 0) return nullptr;
  return find_locked(address);
}

std::shared_ptr<H2Connection> H2ClientPool::Impl::find_locked(const std::string& address) {
  auto it = live_.find(address);
  if (it == live_.end()) return nullptr;
  auto& conns = it->second;
  prune(conns);
  if (conns.empty()) {
    live_.erase(it);
    return nullptr;
  }
  // The fewest sockets wins; ties go round in turn, so dials made one after another (each
  // socket gone before the next dial) spread too. (A connection that went away since the prune
  // is skipped; a dial that finds none dials.)
  const size_t first = turn_++ % conns.size();
  std::shared_ptr<H2Connection> best;
  for (size_t k = 0; k < conns.size(); ++k) {
    auto conn = conns[(first + k) % conns.size()].lock();
    if (conn && (!best || conn->users() < best->users())) best = std::move(conn);
  }
  return best;
}

bool H2ClientPool::Impl::wait_for_connection(const std::string& address,
                                             H2ClientPool::Waiter& waiter, int attempts) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (auto it = connecting_.find(address); it != connecting_.end()) {
    it->second.waiters.push_back(std::move(waiter));
    return true;
  }
  // The first connections may have settled since the caller last looked for one: they are in
  // live_ before they leave connecting_, so looking here, under the same lock, closes that gap.
  if (find_locked(address)) {
    lock.unlock();
    waiter();
    return true;
  }
  connecting_[address].unsettled = attempts;
  return false;
}

H2ClientPool::H2ClientPool(int per_address) : impl_(std::make_unique<Impl>(per_address)) {}
H2ClientPool::~H2ClientPool() = default;
void H2ClientPool::close() { impl_->close(); }
bool H2ClientPool::closed() const { return impl_->closed(); }
bool H2ClientPool::wait_for_connection(const std::string& address, Waiter waiter, int attempts) {
  return impl_->wait_for_connection(address, waiter, attempts);
}
std::vector<H2ClientPool::Waiter> H2ClientPool::connection_settled(const std::string& address) {
  return impl_->connection_settled(address);
}

namespace {

Millis socket_read_timeout(const Runtime& rt, uint64_t timeout_ms) {
  return timeout_ms != 0 ? Millis(timeout_ms) : rt.settings.read_timeout;
}

std::unique_ptr<SocketImpl> new_client_socket(Runtime& rt, std::shared_ptr<H2Connection> conn,
                                              bool stream, Millis read_timeout) {
  conn->add_user(1);
  auto socket = std::make_shared<H2Socket>(std::move(conn), Role::client, stream, read_timeout);
  rt.sessions.add(socket);
  return std::make_unique<HttpSocket>(socket);
}

}  // namespace

std::unique_ptr<SocketImpl> h2_dial_pooled(Runtime& runtime, const std::string& address,
                                           const DialOptions& options) {
  auto conn = runtime.h2_pool->impl().find(address);
  if (!conn) return nullptr;
  return new_client_socket(runtime, std::move(conn), options.stream,
                           socket_read_timeout(runtime, options.timeout_ms));
}

std::unique_ptr<SocketImpl> h2_adopt_client(Runtime& runtime, const std::string& address,
                                            H2Wire conn, bool stream, Millis read_timeout) {
  auto h2 = std::make_shared<H2Connection>(runtime, std::move(conn), Role::client, address,
                                           DeliverSocket());
  runtime.sessions.add(h2);
  h2->start();
  runtime.h2_pool->impl().put(address, h2);
  runtime.log.debug("HTTP/2 connection to ", address);
  return new_client_socket(runtime, std::move(h2), stream, read_timeout);
}

void h2_serve(Runtime& runtime, H2Wire conn, DeliverSocket deliver) {
  auto h2 = std::make_shared<H2Connection>(runtime, std::move(conn), Role::server, std::string(),
                                           std::move(deliver));
  runtime.sessions.add(h2);
  runtime.log.trace("HTTP/2 connection from ", h2->remote);
  h2->start();
}

void h2_feed_server(Runtime& runtime, std::string_view bytes) {
  static net::ssl::context context(net::ssl::context::tls_server);
  auto sockets = std::make_shared<std::vector<std::unique_ptr<SocketImpl>>>();
  struct Reader {
    static void read_all(SocketImpl* socket) {
      socket->recv([socket](const Error& error, std::optional<Message> message) {
        if (error.ok() && message) read_all(socket);
      });
    }
  };
  auto h2 = std::make_shared<H2Connection>(
      runtime,
      std::make_unique<Connection<TlsStream>>(TlsStream(net::make_strand(runtime.ioc), context)),
      Role::server, std::string(), [sockets](std::unique_ptr<SocketImpl> socket) {
        Reader::read_all(socket.get());
        sockets->push_back(std::move(socket));
      });
  runtime.sessions.add(h2);
  h2->start(false);
  h2->receive(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  runtime.ioc.restart();
  runtime.ioc.poll();
  sockets->clear();
  runtime.sessions.abort_all();
  runtime.ioc.restart();
  runtime.ioc.poll();
}

}  // namespace micro::transport_http
