// Who may call a user's callback, and when. A socket's pending completions are each called once,
// by whichever comes first: the operation finishing (on the connection's strand) or close/destroy
// (on the caller's thread). After shut_down_with() returns no callback runs and none is running,
// except on the calling thread itself; that is how a socket or listener keeps "no callback after
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

// A pending recv: the C++ callback of SocketImpl::recv, or the C one of a recv that came through
// the C ABI (HttpSocket::recv_c), which takes a received message as a view, with no copy.
class RecvSlot {
 public:
  RecvSlot() = default;
  explicit RecvSlot(MessageCallback cb) : cpp_(std::move(cb)) {}
  RecvSlot(micro_message_fn fn, void* ctx) noexcept : c_(fn), ctx_(ctx) {}
  explicit operator bool() const noexcept { return c_ != nullptr || cpp_ != nullptr; }

  void operator()(const Error& error, std::optional<Message> message) const {
    if (c_ != nullptr) return detail::call_message_fn(c_, ctx_, error, message ? &*message : nullptr);
    cpp_(error, std::move(message));
  }
  // A message received whole: a C callback gets `with_view`'s view (valid during the call), a
  // C++ one the Message `make()` returns.
  template <class WithView, class Make>
  void whole(WithView& with_view, Make& make) const {
    if (c_ != nullptr) return with_view([this](const micro_message_t& m) { c_(ctx_, nullptr, &m); });
    std::optional<Message> message;
    const Error failed = detail::guarded([&] { message = make(); });
    cpp_(failed, failed.ok() ? std::move(message) : std::nullopt);
  }
  // A message received whole, as a view valid during the call.
  void operator()(const micro_message_t& message) const {
    if (c_ != nullptr) return c_(ctx_, nullptr, &message);
    std::optional<Message> copy;
    const Error failed = detail::guarded([&] { copy = from_c(&message); });
    cpp_(failed, failed.ok() ? std::move(copy) : std::nullopt);
  }

 private:
  MessageCallback cpp_;
  micro_message_fn c_ = nullptr;
  void* ctx_ = nullptr;
};

// A pending send or close_send: a C++ Done, or the C completion of a send through the C ABI.
class DoneSlot {
 public:
  DoneSlot() = default;
  explicit DoneSlot(Done cb) : cpp_(std::move(cb)) {}
  DoneSlot(micro_done_fn fn, void* ctx) noexcept : c_(fn), ctx_(ctx) {}
  explicit operator bool() const noexcept { return c_ != nullptr || cpp_ != nullptr; }

  void operator()(const Error& error) const {
    if (c_ == nullptr) return cpp_(error);
    if (error.ok()) return c_(ctx_, nullptr);
    const micro_error_t view = error.view();
    c_(ctx_, &view);
  }

 private:
  Done cpp_;
  micro_done_fn c_ = nullptr;
  void* ctx_ = nullptr;
};

// A socket's pending recv, send and close_send completions.
class Completions : private CallbackGate {
 public:
  enum class Arm { ok, closed, busy };

  // Arm the slot; on refusal the callback is left with the caller (to be told why).
  Arm arm_recv(MessageCallback& cb) { return arm(recv_, cb); }
  Arm arm_recv(micro_message_fn fn, void* ctx) { return arm_with(recv_, [&] { return RecvSlot(fn, ctx); }); }
  Arm arm_send(Done& cb) { return arm(send_, cb); }
  Arm arm_send(micro_done_fn fn, void* ctx) { return arm_with(send_, [&] { return DoneSlot(fn, ctx); }); }
  Arm arm_close_send(Done& cb) { return arm(close_send_, cb); }

  bool closed() {
    std::lock_guard<std::mutex> lock(mutex_);
    return shut_;
  }

  // Completes the pending operation, if it is still pending.
  void recv(const Error& error, std::optional<Message> message) {
    fire(recv_, error, std::move(message));
  }
  // Completes the pending recv with a message received whole, viewed (valid during the call).
  void recv(const micro_message_t& message) { fire(recv_, message); }
  // Completes the pending recv with a message received whole, made only as the recv takes it:
  // `with_view(f)` calls f with a view, `make()` returns the Message (see RecvSlot::whole).
  template <class WithView, class Make>
  void recv_whole(WithView with_view, Make make) {
    fire_with(recv_, [&](const RecvSlot& fn) { fn.whole(with_view, make); });
  }
  void send(const Error& error) { fire(send_, error); }
  void close_send(const Error& error) { fire(close_send_, error); }

  // From now on every operation fails; those pending complete with `reason`, here.
  void cancel_all(const Error& reason) {
    cancel_all_with([&] { return reason; });
  }
  // The same with the error made by `reason()`, only when an operation is pending (a socket
  // released with nothing pending, as most are, builds no error).
  template <class Reason>
  void cancel_all_with(Reason reason) {
    RecvSlot recv;
    DoneSlot send, close_send;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      shut_ = true;
      recv = std::exchange(recv_, RecvSlot());
      send = std::exchange(send_, DoneSlot());
      close_send = std::exchange(close_send_, DoneSlot());
      if (recv || send || close_send) running_.push_back(std::this_thread::get_id());
    }
    if (!recv && !send && !close_send) return;
    call([&] {
      const Error error = reason();
      if (recv) recv(error, std::nullopt);
      if (send) send(error);
      if (close_send) close_send(error);
    });
  }

  // cancel_all_with, then waits for callbacks running on other threads.
  template <class Reason>
  void shut_down_with(Reason reason) {
    cancel_all_with(reason);
    std::unique_lock<std::mutex> lock(mutex_);
    wait_idle(lock);
  }

 private:
  template <class Slot, class Cb>
  Arm arm(Slot& slot, Cb& cb) {
    return arm_with(slot, [&] { return Slot(std::move(cb)); });
  }
  template <class Slot, class Make>
  Arm arm_with(Slot& slot, Make make) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shut_) return Arm::closed;
    if (slot) return Arm::busy;
    slot = make();
    return Arm::ok;
  }

  template <class Slot, class... Args>
  void fire(Slot& slot, Args&&... args) {
    fire_with(slot, [&](const Slot& fn) { fn(std::forward<Args>(args)...); });
  }
  // Takes the pending operation, if it is still pending, and runs `invoke(slot)`.
  template <class Slot, class Invoke>
  void fire_with(Slot& slot, Invoke invoke) {
    Slot fn;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!slot) return;
      fn = std::exchange(slot, Slot());
      running_.push_back(std::this_thread::get_id());
    }
    call([&] { invoke(fn); });
  }

  RecvSlot recv_;
  DoneSlot send_;
  DoneSlot close_send_;
};

}  // namespace micro::transport_http
