// What every object of one transport instance shares: the io_context and its threads' settings,
// the logger, the pool, and the registry of live sessions (closed when the transport goes).
//
// Threading model (the one place it is described; README.md repeats it for users): `threads`
// io_contexts, each run by one thread of its own; a connection lives on one of them (picked in
// turn when it is dialed or accepted). Each connection has a strand (its stream's executor);
// every state change of a session happens on it, so a session needs no lock but the one guarding
// its pending user callbacks (Completions). Calls from users (any thread) post to the strand.
// (One io_context shared by several threads made every post wake another thread, so the
// handlers of one exchange ping-ponged between threads: 2.2x the cost per call at 32 in flight.)
// Completions and accept callbacks run on transport threads, except that close() and destroy
// complete pending operations with 499 on the calling thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "micro/log.hpp"
#include "micro/transport.hpp"
#include "pool.hpp"
#include "settings.hpp"
#include "tls.hpp"

namespace micro::transport_http {

// What the transport closes when it goes away: sessions, and HTTP/2 connections.
class Abortable {
 public:
  virtual ~Abortable() = default;
  // The transport is going away: close now.
  virtual void abort() = 0;
};

// A connection's socket-facing side, as the SocketImpl facade (socket.hpp) and the transport see
// it. Public methods may be called from any thread.
class SessionBase : public Abortable {
 public:
  virtual void send(Message message, Done done) = 0;
  virtual void recv(MessageCallback on_message) = 0;
  virtual void close_send(Done done) = 0;
  // Pending operations complete with 499 (here); the connection closes.
  virtual void close() = 0;
  // The facade is being destroyed: like close, then waits for callbacks running elsewhere; the
  // connection is closed, or given to the pool when it is clean.
  virtual void release() = 0;
  // Fixed once the socket is handed out.
  virtual std::string local_address() const = 0;
  virtual std::string remote_address() const = 0;
};

// A session's fast paths for a C call on its own completion (HttpSocket::send_c / recv_c): a
// stream frame that completes at once, and (HTTP/1.1 sessions) a unary message, taken with no
// Message copy and nothing boxed. False, having done nothing, when the call must take the
// ordinary path.
class CFastPath {
 public:
  virtual bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept = 0;
  virtual bool recv_c(micro_message_fn on_message, void* ctx) noexcept = 0;

 protected:
  ~CFastPath() = default;
};

// Live sessions, so the transport can close them all before its threads stop.
class SessionRegistry {
 public:
  void add(const std::shared_ptr<Abortable>& session) {
    std::lock_guard<std::mutex> lock(mutex_);
    sessions_[session.get()] = session;
  }
  void remove(Abortable* session) {
    std::lock_guard<std::mutex> lock(mutex_);
    sessions_.erase(session);
  }
  void abort_all() {
    std::vector<std::shared_ptr<Abortable>> live;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [raw, weak] : sessions_)
        if (auto session = weak.lock()) live.push_back(std::move(session));
    }
    for (auto& session : live) session->abort();
  }

 private:
  std::mutex mutex_;
  std::unordered_map<Abortable*, std::weak_ptr<Abortable>> sessions_;
};

class H2ClientPool;

struct Runtime {
  Runtime(const Settings& s, const Logger& logger);
  ~Runtime();

  // True on one of this transport's threads (where waiting for a strand could deadlock).
  bool on_transport_thread() noexcept {
    for (auto& context : contexts)
      if (context->get_executor().running_in_this_thread()) return true;
    return false;
  }
  // The io_context for a new connection: each in turn.
  net::io_context& next_context() noexcept {
    return *contexts[next_.fetch_add(1, std::memory_order_relaxed) % contexts.size()];
  }

  // One per thread (at least one); `ioc` is the first, for what belongs to no connection (the
  // pools' timers, resolving a listener's address).
  std::vector<std::unique_ptr<net::io_context>> contexts;
  net::io_context& ioc;
  const Settings settings;
  const Logger log;
  SessionRegistry sessions;
  ConnectionPool<TcpStream> pool;
  // TLS: the contexts (null when not configured), HTTP/1.1 connections, HTTP/2 connections.
  std::unique_ptr<net::ssl::context> tls_client;
  std::unique_ptr<net::ssl::context> tls_server;
  ConnectionPool<TlsStream> tls_pool;
  std::unique_ptr<H2ClientPool> h2_pool;

  template <class Stream>
  ConnectionPool<Stream>& pool_for() {
    if constexpr (kIsTls<Stream>)
      return tls_pool;
    else
      return pool;
  }
  // Closes every pooled connection (the transport is going away).
  void close_pools();

 private:
  std::atomic<size_t> next_{0};
};

}  // namespace micro::transport_http
