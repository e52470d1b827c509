// Who may call a user's callback, and when. A socket's pending completions are each called once,
// by whichever comes first: the operation finishing (on the connection's strand) or close/destroy
// (on the caller's thread). After shut_down() returns no callback runs and none is running, except
// on the calling thread itself; that is how a socket or listener keeps "no callback after
// destroy returns" without waiting for its strand (so destroying one socket from another's
// callback, on a transport thread, cannot deadlock).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "micro/transport.hpp"

namespace micro::transport_http {

// Tracks callbacks in progress; shut() waits for them (but not for one on its own thread).
class CallbackGate {
 public:
  // Calls `fn` unless shut; returns whether it did.
  template <class F>
  bool run(F&& fn) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (shut_) return false;
      running_.push_back(std::this_thread::get_id());
    }
    call(std::forward<F>(fn));
    return true;
  }

  void shut() {
    std::unique_lock<std::mutex> lock(mutex_);
    shut_ = true;
    wait_idle(lock);
  }

 protected:
  // Calls `fn`, counted as running on this thread; mutex_ must not be held.
  template <class F>
  void call(F&& fn) noexcept {
    try {
      fn();
    } catch (...) {  // callbacks come through the C ABI and never throw; nothing to do if they do
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_.erase(std::find(running_.begin(), running_.end(), std::this_thread::get_id()));
    }
    idle_.notify_all();
  }
  void wait_idle(std::unique_lock<std::mutex>& lock) {
    const auto me = std::this_thread::get_id();
    idle_.wait(lock, [&] {
      return std::all_of(running_.begin(), running_.end(), [&](auto id) { return id == me; });
    });
  }

  std::mutex mutex_;
  std::condition_variable idle_;
  std::vector<std::thread::id> running_;
  bool shut_ = false;
};

// A socket's pending recv, send and close_send completions.
class Completions : private CallbackGate {
 public:
  enum class Arm { ok, closed, busy };

  Arm arm_recv(MessageCallback& cb) { return arm(recv_, cb); }
  Arm arm_send(Done& cb) { return arm(send_, cb); }
  Arm arm_close_send(Done& cb) { return arm(close_send_, cb); }

  bool closed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return shut_;
  }

  // Completes the pending operation, if it is still pending.
  void recv(const Error& error, std::optional<Message> message) {
    fire(recv_, error, std::move(message));
  }
  void send(const Error& error) { fire(send_, error); }
  void close_send(const Error& error) { fire(close_send_, error); }

  // From now on every operation fails; those pending complete with `reason`, here.
  void cancel_all(const Error& reason) {
    MessageCallback recv;
    Done send, close_send;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      shut_ = true;
      recv = std::move(recv_);
      send = std::move(send_);
      close_send = std::move(close_send_);
      recv_ = nullptr;
      send_ = nullptr;
      close_send_ = nullptr;
      if (recv || send || close_send) running_.push_back(std::this_thread::get_id());
    }
    if (!recv && !send && !close_send) return;
    call([&] {
      if (recv) recv(reason, std::nullopt);
      if (send) send(reason);
      if (close_send) close_send(reason);
    });
  }

  // cancel_all, then waits for callbacks running on other threads.
  void shut_down(const Error& reason) {
    cancel_all(reason);
    std::unique_lock<std::mutex> lock(mutex_);
    wait_idle(lock);
  }

 private:
  template <class Fn>
  Arm arm(Fn& slot, Fn& cb) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shut_) return Arm::closed;
    if (slot) return Arm::busy;
    slot = std::move(cb);
    return Arm::ok;
  }

  template <class Fn, class... Args>
  void fire(Fn& slot, Args&&... args) {
    Fn fn;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!slot) return;
      fn = std::move(slot);
      slot = nullptr;
      running_.push_back(std::this_thread::get_id());
    }
    call([&] { fn(std::forward<Args>(args)...); });
  }

  MessageCallback recv_;
  Done send_;
  Done close_send_;
};

}  // namespace micro::transport_http
