// Test helpers: collect values produced on other threads and wait for a condition on them with a
// deadline, instead of sleeping.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

namespace micro::testing {

template <class T>
class Collector {
 public:
  // Notifies under the lock, so a waiter that wakes and destroys the collector cannot race the
  // notification.
  void push(T value) {
    std::lock_guard<std::mutex> lock(mutex_);
    items_.push_back(std::move(value));
    changed_.notify_all();
  }
  // Waits until `pred(items)` holds or `timeout` passes; returns whether it holds.
  template <class Pred>
  bool wait_for(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return pred(items_); });
  }
  std::vector<T> snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return items_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<T> items_;
};

}  // namespace micro::testing
