// Idle client connections per address, for unary calls: a socket whose exchange completed
// cleanly gives its connection back when destroyed, and dial takes one (newest first) before
// connecting. Connections idle longer than pool_idle are closed by a timer. Thread-safe.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "connection.hpp"

namespace micro::transport_http {

template <class Stream>
class ConnectionPool {
 public:
  using Conn = std::unique_ptr<Connection<Stream>>;
  using Clock = std::chrono::steady_clock;

  ConnectionPool(net::io_context& ioc, size_t per_address, Clock::duration max_idle)
      : per_address_(per_address),
        max_idle_(max_idle),
        strand_(net::make_strand(ioc)),
        timer_(strand_) {}

  // An open idle connection to `address`, or null. Connections found closed are dropped.
  Conn take(const std::string& address) {
    std::vector<Conn> dead;
    Conn found;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = idle_.find(address);
      if (it == idle_.end()) return nullptr;
      auto& list = it->second;
      const auto now = Clock::now();
      while (!list.empty() && !found) {
        Idle entry = std::move(list.back());
        list.pop_back();
        if (now - entry.since < max_idle_ && entry.conn->still_open())
          found = std::move(entry.conn);
        else
          dead.push_back(std::move(entry.conn));
      }
      if (list.empty()) idle_.erase(it);
    }
    for (auto& conn : dead) conn->close();
    return found;
  }

  // Keeps `conn` (idle, nothing pending on it) for the next dial to `address`, or closes it when
  // the pool is full or closed.
  void put(const std::string& address, Conn conn) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& list = idle_[address];
      if (!closed_ && list.size() < per_address_) {
        list.push_back({std::move(conn), Clock::now()});
        if (!sweep_armed_) {
          sweep_armed_ = true;
          net::post(strand_, [this] { sweep(); });
        }
        return;
      }
      if (list.empty()) idle_.erase(address);
    }
    conn->close();
  }

  // Closes every idle connection; later puts close theirs. The owner then lets the I/O threads
  // finish (the timer's cancellation runs there) before destroying the pool.
  void close() {
    std::map<std::string, std::vector<Idle>> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      idle.swap(idle_);
    }
    for (auto& [address, list] : idle)
      for (auto& entry : list) entry.conn->close();
    net::post(strand_, [this] { timer_.cancel(); });
  }

  size_t idle_count(const std::string& address) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = idle_.find(address);
    return it == idle_.end() ? 0 : it->second.size();
  }

 private:
  struct Idle {
    Conn conn;
    Clock::time_point since;
  };

  // On the strand: closes expired connections and waits for the next to expire.
  void sweep() {
    std::vector<Conn> expired;
    Clock::time_point next = Clock::time_point::max();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      for (auto it = idle_.begin(); it != idle_.end();) {
        auto& list = it->second;
        for (auto e = list.begin(); e != list.end();) {
          if (now - e->since >= max_idle_) {
            expired.push_back(std::move(e->conn));
            e = list.erase(e);
          } else {
            next = std::min(next, e->since + max_idle_);
            ++e;
          }
        }
        it = list.empty() ? idle_.erase(it) : std::next(it);
      }
      sweep_armed_ = !closed_ && next != Clock::time_point::max();
    }
    for (auto& conn : expired) conn->close();
    if (next == Clock::time_point::max()) return;
    timer_.expires_at(next);
    timer_.async_wait([this](const beast::error_code& ec) {
      if (!ec) sweep();
    });
  }

  const size_t per_address_;
  const Clock::duration max_idle_;
  std::mutex mutex_;
  std::map<std::string, std::vector<Idle>> idle_;
  bool closed_ = false;
  bool sweep_armed_ = false;
  net::strand<net::io_context::executor_type> strand_;
  net::steady_timer timer_;  // used on strand_ only
};

}  // namespace micro::transport_http
