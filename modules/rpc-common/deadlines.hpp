// Deadlines of many calls on one timer, shared by client-rpc and server-rpc (header only; each
// module compiles its own copy). Arming a deadline is a map insert and disarming it an erase,
// under a lock, from any thread; the timer's thread is only woken (one post) when a new deadline
// comes before every other, which with one timeout for all calls happens for the first only. A
// timer per call would cost a wake-up of the timer's thread to arm it and another to cancel it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace micro::rpc_common {

// T::deadline_passed() runs on the io_context's thread for each call whose deadline passed
// before it was removed. Call stop() before that thread stops.
template <class T>
class Deadlines {
 public:
  using Clock = std::chrono::steady_clock;
  using Key = std::pair<Clock::time_point, uint64_t>;

  explicit Deadlines(boost::asio::io_context& io) : io_(io), timer_(io) {}

  Key add(Clock::time_point at, std::weak_ptr<T> call) {
    bool rearm = false;
    Key key;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      key = {at, next_id_++};
      entries_.emplace(key, std::move(call));
      if (!stopped_ && (!armed_ || at < armed_for_)) {
        armed_ = true;
        armed_for_ = at;
        rearm = true;
      }
    }
    if (rearm) boost::asio::post(io_, [this] { arm(); });
    return key;
  }
  void remove(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.erase(key);
  }
  // Before the timer's thread stops: no deadline fires after this.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopped_ = true;
      entries_.clear();
    }
    boost::asio::post(io_, [this] { timer_.cancel(); });
  }

 private:
  // On the client's thread: the timer waits for the earliest deadline.
  void arm() {
    Clock::time_point at;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_ || entries_.empty()) {
        armed_ = false;
        return;
      }
      at = entries_.begin()->first.first;
      armed_ = true;
      armed_for_ = at;
    }
    timer_.expires_at(at);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec == boost::asio::error::operation_aborted) return;  // re-armed (or stopped) meanwhile
      fire();
    });
  }
  void fire() {
    std::vector<std::shared_ptr<T>> due;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      while (!entries_.empty() && entries_.begin()->first.first <= now) {
        if (auto call = entries_.begin()->second.lock()) due.push_back(std::move(call));
        entries_.erase(entries_.begin());
      }
    }
    for (auto& call : due) call->deadline_passed();
    arm();
  }

  boost::asio::io_context& io_;
  boost::asio::steady_timer timer_;  // used on the client's thread only
  std::mutex mutex_;
  std::map<Key, std::weak_ptr<T>> entries_;
  uint64_t next_id_ = 0;
  bool armed_ = false, stopped_ = false;
  Clock::time_point armed_for_;
};

}  // namespace micro::rpc_common
