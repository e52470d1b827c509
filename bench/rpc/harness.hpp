// The measuring side of bench/rpc: a closed loop of `inflight` slots, each issuing a call as soon
// as its previous one returned, for a warm-up and then a fixed measured window; and the summary
// (calls per second, latency percentiles) every contender is reported with.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

namespace benchrpc {

// CPU time this process has used (every thread), in microseconds: the cost of a contender, which
// a machine shared with other work distorts far less than wall-clock rates.
inline double process_cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

using Clock = std::chrono::steady_clock;

// A 64-byte payload of printable bytes: the same text in JSON, proto and raw bodies.
inline const std::string& payload64() {
  static const std::string p = [] {
    std::string s(64, 'x');
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
  }();
  return p;
}

struct Summary {
  double qps = 0;        // completions per second in the measured window
  double p50_us = 0;     // latency of calls issued and answered inside the window
  double p99_us = 0;
  uint64_t calls = 0;    // completions in the window
  uint64_t all_calls = 0;  // completions including the warm-up
  double cpu_us_per_call = 0;  // process CPU time (user + system) over the run / all_calls
  uint64_t errors = 0;
  std::string first_error;
};

// One run of a closed loop. A contender calls started(slot) when it issues a call, and
// finished(slot) when it returns; finished() says whether to issue the next one. Each slot's
// calls complete one after another, so a slot's state needs no lock.
class Loop {
 public:
  Loop(int slots, Clock::duration warmup, Clock::duration measure)
      : slots_(slots), warmup_(warmup), measure_(measure), per_slot_(slots) {
    for (auto& s : per_slot_) s.latency_ns.reserve(1 << 16);
  }

  int slots() const { return slots_; }

  // Starts the clock; call before the first started().
  void begin() {
    const auto now = Clock::now();
    from_ = now + warmup_;
    until_ = from_ + measure_;
  }

  void started(int slot) { per_slot_[slot].start = Clock::now(); }

  // Records the call `slot` just finished; false when the slot must stop (time is up).
  bool finished(int slot) {
    auto& s = per_slot_[slot];
    const auto now = Clock::now();
    ++s.all;
    if (now >= from_ && now < until_) {
      ++s.completed;
      if (s.start >= from_)
        s.latency_ns.push_back(static_cast<uint32_t>(
            std::min<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.start)
                                  .count(),
                              UINT32_MAX)));
    }
    if (now >= until_ || stop_.load(std::memory_order_relaxed)) {
      slot_done();
      return false;
    }
    s.start = now;
    return true;
  }

  // A call failed: the slot stops and the error is reported.
  void failed(int slot, const std::string& error) {
    (void)slot;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++errors_;
      if (first_error_.empty()) first_error_ = error;
    }
    slot_done();
  }

  // The whole closed loop for a contender whose `issue(slot)` may be called from any thread:
  // starts the clock, issues every slot's first call, waits for the window to close and returns
  // the summary. Calls still running long after the window end the program (`who` says whose).
  Summary drive(const std::function<void(int)>& issue, const char* who) {
    begin();
    for (int i = 0; i < slots_; ++i) {
      started(i);
      issue(i);
    }
    if (!wait()) {
      std::cerr << who << ": calls still running after the window; giving up\n";
      std::_Exit(1);
    }
    return summary();
  }

  // Waits until every slot has stopped (bounded by the window plus `grace`).
  bool wait(Clock::duration grace = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mutex_);
    const bool all = done_.wait_until(lock, until_ + grace, [&] { return stopped_ == slots_; });
    stop_ = true;
    return all;
  }

  Summary summary() const {
    Summary out;
    std::vector<uint32_t> all;
    for (const auto& s : per_slot_) {
      out.calls += s.completed;
      out.all_calls += s.all;
      all.insert(all.end(), s.latency_ns.begin(), s.latency_ns.end());
    }
    out.qps = static_cast<double>(out.calls) / std::chrono::duration<double>(measure_).count();
    if (!all.empty()) {
      auto at = [&](double q) {
        auto it = all.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(all.size() - 1));
        std::nth_element(all.begin(), it, all.end());
        return *it / 1000.0;
      };
      out.p50_us = at(0.50);
      out.p99_us = at(0.99);
    }
    out.errors = errors_;
    out.first_error = first_error_;
    return out;
  }

 private:
  void slot_done() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stopped_;
    done_.notify_all();
  }

  struct alignas(64) Slot {
    Clock::time_point start;
    uint64_t completed = 0;
    uint64_t all = 0;
    std::vector<uint32_t> latency_ns;
  };
  const int slots_;
  const Clock::duration warmup_, measure_;
  Clock::time_point from_, until_;
  std::vector<Slot> per_slot_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::condition_variable done_;
  int stopped_ = 0;
  uint64_t errors_ = 0;
  std::string first_error_;
};

// Messages per second through one stream, measured the same way for every contender: a writer
// thread sends `count` messages back to back while the reader counts the echoes.
struct StreamSummary {
  double msgs_per_s = 0;
  uint64_t messages = 0;
  double seconds = 0;
  std::string error;
};

}  // namespace benchrpc
