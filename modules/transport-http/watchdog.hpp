// Read and write deadlines of one connection, kept by one lazily re-armed timer.
//
// Beast's tcp_stream times each operation with a timer of its own: every read or write allocates
// a wait, schedules it (often rewriting the kernel's timerfd), cancels it on completion and runs
// the cancelled wait's handler through the scheduler. On a unary call that was about a tenth of
// the latency at one call in flight. Here an operation only records when it must end (a clock
// read and a store); the timer is armed once for the earliest deadline and, when it fires early
// because the deadline moved later, re-arms itself for the new one. A timer therefore fires about
// once per timeout period on a busy connection, and an operation that overruns its deadline
// finds the connection closed: it completes with operation_aborted, which `timed_out()` turns
// back into the timeout it was (see Connection::translate).
//
// Threads: start/finish and the timer's handler run on the connection's strand (the timer's
// executor). detach() may run on any thread; the mutex orders it against a firing handler, so a
// connection being destroyed elsewhere is never touched after it is gone.
#pragma once

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace micro::transport_http {

class Watchdog : public std::enable_shared_from_this<Watchdog> {
 public:
  using Clock = std::chrono::steady_clock;
  enum Kind { read = 0, write = 1 };

  template <class Executor>
  Watchdog(const Executor& executor, std::function<void()> expire)
      : timer_(executor), expire_(std::move(expire)) {}

  // An operation of `kind` starts and must end within `timeout`.
  template <class Duration>
  void start(Kind kind, Duration timeout) {
    const auto at = Clock::now() + timeout;
    deadline_[kind] = at;
    if (!armed_ || at < armed_at_) arm(at);
  }
  // It ended (in any way): its deadline no longer holds.
  void finish(Kind kind) noexcept { deadline_[kind] = Clock::time_point::max(); }

  // True once a deadline passed and the connection was closed for it.
  bool timed_out() const noexcept { return timed_out_; }

  // The connection is going: the timer will not touch it again.
  void detach() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    expire_ = nullptr;
    timer_.cancel();
  }

 private:
  void arm(Clock::time_point at) {
    armed_ = true;
    armed_at_ = at;
    timer_.expires_at(at);  // a wait already pending completes with operation_aborted: ignored
    timer_.async_wait([self = shared_from_this(), generation = ++generation_](
                          const boost::system::error_code&) { self->fired(generation); });
  }

  void fired(uint64_t generation) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation != generation_ || !expire_) return;  // re-armed since, or detached
    armed_ = false;
    const auto next = std::min(deadline_[read], deadline_[write]);
    if (next == Clock::time_point::max()) return;  // nothing pending: the next start arms
    if (next > Clock::now()) return arm(next);
    timed_out_ = true;
    expire_();
  }

  boost::asio::steady_timer timer_;
  std::mutex mutex_;
  std::function<void()> expire_;  // closes the connection
  std::array<Clock::time_point, 2> deadline_{Clock::time_point::max(), Clock::time_point::max()};
  Clock::time_point armed_at_{};
  bool armed_ = false;
  bool timed_out_ = false;
  uint64_t generation_ = 0;
};

}  // namespace micro::transport_http
