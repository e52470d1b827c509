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

#include "completions.hpp"
#include "connection.hpp"
#include "errors.hpp"
#include "frame.hpp"
#include "message_reader.hpp"
#include "runtime.hpp"

namespace micro::transport_http {

template <class Stream>
class SessionCore : public SessionBase, public std::enable_shared_from_this<SessionCore<Stream>> {
 public:
  using Conn = Connection<Stream>;

  ~SessionCore() override { rt_.sessions.remove(this); }

  // From a completion of this connection (its strand, on this thread) a unary exchange's next
  // step runs at once: no queueing, no trip through the scheduler, no other thread woken. From
  // anywhere else, and for streams (whose read-ahead would recurse frame after frame), it is
  // posted to the strand.
  void send(Message message, Done done) override {
    if (refused(completions_.arm_send(done), "send", done)) return;
    if (in_strand() && steps_inline()) return on_send(std::move(message));
    net::post(strand_, [self = this->shared_from_this(), m = std::move(message)]() mutable {
      self->on_send(std::move(m));
    });
  }
  void recv(MessageCallback on_message) override {
    const auto armed = completions_.arm_recv(on_message);
    if (armed != Completions::Arm::ok) return on_message(arm_error(armed, "recv"), std::nullopt);
    if (in_strand() && steps_inline()) return on_recv();
    net::post(strand_, [self = this->shared_from_this()] { self->on_recv(); });
  }
  void close_send(Done done) override {
    if (refused(completions_.arm_close_send(done), "close_send", done)) return;
    net::post(strand_, [self = this->shared_from_this()] { self->on_close_send(); });
  }
  void close() override {
    completions_.cancel_all(closed_locally());
    net::post(strand_, [self = this->shared_from_this()] {
      self->close_after_writes(self->closed_locally());
    });
  }
  void release() override {
    completions_.shut_down(Error(499, peer_ + " closed: the socket was destroyed", kModule));
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
    if (ec) return false;
    return true;
  }

  // Reads a message's head into `reader`: from what the buffer holds, else with Beast's
  // asynchronous read within `timeout`. Then `on_head()`, or `failed(ec)`.
  template <bool isRequest, class OnHead, class Failed>
  void read_message_head(MessageReader<isRequest>& reader, std::string& body, Millis timeout,
                 OnHead on_head, Failed failed) {
    beast::error_code parsed;
    if (parse_buffered(reader, body, parsed)) return on_head();
    if (parsed != http::error::need_more) return failed(parsed);
    conn_->tcp_layer().expires_after(timeout);
    http::async_read_header(conn_->stream, conn_->buffer, reader.parser(),
                            [self = this->shared_from_this(), on_head = std::move(on_head),
                             failed = std::move(failed)](beast::error_code ec, size_t) {
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
    conn_->tcp_layer().expires_after(timeout);
    reader.prepare_body(reader.next_body_window());
    http::async_read(conn_->stream, conn_->buffer, reader.parser(),
                     [self = this->shared_from_this(), this, &reader, &body, timeout,
                      done = std::move(done),
                      failed = std::move(failed)](beast::error_code ec, size_t) mutable {
                       reader.commit_body(body);
                       if (ec == http::error::need_buffer)
                         return read_body_into(reader, body, timeout, std::move(done),
                                               std::move(failed));
                       if (ec) return failed(ec);
                       done();
                     });
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

  // A stream send: the frame joins the outbox, which is written as one chunk with whatever else
  // waits, so a fast sender's frames share writes. The send completes at once while less than
  // kOutboxLimit bytes wait, else once they are written (back-pressure); a write that fails later
  // closes the socket, and the next operation reports why. A message with a Micro-Error header is
  // an error frame.
  void send_frame(const Message& message) {
    const std::string* error = find_header(message, "micro-error");
    const FrameKind kind = error != nullptr ? FrameKind::error : FrameKind::message;
    const std::string& payload = error != nullptr ? *error : message.body;
    if (payload.size() > UINT32_MAX)
      return completions_.send(Error(413, "a stream frame cannot exceed 4 GiB", kModule));
    const auto header = frame_header(kind, static_cast<uint32_t>(payload.size()));
    outbox_.append(header.data(), header.size());
    outbox_.append(payload);
    if (!outbox_queued_) queue_outbox();
    if (outbox_.size() + in_flight_ < kOutboxLimit) return completions_.send({});
    send_parked_ = true;
  }

  void write_last_chunk(WriteThen then) {
    queue_write(
        [this](WriteHandler handler) {
          net::async_write(conn_->stream, http::make_chunk_last(), std::move(handler));
        },
        std::move(then));
  }

  // ---- reading a stream's body: delivers the next frame to the pending recv, reading more of
  // the body when needed; `at_end` runs when the body ends cleanly.
  template <bool isRequest>
  void recv_frame(MessageReader<isRequest>& reader, FrameDecoder& frames,
                  std::function<void()> at_end) {
    Error error;
    if (auto frame = frames.next(error)) return deliver(std::move(*frame));
    if (!error.ok()) return fail(Error(error.code(), error.detail() + " on " + peer_, kModule));
    if (reader.parser().is_done()) {
      if (frames.has_partial())
        return fail(Error::bad_request("the stream on " + peer_ + " ended in the middle of a frame")
                        .with_id(kModule));
      return at_end();
    }
    const bool mid_frame = frames.has_partial();
    const Millis timeout = mid_frame ? rt_.settings.read_timeout : rt_.settings.idle_timeout;
    conn_->tcp_layer().expires_after(timeout);
    reader.prepare_body(64 * 1024);
    http::async_read_some(
        conn_->stream, conn_->buffer, reader.parser(),
        [self = this->shared_from_this(), this, &reader, &frames, at_end = std::move(at_end),
         timeout](beast::error_code ec, size_t) mutable {
          reader.commit_body(frames.bytes());
          if (ec == http::error::need_buffer) ec = {};
          if (ec) {
            if (is_parse_error(ec))
              return fail(
                  Error(400, "malformed stream body on " + peer_ + ": " + ec.message(), kModule));
            return fail(failure(ec, "reading a stream", timeout));
          }
          recv_frame(reader, frames, std::move(at_end));
        });
  }

  void deliver(Frame frame) {
    if (frame.kind == FrameKind::error)
      return completions_.recv(parse_error_json(frame.payload, 500), std::nullopt);
    completions_.recv({}, Message{{}, std::move(frame.payload)});
  }

  static constexpr size_t kOutboxLimit = 256 * 1024;

  Runtime& rt_;
  const Strand strand_;
  const std::string peer_;  // "connection to X" / "connection from X", for errors
  Completions completions_;
  std::unique_ptr<Conn> conn_;
  bool closed_ = false;  // the rest: strand only
  Error close_reason_;

 private:
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

  // Queues a write that takes, when it starts, every frame then in the outbox.
  void queue_outbox() {
    outbox_queued_ = true;
    auto chunk = std::make_shared<std::string>();
    queue_write(
        [this, chunk](WriteHandler handler) {
          outbox_queued_ = false;
          chunk->swap(outbox_);
          in_flight_ = chunk->size();
          net::async_write(conn_->stream, http::make_chunk(net::buffer(*chunk)),
                           [chunk, handler](beast::error_code ec, size_t n) { handler(ec, n); });
        },
        [self = this->shared_from_this(), this](beast::error_code ec) {
          in_flight_ = 0;
          if (ec) {
            const Error error = failure(ec, "writing a stream", rt_.settings.write_timeout);
            hard_close(error);
            if (send_parked_) {
              send_parked_ = false;
              completions_.send(error);
            }
            return;
          }
          if (send_parked_ && outbox_.size() < kOutboxLimit) {
            send_parked_ = false;
            completions_.send({});
          }
        });
  }

  void write_next() {
    if (writes_.empty() || (closed_ && !draining_)) {
      writing_ = false;
      if (draining_) finish_draining();
      return;
    }
    writing_ = true;
    conn_->tcp_layer().expires_after(rt_.settings.write_timeout);
    writes_.front().start([self = this->shared_from_this(), this](beast::error_code ec, size_t) {
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
  std::string outbox_;          // stream frames not yet handed to a write
  bool outbox_queued_ = false;  // a queued write will take the outbox when it starts
  size_t in_flight_ = 0;        // bytes of frames being written
  bool send_parked_ = false;    // a send waits for the outbox to drain
};

}  // namespace micro::transport_http
