// What server and client sessions share: the calls from the socket facade (posted to the
// connection's strand), the write queue, stream frames in and out, closing. One session object per
// socket, kept alive by shared_from_this across every asynchronous step, as in Beast's examples;
// every handler checks its error code first.
#pragma once

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "completions.hpp"
#include "connection.hpp"
#include "errors.hpp"
#include "frame.hpp"
#include "message_reader.hpp"
#include "runtime.hpp"

namespace micro::transport_http {

template <class Stream>
class SessionCore : public SessionBase,
                    public CFastPath,
                    public std::enable_shared_from_this<SessionCore<Stream>> {
 public:
  using Conn = Connection<Stream>;

  // The fast paths of send_frame_inline and recv_frame_inline for a C call (HttpSocket's
  // send_c/recv_c): only when they complete at once (a send that fits the outbox, a recv with a
  // message frame in the inbox); anything else (parking, errors, the end) takes the ordinary path.
  bool send_frame_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    std::string_view error_json;
    bool failure = false;
    for (size_t i = 0; i < message.header.count && message.header.items != nullptr; ++i) {
      if (same_name(to_view(message.header.items[i].key), "micro-error")) {
        error_json = to_view(message.header.items[i].value);
        failure = true;
        break;
      }
    }
    const std::string_view payload = failure ? error_json : to_view(message.body);
    {
      std::lock_guard<std::mutex> lock(buffers_);
      if (!frames_out_ || shut_ || out_closed_ || send_parked_ ||
          inline_depth() >= kMaxInlineDepth)
        return false;
      if (outbox_.size() + in_flight_ + kFrameHeaderBytes + payload.size() >= kOutboxLimit)
        return false;  // the ordinary path parks it
      append_frame_bytes(failure ? FrameKind::error : FrameKind::message, payload);
    }
    InlineScope scope;
    done(ctx, nullptr);
    return true;
  }
  bool recv_frame_c(micro_message_fn on_message, void* ctx) noexcept {
    {
      std::lock_guard<std::mutex> lock(buffers_);
      if (!frames_in_ || shut_ || recv_waiting_ || taking_ || inline_depth() >= kMaxInlineDepth)
        return false;
      if (inbox_empty() || frame_kind_at(inbox_view()) != FrameKind::message) return false;
      taken_.assign(take_front().second);  // copied out: the reader appends while we deliver
      taking_ = true;
      resume_locked();
    }
    {
      InlineScope scope;
      const micro_message_t view{sizeof(micro_message_t), {nullptr, 0}, to_c_bytes(taken_)};
      on_message(ctx, nullptr, &view);
    }
    std::lock_guard<std::mutex> lock(buffers_);
    taking_ = false;
    return true;
  }

  ~SessionCore() override { rt_.sessions.remove(this); }

  // From a completion of this connection (its strand, on this thread) a unary exchange's next
  // step runs at once: no queueing, no trip through the scheduler, no other thread woken. From
  // anywhere else, and for streams (whose read-ahead would recurse frame after frame), it is
  // posted to the strand.
  void send(Message message, Done done) override {
    if (send_frame_inline(message, done)) return;
    if (refused(completions_.arm_send(done), "send", done)) return;
    if (in_strand() && steps_inline()) return on_send(std::move(message));
    net::post(strand_, [self = this->shared_from_this(), m = std::move(message)]() mutable {
      self->on_send(std::move(m));
    });
  }
  void recv(MessageCallback on_message) override {
    if (recv_frame_inline(on_message)) return;
    const auto armed = completions_.arm_recv(on_message);
    if (armed != Completions::Arm::ok) return on_message(arm_error(armed, "recv"), std::nullopt);
    if (in_strand() && steps_inline()) return on_recv();
    net::post(strand_, [self = this->shared_from_this()] { self->on_recv(); });
  }
  // CFastPath: a stream frame at once (above), else the call on its own C completion.
  bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    return send_frame_c(message, done, ctx) || send_unary_c(message, done, ctx);
  }
  bool recv_c(micro_message_fn on_message, void* ctx) noexcept override {
    return recv_frame_c(on_message, ctx) || recv_armed_c(on_message, ctx);
  }

  // A C caller's recv: armed with its own completion, which a unary message received whole then
  // gets as a view (Completions::recv(const micro_message_t&)), with no Message built.
  bool recv_armed_c(micro_message_fn on_message, void* ctx) noexcept {
    const auto armed = completions_.arm_recv(on_message, ctx);
    if (armed != Completions::Arm::ok) {
      const Error refused = arm_error(armed, "recv");
      detail::call_message_fn(on_message, ctx, refused, nullptr);
      return true;
    }
    const Error failed = detail::guarded([&] {
      if (in_strand() && steps_inline()) return on_recv();
      net::post(strand_, [self = this->shared_from_this()] { self->on_recv(); });
    });
    if (!failed.ok()) completions_.recv(failed, std::nullopt);
    return true;
  }
  // A C caller's unary send, on this connection's strand (from one of its completions: the next
  // call on a pooled connection, a handler's answer) and small: its head is written from the C
  // list as it is (keys in ascending order, as MessageView lists them), with no Message built.
  bool send_unary_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    if (!in_strand() || !steps_inline() || !fits_wire(message.body.size) ||
        !OutHeaders::ascending(message.header))
      return false;
    return send_view(message, done, ctx);
  }
  void close_send(Done done) override {
    {
      std::lock_guard<std::mutex> lock(buffers_);
      frames_out_ = false;  // later sends go to the strand, which refuses them
      send_closing_ = true;
    }
    if (refused(completions_.arm_close_send(done), "close_send", done)) return;
    net::post(strand_, [self = this->shared_from_this()] { self->on_close_send(); });
  }
  void close() override {
    shut_buffers();
    completions_.cancel_all(closed_locally());
    net::post(strand_, [self = this->shared_from_this()] {
      self->close_after_writes(self->closed_locally());
    });
  }
  void release() override {
    shut_buffers();
    completions_.shut_down_with(
        [this] { return Error(499, peer_ + " closed: the socket was destroyed", kModule); });
    auto self = this->shared_from_this();
    // A client connection on its way to the pool is handed over before destroy returns (so the
    // next dial finds it), unless this is a transport thread, which must never wait on a strand.
    if (!wait_on_release() || rt_.on_transport_thread()) {
      net::post(strand_, [self] { self->on_released(); });
      return;
    }
    std::promise<void> released;
    auto done = released.get_future();
    net::post(strand_, [self, &released] {
      self->on_released();
      released.set_value();
    });
    done.wait();
  }
  // The connection's strand: every state change of the session happens there.
  const Strand& strand() const noexcept { return strand_; }

  void abort() override {
    net::post(strand_, [self = this->shared_from_this()] {
      self->hard_close(
          Error(499, self->peer_ + " closed: the transport is shutting down", kModule));
    });
  }

 protected:
  using WriteHandler = std::function<void(beast::error_code, std::size_t)>;
  using WriteStart = std::function<void(WriteHandler)>;
  using WriteThen = std::function<void(beast::error_code)>;

  SessionCore(Runtime& rt, Strand strand, std::string peer)
      : rt_(rt), strand_(std::move(strand)), peer_(std::move(peer)) {}

  // On the strand: whether send and recv may run their step at once (see send).
  virtual bool steps_inline() const = 0;
  // True on this connection's strand.
  bool in_strand() const noexcept { return strand_.running_in_this_thread(); }

  // Parses what the connection's buffer holds into `reader` (the head, or the body into `body`)
  // without waiting for the socket: a whole message that arrived in one read is handled with no
  // further asynchronous step. Returns false with `ec` need_more when more must be read.
  template <bool isRequest>
  bool parse_buffered(MessageReader<isRequest>& reader, std::string& body, beast::error_code& ec) {
    ec = {};
    if (conn_->buffer.size() == 0) {
      ec = http::error::need_more;
      return false;
    }
    const auto data = conn_->buffer.data();
    const size_t used = reader.feed(
        std::string_view(static_cast<const char*>(data.data()), data.size()), false, body, ec);
    conn_->buffer.consume(used);
    return !ec;
  }

  // One read of what arrives (up to `n` bytes) into the connection's buffer, timed by the
  // watchdog within `timeout`; then `then(ec)` (the bytes are in the buffer when `ec` is clear).
  template <class Then>
  void read_some(size_t n, Millis timeout, Then then) {
    conn_->watch(Watchdog::read, timeout);
    conn_->stream.async_read_some(
        conn_->buffer.prepare(n), [self = this->shared_from_this(), this,
                                   then = std::move(then)](beast::error_code ec, size_t got) mutable {
          if (conn_) ec = conn_->settle(Watchdog::read, ec);
          if (!ec) conn_->buffer.commit(got);
          then(ec);
        });
  }

  // Reads a message's head into `reader`: from what the buffer holds, else with Beast's
  // asynchronous read within `timeout`. Then `on_head()`, or `failed(ec)`.
  template <bool isRequest, class OnHead, class Failed>
  void read_message_head(MessageReader<isRequest>& reader, std::string& body, Millis timeout,
                 OnHead on_head, Failed failed) {
    beast::error_code parsed;
    if (parse_buffered(reader, body, parsed)) return on_head();
    if (parsed != http::error::need_more) return failed(parsed);
    conn_->watch(Watchdog::read, timeout);
    http::async_read_header(conn_->stream, conn_->buffer, reader.parser(),
                            [self = this->shared_from_this(), this, on_head = std::move(on_head),
                             failed = std::move(failed)](beast::error_code ec, size_t) {
                              if (conn_) ec = conn_->settle(Watchdog::read, ec);
                              if (ec) return failed(ec);
                              on_head();
                            });
  }

  // Reads the rest of a unary message's body into `body`: what the buffer holds, then Beast's
  // asynchronous reads (each within `timeout`). Then `done()`, or `failed(ec)`.
  template <bool isRequest, class Done_, class Failed>
  void read_body_into(MessageReader<isRequest>& reader, std::string& body, Millis timeout,
                      Done_ done, Failed failed) {
    if (!reader.parser().is_done()) {
      beast::error_code parsed;
      if (!parse_buffered(reader, body, parsed) && parsed != http::error::need_more)
        return failed(parsed);
    }
    if (reader.parser().is_done()) return done();
    conn_->watch(Watchdog::read, timeout);
    reader.prepare_body(reader.next_body_window());
    http::async_read(conn_->stream, conn_->buffer, reader.parser(),
                     [self = this->shared_from_this(), this, &reader, &body, timeout,
                      done = std::move(done),
                      failed = std::move(failed)](beast::error_code ec, size_t) mutable {
                       if (conn_) ec = conn_->settle(Watchdog::read, ec);
                       reader.commit_body(body);
                       if (ec == http::error::need_buffer)
                         return read_body_into(reader, body, timeout, std::move(done),
                                               std::move(failed));
                       if (ec) return failed(ec);
                       done();
                     });
  }

  // On the strand: send_c's unary send from a C view, or false (nothing done) to let the call go
  // the ordinary way. The session arms the completion (arm_send_c) when it takes the call.
  virtual bool send_view(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    (void)message, (void)done, (void)ctx;
    return false;
  }
  // Arms a C send; when refused, completes it with the reason and returns false.
  bool arm_send_c(micro_done_fn done, void* ctx) noexcept {
    const auto armed = completions_.arm_send(done, ctx);
    if (armed == Completions::Arm::ok) return true;
    const Error refused = arm_error(armed, "send");
    DoneSlot(done, ctx)(refused);
    return false;
  }

  // After a unary message's recv callback returned: its reader, and its body's buffer (unless the
  // next message's body has begun), serve the next message.
  template <bool isRequest>
  static void recycle(ReaderSpare<isRequest>& readers, std::unique_ptr<MessageReader<isRequest>> reader,
                      std::string& body_member, std::string body) {
    readers.give(std::move(reader));
    if (body_member.empty() && body_member.capacity() < body.capacity()) {
      body.clear();
      body_member = std::move(body);
    }
  }

  // On the strand, one per facade call.
  virtual void on_send(Message message) = 0;
  virtual void on_recv() = 0;
  virtual void on_close_send() = 0;
  // The facade is gone and its completions are cancelled: close, or hand the connection on.
  virtual void on_released() { close_after_writes(closed_locally()); }
  // Whether release() should wait for on_released (a connection may go to the pool).
  virtual bool wait_on_release() const { return false; }

  Error closed_locally() const {
    return Error(499, "the socket for " + peer_ + " was closed", kModule);
  }

  // On the strand: closes the connection; operations pending or started later fail with `reason`.
  void hard_close(const Error& reason) {
    if (closed_) {
      if (draining_) finish_draining();  // no more waiting for queued writes
      return;
    }
    closed_ = true;
    close_reason_ = reason;
    close_buffers(reason);
    on_closing();
    if (conn_) conn_->close();
    std::deque<PendingWrite> unstarted;
    if (writing_ && !writes_.empty()) {
      unstarted.assign(std::make_move_iterator(writes_.begin() + 1),
                       std::make_move_iterator(writes_.end()));
      writes_.erase(writes_.begin() + 1, writes_.end());
    } else {
      unstarted.swap(writes_);
    }
    for (auto& write : unstarted) write.then(net::error::operation_aborted);
  }
  virtual void on_closing() {}

  // A local close (close() or destroy): like hard_close, but what is already queued to write
  // (stream frames whose sends completed, above all) is written first, within write_timeout.
  void close_after_writes(const Error& reason) {
    if (closed_) return;
    if (!writing_ && writes_.empty()) return hard_close(reason);
    closed_ = true;
    close_reason_ = reason;
    close_buffers(reason);
    draining_ = true;
    on_closing();
  }

  // An error for a failed operation; after hard_close, the reason it closed.
  Error failure(const beast::error_code& ec, std::string_view doing, Millis timeout) const {
    if (closed_ && ec == net::error::operation_aborted) return close_reason_;
    return io_error(ec, peer_, doing, timeout);
  }

  // Fails the pending recv with `error` and closes.
  void fail(const Error& error) {
    hard_close(error);
    completions_.recv(error, std::nullopt);
  }

  // ---- writing: one write at a time, in the order queued; `then` runs after each.
  void queue_write(WriteStart start, WriteThen then) {
    if (closed_) return then(net::error::operation_aborted);
    writes_.push_back({std::move(start), std::move(then)});
    if (!writing_) write_next();
  }

  // A unary message small enough to be written from one buffer (`wire_`, reused).
  static bool fits_wire(size_t body_size) noexcept { return body_size <= kWireLimit; }

  // Writes `wire_` (a whole message, head and body). On a plaintext connection with nothing else
  // being written it goes to the socket without waiting; when the socket takes it whole (the
  // usual case) `then` runs before this returns: no asynchronous step, timer or handler
  // allocation. Otherwise, and over TLS, what is left is queued as any write is.
  template <class Then>
  void write_wire(Then& then) {
    size_t written = 0;
    if constexpr (!kIsTls<Stream>) {
      if (!closed_ && !writing_ && writes_.empty()) {
        auto& socket = conn_->socket();
        beast::error_code ec;
        if (!socket.non_blocking()) socket.non_blocking(true, ec);
        if (!ec) written = socket.write_some(net::buffer(wire_), ec);
        if (ec == net::error::would_block || ec == net::error::try_again) {
          ec = {};
          written = 0;
        }
        if (ec || written == wire_.size()) return then(ec);
      }
    }
    auto rest = std::make_shared<std::string>(wire_, written);
    queue_write(
        [this, rest](WriteHandler handler) {
          net::async_write(conn_->stream, net::buffer(*rest),
                           [rest, handler](beast::error_code ec, size_t n) { handler(ec, n); });
        },
        WriteThen(std::move(then)));
  }

  template <bool isRequest>
  void write_stream_head(std::shared_ptr<http::message<isRequest, http::empty_body>> head,
                         WriteThen then) {
    auto serializer = std::make_shared<http::serializer<isRequest, http::empty_body>>(*head);
    queue_write(
        [this, head, serializer](WriteHandler handler) {
          http::async_write_header(
              conn_->stream, *serializer,
              [head, serializer, handler](beast::error_code ec, size_t n) { handler(ec, n); });
        },
        std::move(then));
  }

  // A stream send that came through the strand (the first frame, with a head): as
  // send_frame_inline, completing the armed send.
  void send_frame(const Message& message) {
    std::unique_lock<std::mutex> lock(buffers_);
    const Error bad = append_frame(message);
    if (!bad.ok()) {
      lock.unlock();
      return completions_.send(bad);
    }
    if (outbox_.size() + in_flight_ < kOutboxLimit) {
      lock.unlock();
      return completions_.send({});
    }
    send_parked_ = true;
  }

  // On the strand, once the stream's head is queued: from now on sends of frames take the fast
  // path (unless close_send was called).
  void open_frames_out() {
    std::lock_guard<std::mutex> lock(buffers_);
    if (!send_closing_) frames_out_ = true;
  }
  // On the strand: the stream's own close_send stops the fast path.
  void end_frames_out() {
    std::lock_guard<std::mutex> lock(buffers_);
    frames_out_ = false;
  }
  // On the strand, for a new exchange on the connection: close_send of the last one is history.
  void reset_send_closing() {
    std::lock_guard<std::mutex> lock(buffers_);
    send_closing_ = false;
  }

  void write_last_chunk(WriteThen then) {
    queue_write(
        [this](WriteHandler handler) {
          net::async_write(conn_->stream, http::make_chunk_last(), std::move(handler));
        },
        std::move(then));
  }

  // ---- reading a stream's body ahead: frames are decoded into the inbox while it holds less
  // than kInboxLimit; recv takes them from there on the caller's thread (recv_frame_inline).
  // The reader pauses when the inbox is full and a recv that drains it below half resumes it, so
  // a peer that is not read from is eventually held back by TCP.

  // On the strand, after the stream's head was received (before it is delivered): frames go to
  // the inbox from now on, read by the derived session's pump_stream().
  void open_frames_in() {
    {
      std::lock_guard<std::mutex> lock(buffers_);
      inbox_.clear();
      inbox_at_ = 0;
      inbox_bytes_ = 0;
      in_end_ = false;
      in_error_ = Error{};
      recv_waiting_ = false;
      paused_ = false;
      frames_in_ = true;
    }
    pump_stream();
  }

  // Derived sessions: calls pump() with their reader, decoder and what to do at the body's end.
  virtual void pump_stream() {}

  // On the strand: decodes what has arrived, hands a frame to a waiting recv, reads more unless
  // the inbox is full. `at_end` runs (on the strand) when the body ends cleanly.
  template <bool isRequest, class AtEnd>
  void pump(MessageReader<isRequest>& reader, FrameDecoder& frames, AtEnd at_end) {
    if (reading_ahead_) return;  // a read is under way; its completion pumps
    if (closed_) return end_frames_in(close_reason_);
    Error error;
    // Cut outside the lock (a recv on the caller's thread takes it per message), then appended:
    // whole frames as on the wire, one buffer, nothing allocated per frame.
    cut_.clear();
    size_t decoded_bytes = 0;
    while (auto payload_size = frames.next_into(cut_, error))
      decoded_bytes += *payload_size + kFrameOverhead;
    {
      std::lock_guard<std::mutex> lock(buffers_);
      if (in_end_ || !frames_in_) return;
      if (inbox_at_ == inbox_.size()) {
        inbox_.clear();
        inbox_at_ = 0;
      } else if (inbox_at_ > 64 * 1024 && inbox_at_ * 2 > inbox_.size()) {
        inbox_.erase(0, inbox_at_);
        inbox_at_ = 0;
      }
      inbox_.append(cut_);
      inbox_bytes_ += decoded_bytes;
    }
    if (!error.ok())
      return fail_frames_in(Error(error.code(), error.detail() + " on " + peer_, kModule));
    if (reader.parser().is_done()) {
      if (frames.has_partial())
        return fail_frames_in(
            Error::bad_request("the stream on " + peer_ + " ended in the middle of a frame")
                .with_id(kModule));
      at_end();
      return end_frames_in({});
    }
    hand_to_waiting();
    {
      std::lock_guard<std::mutex> lock(buffers_);
      if (inbox_bytes_ >= kInboxLimit) {
        paused_ = true;
        return;
      }
    }
    const bool mid_frame = frames.has_partial();
    const Millis timeout = mid_frame ? rt_.settings.read_timeout : rt_.settings.idle_timeout;
    conn_->tcp_layer().expires_after(timeout);
    reader.prepare_body(64 * 1024);
    reading_ahead_ = true;
    http::async_read_some(
        conn_->stream, conn_->buffer, reader.parser(),
        [self = this->shared_from_this(), this, &reader, &frames, at_end,
         timeout](beast::error_code ec, size_t) mutable {
          reading_ahead_ = false;
          reader.commit_body(frames.bytes());
          if (ec == http::error::need_buffer) ec = {};
          if (ec) {
            if (is_parse_error(ec))
              return fail_frames_in(
                  Error(400, "malformed stream body on " + peer_ + ": " + ec.message(), kModule));
            return fail_frames_in(failure(ec, "reading a stream", timeout));
          }
          pump(reader, frames, std::move(at_end));
        });
  }

  // Whether recvs are served from the inbox (a stream's body is being read ahead).
  bool frames_in_use() {
    std::lock_guard<std::mutex> lock(buffers_);
    return frames_in_;
  }

  // On the strand: a recv came through the strand while the inbox is in use (after the inline
  // path deferred it); it is armed: serve it from the inbox, or let the reader do it.
  void recv_from_inbox() {
    {
      std::lock_guard<std::mutex> lock(buffers_);
      recv_waiting_ = true;
    }
    hand_to_waiting();
    resume_if_paused();
  }

  static constexpr size_t kOutboxLimit = 256 * 1024;
  static constexpr size_t kInboxLimit = 256 * 1024;
  static constexpr size_t kFrameOverhead = 64;  // counted per frame, so tiny frames are bounded too
  static constexpr int kMaxInlineDepth = 16;     // nested inline completions before one defers


  Runtime& rt_;
  const Strand strand_;
  const std::string peer_;  // "connection to X" / "connection from X", for errors
  Completions completions_;
  std::unique_ptr<Conn> conn_;
  bool closed_ = false;  // the rest: strand only
  Error close_reason_;
  std::string wire_;  // a unary message as it goes on the wire (write_wire), reused

 private:
  static constexpr size_t kWireLimit = 64 * 1024;  // larger bodies are not copied

  struct PendingWrite {
    WriteStart start;
    WriteThen then;
  };

  Error arm_error(Completions::Arm armed, const char* op) const {
    if (armed == Completions::Arm::closed) return closed_locally();
    return Error::conflict(std::string("a ") + op + " is already pending on the socket for " +
                           peer_)
        .with_id(kModule);
  }
  bool refused(Completions::Arm armed, const char* op, Done& done) const {
    if (armed == Completions::Arm::ok) return false;
    done(arm_error(armed, op));
    return true;
  }

  // ---- the stream fast paths, on the caller's thread ----

  // Counts inline completions nested on this thread (a callback that sends or receives again
  // from inside its completion), so a chain of them defers to the strand instead of growing the
  // stack without bound.
  static int& inline_depth() noexcept {
    static thread_local int depth = 0;
    return depth;
  }
  struct InlineScope {
    InlineScope() noexcept { ++inline_depth(); }
    ~InlineScope() { --inline_depth(); }
    InlineScope(const InlineScope&) = delete;
    InlineScope& operator=(const InlineScope&) = delete;
  };

  // buffers_ held: appends the frame for `message` to the outbox and makes sure a write will take
  // it (posting to the strand only when none is queued).
  Error append_frame(const Message& message) {
    const std::string* error = message.header.empty() ? nullptr : find_header(message, "micro-error");
    const FrameKind kind = error != nullptr ? FrameKind::error : FrameKind::message;
    const std::string& payload = error != nullptr ? *error : message.body;
    if (payload.size() > UINT32_MAX)
      return Error(413, "a stream frame cannot exceed 4 GiB", kModule);
    append_frame_bytes(kind, payload);
    return {};
  }
  // buffers_ held, the payload under 4 GiB: as append_frame.
  void append_frame_bytes(FrameKind kind, std::string_view payload) {
    const auto header = frame_header(kind, static_cast<uint32_t>(payload.size()));
    outbox_.append(header.data(), header.size());
    outbox_.append(payload);
    if (!outbox_queued_) {
      outbox_queued_ = true;
      // Posted under the lock, so a close() after this send is posted after it (and writes it).
      net::post(strand_, [self = this->shared_from_this()] { self->queue_outbox(); });
    }
  }
  // An ASCII header name compared regardless of case with a lower-case one.
  static bool same_name(std::string_view name, std::string_view lower) noexcept {
    if (name.size() != lower.size()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != lower[i]) return false;
    }
    return true;
  }

  // A send of a frame once the stream's head is on its way: the frame joins the outbox here and
  // the send completes here while less than kOutboxLimit bytes wait; else it completes once they
  // are written (back-pressure). Returns false when the send must go through the strand.
  bool send_frame_inline(const Message& message, Done& done) {
    std::unique_lock<std::mutex> lock(buffers_);
    if (!frames_out_) return false;
    Error result;
    if (shut_) {
      result = closed_locally();
    } else if (out_closed_) {
      result = out_error_;
    } else if (send_parked_ || inline_depth() >= kMaxInlineDepth) {
      return false;  // the strand refuses a second send, or completes this one off this stack
    } else {
      result = append_frame(message);
      if (result.ok() && outbox_.size() + in_flight_ >= kOutboxLimit) {
        const auto armed = completions_.arm_send(done);
        if (armed == Completions::Arm::ok) {
          send_parked_ = true;
          return true;
        }
        result = arm_error(armed, "send");
      }
    }
    lock.unlock();
    InlineScope scope;
    done(result);
    return true;
  }

  // A recv while frames are read ahead: takes the next one from the inbox here, or the end;
  // else arms and the reader completes it. Returns false when the recv must go through the
  // strand.
  bool recv_frame_inline(MessageCallback& on_message) {
    std::unique_lock<std::mutex> lock(buffers_);
    if (!frames_in_) return false;
    if (shut_ || recv_waiting_ || inline_depth() >= kMaxInlineDepth) return false;
    if (inbox_empty() && !in_end_) {
      const auto armed = completions_.arm_recv(on_message);
      if (armed != Completions::Arm::ok) {
        lock.unlock();
        on_message(arm_error(armed, "recv"), std::nullopt);
        return true;
      }
      recv_waiting_ = true;
      resume_locked();
      return true;
    }
    Error error;
    std::optional<Message> message;
    if (!inbox_empty()) {
      Frame frame = take_frame();
      resume_locked();
      lock.unlock();
      if (frame.kind == FrameKind::error)
        error = parse_error_json(frame.payload, 500);
      else
        message = Message{{}, std::move(frame.payload)};
    } else {  // the end: clean (then the strand takes over again) or an error (again each time)
      error = in_error_;
      if (error.ok()) frames_in_ = false;
      lock.unlock();
    }
    InlineScope scope;
    on_message(error, std::move(message));
    return true;
  }

  // buffers_ held: the inbox's frames (whole, as on the wire, from inbox_at_).
  bool inbox_empty() const noexcept { return inbox_at_ == inbox_.size(); }
  std::string_view inbox_view() const noexcept {
    return std::string_view(inbox_).substr(inbox_at_);
  }
  // Takes the first frame: its kind and a view of its payload, valid until the inbox changes.
  std::pair<FrameKind, std::string_view> take_front() noexcept {
    const std::string_view at = inbox_view();
    const std::string_view payload = frame_payload_at(at);
    inbox_at_ += kFrameHeaderBytes + payload.size();
    inbox_bytes_ -= payload.size() + kFrameOverhead;
    return {frame_kind_at(at), payload};
  }
  Frame take_frame() {
    const auto [kind, payload] = take_front();
    return Frame{kind, std::string(payload)};
  }

  // buffers_ held: a paused reader resumes once the inbox is below half its limit.
  void resume_locked() {
    if (!paused_ || inbox_bytes_ > kInboxLimit / 2) return;
    paused_ = false;
    net::post(strand_, [self = this->shared_from_this()] { self->pump_stream(); });
  }
  void resume_if_paused() {
    std::lock_guard<std::mutex> lock(buffers_);
    resume_locked();
  }

  // On the strand: completes a waiting recv with the next frame, or the end.
  void hand_to_waiting() {
    std::unique_lock<std::mutex> lock(buffers_);
    if (!recv_waiting_) return;
    if (!inbox_empty()) {
      Frame frame = take_frame();
      recv_waiting_ = false;
      lock.unlock();
      if (frame.kind == FrameKind::error)
        return completions_.recv(parse_error_json(frame.payload, 500), std::nullopt);
      return completions_.recv({}, Message{{}, std::move(frame.payload)});
    }
    if (!in_end_) return;
    recv_waiting_ = false;
    const Error error = in_error_;
    if (error.ok()) frames_in_ = false;
    lock.unlock();
    completions_.recv(error, std::nullopt);
  }

  // On the strand: the body ended (ok) or failed; recv gets that after the frames before it.
  void end_frames_in(const Error& error) {
    {
      std::lock_guard<std::mutex> lock(buffers_);
      if (!frames_in_ || in_end_) return;
      in_end_ = true;
      in_error_ = error;
    }
    hand_to_waiting();
  }
  void fail_frames_in(const Error& error) {
    if (!closed_) hard_close(error);  // (closing after close(): its queued writes go on)
    end_frames_in(error);
  }

  // close() or destroy: every later operation fails with 499 (close_locally), here.
  void shut_buffers() {
    std::lock_guard<std::mutex> lock(buffers_);
    shut_ = true;
  }
  // On the strand, closing: later sends fail with `reason`.
  void close_buffers(const Error& reason) {
    std::lock_guard<std::mutex> lock(buffers_);
    out_closed_ = true;
    out_error_ = reason;
  }

  // On the strand: queues a write that takes, when it starts, every frame then in the outbox.
  void queue_outbox() {
    if (closed_) {  // nothing more is written (a close() drains only what was queued before it)
      bool unpark = false;
      {
        std::lock_guard<std::mutex> lock(buffers_);
        outbox_.clear();
        outbox_queued_ = false;
        unpark = std::exchange(send_parked_, false);
      }
      if (unpark) completions_.send(close_reason_);
      return;
    }
    auto chunk = std::make_shared<std::string>();
    queue_write(
        [this, chunk](WriteHandler handler) {
          {
            std::lock_guard<std::mutex> lock(buffers_);
            outbox_queued_ = false;
            chunk->swap(outbox_);
            in_flight_ = chunk->size();
          }
          net::async_write(conn_->stream, http::make_chunk(net::buffer(*chunk)),
                           [chunk, handler](beast::error_code ec, size_t n) { handler(ec, n); });
        },
        [self = this->shared_from_this(), this](beast::error_code ec) {
          bool unpark = false;
          Error error;
          if (ec) {
            error = failure(ec, "writing a stream", rt_.settings.write_timeout);
            hard_close(error);
          }
          {
            std::lock_guard<std::mutex> lock(buffers_);
            in_flight_ = 0;
            if (send_parked_ && (ec || outbox_.size() < kOutboxLimit)) {
              send_parked_ = false;
              unpark = true;
            }
          }
          if (unpark) completions_.send(error);
        });
  }

  void write_next() {
    if (writes_.empty() || (closed_ && !draining_)) {
      writing_ = false;
      if (draining_) finish_draining();
      return;
    }
    writing_ = true;
    conn_->watch(Watchdog::write, rt_.settings.write_timeout);
    writes_.front().start([self = this->shared_from_this(), this](beast::error_code ec, size_t) {
      if (conn_) ec = conn_->settle(Watchdog::write, ec);
      PendingWrite done = std::move(writes_.front());
      writes_.pop_front();
      writing_ = false;
      done.then(ec);
      if (ec) {
        std::deque<PendingWrite> rest;
        rest.swap(writes_);
        for (auto& write : rest) write.then(ec);
        if (draining_) finish_draining();
      } else if (!writing_) {
        write_next();
      }
    });
  }

  void finish_draining() {
    draining_ = false;
    if (conn_) conn_->close();
  }

  std::deque<PendingWrite> writes_;
  bool writing_ = false;
  bool draining_ = false;       // closed, writing what was queued before closing
  bool reading_ahead_ = false;  // a read of a stream's body is under way

  // Stream frames in and out, shared by the strand and the callers' threads (buffers_).
  std::mutex buffers_;
  bool shut_ = false;           // close() or destroy: operations fail with 499
  // out
  bool frames_out_ = false;     // sends of frames take the fast path
  bool send_closing_ = false;   // close_send was called: no fast path for this stream's sends
  bool out_closed_ = false;     // the connection closed: sends fail with out_error_
  Error out_error_;
  std::string outbox_;          // stream frames not yet handed to a write
  bool outbox_queued_ = false;  // a write (queued, or posted to be) will take the outbox
  size_t in_flight_ = 0;        // bytes of frames being written
  bool send_parked_ = false;    // a send waits for the outbox to drain
  // in
  bool frames_in_ = false;      // recvs take frames from the inbox
  std::string inbox_;          // frames read ahead, whole, as on the wire
  size_t inbox_at_ = 0;         // where the first not yet taken begins
  size_t inbox_bytes_ = 0;      // their payloads, plus kFrameOverhead each
  std::string taken_;           // the frame recv_frame_c delivers (taking_ while it does)
  bool taking_ = false;
  std::string cut_;             // frames decoded by pump, before they join the inbox (strand)
  bool in_end_ = false;         // the body ended after the inbox's frames (in_error_ says how)
  Error in_error_;
  bool recv_waiting_ = false;   // a recv is armed, for the reader to complete
  bool paused_ = false;         // the reader stopped: the inbox is full
};

}  // namespace micro::transport_http
