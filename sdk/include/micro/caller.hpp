// Helpers shared by the caller-side wrappers (micro::Codec, micro::Transport, ...): the error for a
// vtable member an older module lacks, and the blocking forms built on the asynchronous calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "micro/error.hpp"

namespace micro::detail {

// The error a wrapper returns for a vtable member the module does not have (NULL, or past the end
// of a vtable built against an older SDK).
inline Error missing(const char* kind, const char* what) {
  return Error::not_implemented(std::string("this ") + kind + " module does not implement " + what +
                                " (built against an older SDK?)");
}

// Where a blocking call waits for its completion: on the waiting thread's stack, no allocation.
// A completion that runs before wait() (inline, on the calling thread: a module that completes
// at once) takes no lock: one atomic exchange publishes it and wait() finds it. Only a waiter
// that found nothing sleeps, and only then does set() lock to wake it. set() is called once;
// the completing thread touches nothing after it (wait() may return and the waiter go away as
// soon as set() has published the value to a waiter that was not asleep, or released the lock).
template <class T>
class Waiter {
 public:
  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  void set(T value) {
    value_.emplace(std::move(value));
    if (state_.exchange(kSet, std::memory_order_acq_rel) != kSleeping) return;
    // A sleeping waiter returns only once it sees woken_, which it reads under the lock: it
    // cannot be gone before this unlocks (a spurious wake-up does not let it return early).
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
    ready_.notify_one();
  }
  T wait() {
    if (state_.load(std::memory_order_acquire) != kSet) {
      std::unique_lock<std::mutex> lock(mutex_);
      int expected = kEmpty;
      if (state_.compare_exchange_strong(expected, kSleeping, std::memory_order_acq_rel))
        ready_.wait(lock, [this] { return woken_; });
    }
    return std::move(*value_);
  }

 private:
  static constexpr int kEmpty = 0, kSleeping = 1, kSet = 2;
  std::atomic<int> state_{kEmpty};
  std::mutex mutex_;
  std::condition_variable ready_;
  bool woken_ = false;  // under mutex_: set() has finished with a sleeping waiter
  std::optional<T> value_;
};

// Starts an operation that completes with a Done and blocks until it has. Never call a blocking
// form on a thread its completion needs (a module's callback thread): it would wait forever.
template <class Start>
Error wait_done(Start&& start) {
  Waiter<Error> waiter;
  start([&waiter](const Error& error) { waiter.set(error); });
  return waiter.wait();
}

// The same for an operation whose completion also carries a value, converted to T.
template <class T, class Start>
Result<T> wait_result(Start&& start) {
  Waiter<Result<T>> waiter;
  start([&waiter](const Error& error, auto&& value) {
    waiter.set(Result<T>{error, T(std::forward<decltype(value)>(value))});
  });
  return waiter.wait();
}

}  // namespace micro::detail
