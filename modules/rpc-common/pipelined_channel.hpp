// Write-behind and read-ahead for a stream over a transport socket, so that a blocking caller
// does not wait for a transport thread on every message:
//  - send() completes as soon as the message is queued, while at most kWindow are queued; the
//    queue is written in order, one transport send at a time, each started from the previous
//    one's completion (on the transport's thread, no hop);
//  - a transport recv is kept outstanding while fewer than kWindow messages wait, so recv()
//    usually finds its message already there.
// An error ends the direction it happened on: a send error reaches the next send and
// close_send; a recv error (or the end of the stream) reaches recv after the messages that
// arrived before it. Thread-safe; user callbacks run outside the lock.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "micro/transport.hpp"

namespace micro::rpc_common {

class PipelinedChannel : public std::enable_shared_from_this<PipelinedChannel> {
 public:
  static constexpr size_t kWindow = 256;

  // `socket` must outlive every operation: call stop() and then destroy the socket.
  explicit PipelinedChannel(micro::Socket& socket) : socket_(socket) {}

  // Starts reading ahead (for a client, after the response head was received).
  void start_reading() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_ || reading_ || ended_) return;
      reading_ = true;
    }
    read_next();
  }

  void send(micro::Message message, micro::Done done) {
    bool start = false, now = false;
    micro::Error error;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!send_error_.ok() || stopped_ || close_requested_) {
        error = !send_error_.ok()     ? send_error_
                : close_requested_ ? micro::Error::bad_request("send after close_send")
                                   : micro::Error(MICRO_CODE_CLIENT_CLOSED, "the stream is closed");
      } else {
        out_.push_back(std::move(message));
        start = !writing_;
        writing_ = true;
        now = out_.size() <= kWindow;
        if (!now) blocked_send_ = std::move(done);
      }
    }
    if (!error.ok()) return done(error);
    if (start) write_next();
    if (now) done({});
  }

  // Half-closes once every queued message is written.
  void close_send(micro::Done done) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!send_error_.ok()) {
        const micro::Error e = send_error_;
        return done(e);
      }
      close_requested_ = true;
      if (writing_) {
        close_done_ = std::move(done);
        return;
      }
    }
    socket_.close_send(std::move(done));
  }

  void recv(micro::MessageCallback on_message) {
    std::optional<micro::Message> message;
    bool resume = false;
    micro::Error error;
    bool end = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!in_.empty()) {
        message = std::move(in_.front());
        in_.pop_front();
        if (!reading_ && !ended_ && !stopped_) resume = reading_ = true;
      } else if (ended_) {
        end = true;
        error = recv_error_;
      } else {
        waiting_ = std::move(on_message);
        return;
      }
    }
    if (resume) read_next();
    if (end) return on_message(error, std::nullopt);
    on_message({}, std::move(message));
  }

  // Drops what has arrived and what still arrives until the peer ends the stream (or the socket
  // fails), then calls `on_end` once, on a transport thread (or here, if it has already ended).
  // recv must not be called after this.
  void discard(std::function<void()> on_end) {
    bool now = false, start = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_.clear();
      waiting_ = nullptr;
      if (ended_) {
        now = true;
      } else {
        discard_end_ = std::move(on_end);
        if (!reading_ && !stopped_) start = reading_ = true;
      }
    }
    if (now) return on_end();
    if (start) read_next();
  }

  // No transport operation is started after this; then destroy the socket (which completes the
  // pending ones).
  void stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
  }

 private:
  void write_next() {
    micro::Message message;
    micro::Done close_done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (out_.empty() || stopped_) {
        writing_ = false;
        if (out_.empty() && close_done_ && !stopped_) close_done = std::move(close_done_);
        if (!close_done) return;
      } else {
        message = std::move(out_.front());
        out_.pop_front();
      }
    }
    if (close_done) return socket_.close_send(std::move(close_done));
    socket_.send(message, [self = shared_from_this()](const micro::Error& e) { self->written(e); });
  }

  void written(const micro::Error& error) {
    micro::Done unblocked, close_done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error.ok()) {
        send_error_ = error;
        out_.clear();
        writing_ = false;
        unblocked = std::move(blocked_send_);
        close_done = std::move(close_done_);
      } else if (blocked_send_ && out_.size() <= kWindow) {
        unblocked = std::move(blocked_send_);
      }
    }
    if (unblocked) unblocked(error);
    if (close_done) close_done(error);
    if (error.ok()) write_next();
  }

  void read_next() {
    socket_.recv([self = shared_from_this()](const micro::Error& e,
                                             std::optional<micro::Message> m) {
      self->arrived(e, std::move(m));
    });
  }

  void arrived(const micro::Error& error, std::optional<micro::Message> message) {
    micro::MessageCallback deliver;
    std::optional<micro::Message> delivered;
    micro::Error delivered_error;
    std::function<void()> discarded;
    bool more = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const bool end = !error.ok() || !message;
      if (end) {
        ended_ = true;
        recv_error_ = error;
        reading_ = false;
        discarded = std::move(discard_end_);
      } else if (discard_end_) {  // draining: drop it and read on until the end
        more = reading_ = !stopped_;
      } else {
        in_.push_back(std::move(*message));
        more = in_.size() < kWindow && !stopped_;
        reading_ = more;
      }
      if (waiting_) {
        if (!in_.empty()) {
          deliver = std::move(waiting_);
          delivered = std::move(in_.front());
          in_.pop_front();
          if (!more && !ended_ && !stopped_) more = reading_ = true;
        } else if (ended_) {
          deliver = std::move(waiting_);
          delivered_error = recv_error_;
        }
      }
    }
    if (more) read_next();
    if (deliver) deliver(delivered_error, std::move(delivered));
    if (discarded) discarded();
  }

  micro::Socket& socket_;
  std::mutex mutex_;
  // sending
  std::deque<micro::Message> out_;
  bool writing_ = false;            // a transport send is under way (or about to be)
  micro::Done blocked_send_;        // a send waiting for room in the window
  bool close_requested_ = false;
  micro::Done close_done_;          // close_send waiting for the queue to drain
  micro::Error send_error_;
  // receiving
  std::deque<micro::Message> in_;
  bool reading_ = false;            // a transport recv is outstanding
  bool ended_ = false;              // the peer ended (recv_error_ says how)
  micro::Error recv_error_;
  micro::MessageCallback waiting_;  // a recv waiting for a message
  std::function<void()> discard_end_;  // set: draining, called at the end
  bool stopped_ = false;
};

}  // namespace micro::rpc_common
