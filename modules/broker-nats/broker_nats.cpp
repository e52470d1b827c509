// broker-nats: the broker interface over the NATS client protocol (protocol.hpp), on one Asio
// I/O thread per instance.
//
// Threading (README.md repeats it for users): every socket operation, timer, parser call,
// delivery and completion runs on the instance's I/O thread. Callers on any thread touch only the
// state under `mutex_` (the outgoing buffers, the subscription table, the connection flag) and
// post work to the I/O thread. A subscription's handler runs under that subscription's own
// mutex, which unsubscribe() takes too, so after unsubscribe() returns no delivery runs.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "micro/broker.hpp"
#include "protocol.hpp"
#include "settings.hpp"

namespace micro::broker_nats {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

Error unavailable(std::string detail) { return Error::unavailable("nats: " + std::move(detail)); }

// One TCP connection attempt and, if it succeeds, the connection; replaced on every reconnect.
// Callbacks that find their Conn is no longer the current one do nothing.
struct Conn {
  explicit Conn(asio::io_context& io, std::string server) : socket(io), server(std::move(server)) {}
  tcp::socket socket;
  std::string server;  // nats://host:port, for messages
  bool sent_connect = false;
  std::array<char, 64 * 1024> read_buffer{};
};

struct Sub {
  std::string topic;
  std::string queue;
  BrokerHandler handler;
  std::mutex delivering;           // held while the handler runs
  std::atomic<bool> active{true};  // cleared by unsubscribe
};

class NatsBroker final : public BrokerPlugin, private ProtocolEvents {
 public:
  static std::vector<OptionSpec> options() { return Settings::option_specs(); }

  explicit NatsBroker(const CreateContext& ctx)
      : settings_(Settings::from(ctx.options())),
        log_(ctx.logger()),
        connect_name_(settings_.name.empty() ? ctx.service().name : settings_.name),
        work_(asio::make_work_guard(io_)) {
    for (const auto& s : settings_.servers) address_ += (address_.empty() ? "" : ",") + s.text();
    thread_ = std::thread([this] { run(); });
    // The stack does not call connect(): start at once, so subscribers and publishers created
    // with the stack work as soon as the server answers.
    asio::post(io_, [this] { start_connect(); });
  }

  // Every subscription is gone (the contract). Closes the connection; publishes not yet written
  // fail with 503. Not from the instance's own I/O thread.
  ~NatsBroker() override {
    asio::post(io_, [this] { shut_down(unavailable("the broker is being destroyed")); });
    work_.reset();
    thread_.join();
  }

  void connect(Done done) override {
    asio::post(io_, [this, done = std::move(done)]() mutable {
      bool restart = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        restart = stopped_;
        stopped_ = false;
        if (connected_) return done({});
      }
      if (restart) start_connect();
      const uint64_t id = ++next_waiter_;
      auto timer = std::make_shared<asio::steady_timer>(io_, settings_.connect_timeout);
      connect_waiters_.emplace(id, Waiter{std::move(done), timer});
      timer->async_wait([this, id](const error_code&) {
        auto it = connect_waiters_.find(id);
        if (it == connect_waiters_.end()) return;
        Done waiter = std::move(it->second.done);
        connect_waiters_.erase(it);
        waiter(unavailable("not connected to " + address_ + " after " +
                           std::to_string(settings_.connect_timeout.count()) + " ms (" +
                           last_error_text() +
                           "); still trying in the background: publishes are buffered up to "
                           "max_pending_bytes and subscriptions start once connected"));
      });
    });
  }

  void disconnect(Done done) override {
    asio::post(io_, [this, done = std::move(done)]() mutable {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stopped_ = true;
      }
      reconnect_timer_.cancel();
      if (phase_ != Phase::connected) {
        shut_down(unavailable("the broker was disconnected before it reached " + address_));
        return done({});
      }
      disconnect_waiters_.push_back(std::move(done));
      flush();  // closes once everything queued is written
    });
  }

  void publish(const std::string& topic, Message message, Done done) override {
    Error error = check_name(topic, "topic");
    std::string header_block;
    if (error.ok()) error = encode_headers(message.header, header_block);
    if (!error.ok()) return done(error);
    const uint64_t size = header_block.size() + message.body.size();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) error = unavailable("the broker is disconnected: call connect() first");
      else if (size > max_payload_)
        error = Error(413, "nats: a message of " + std::to_string(size) +
                               " bytes (headers + body) exceeds the server's max_payload of " +
                               std::to_string(max_payload_) + " bytes");
      else if (!header_block.empty() && !server_headers_)
        error = Error::not_implemented("nats: the server at " + current_server_ +
                                       " does not support headers (NATS < 2.2); publish without "
                                       "headers or upgrade the server");
      else if ((!connected_ || !pub_out_.empty()) &&
               pub_out_.size() + size + topic.size() + 32 > settings_.max_pending_bytes)
        error = unavailable(
            (connected_ ? std::string("the server is not keeping up")
                        : "not connected to " + address_ + " (" + last_error_text_locked() + ")") +
            ": " + std::to_string(pub_out_.size()) +
            " bytes of publishes already wait to be written (max_pending_bytes = " +
            std::to_string(settings_.max_pending_bytes) + "); this one is dropped");
      if (error.ok()) {
        append_publish(pub_out_, topic, header_block, message.body);
        pub_done_.push_back(std::move(done));
        want_flush_locked();
        return;
      }
    }
    done(error);
  }

  uint64_t subscribe(const std::string& topic, const SubscribeOptions& options,
                     BrokerHandler handler) override {
    Error error = check_name(topic, "topic");
    if (error.ok() && !options.queue.empty()) error = check_name(options.queue, "queue group");
    if (!error.ok()) throw Exception(error);
    auto sub = std::make_shared<Sub>();
    sub->topic = topic;
    sub->queue = options.queue;
    sub->handler = std::move(handler);
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t sid = ++next_sid_;
    subs_.emplace(sid, sub);
    if (connected_) {  // otherwise the SUB goes out once connected, with every other one
      append_subscribe(control_out_, topic, options.queue, sid);
      want_flush_locked();
    }
    return sid;
  }

  void unsubscribe(uint64_t sid) override {
    std::shared_ptr<Sub> sub;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = subs_.find(sid);
      if (it == subs_.end()) return;
      sub = std::move(it->second);
      subs_.erase(it);
      if (connected_) {
        append_unsubscribe(control_out_, sid);
        want_flush_locked();
      }
    }
    // On the I/O thread no delivery of `sub` can be running except the caller's own (which must
    // not wait for itself); elsewhere wait for a running one to finish.
    if (io_.get_executor().running_in_this_thread()) {
      sub->active = false;
    } else {
      std::lock_guard<std::mutex> delivering(sub->delivering);
      sub->active = false;
    }
  }

  std::string_view address() const override { return address_; }

 private:
  enum class Phase { idle, connecting, handshaking, connected };

  void run() noexcept {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        log_.error("uncaught exception on the I/O thread: ", e.what());
      } catch (...) {
        log_.error("uncaught exception of unknown type on the I/O thread");
      }
    }
  }

  std::string last_error_text_locked() const {
    return last_error_.ok() ? std::string("no attempt finished yet")
                            : "last error: " + last_error_.detail();
  }
  std::string last_error_text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_text_locked();
  }

  // With mutex_ held: make sure a flush runs soon on the I/O thread.
  void want_flush_locked() {
    if (!connected_ || flush_posted_) return;
    flush_posted_ = true;
    asio::post(io_, [this] { flush(); });
  }

  // ---- connecting (I/O thread) ---------------------------------------------------------------

  void start_connect() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) return;
    }
    const ServerUrl& url = settings_.servers[server_index_ % settings_.servers.size()];
    auto conn = std::make_shared<Conn>(io_, url.text());
    conn_ = conn;
    phase_ = Phase::connecting;
    parser_.reset();
    handshake_timer_.expires_after(settings_.connect_timeout);
    handshake_timer_.async_wait([this, conn](const error_code& ec) {
      if (ec || conn != conn_) return;
      fail_connection(conn, unavailable(conn->server + " did not complete the handshake within " +
                                        std::to_string(settings_.connect_timeout.count()) +
                                        " ms"));
    });
    resolver_.async_resolve(url.host, url.port, [this, conn](const error_code& ec,
                                                             tcp::resolver::results_type found) {
      if (conn != conn_) return;
      if (ec) return fail_connection(conn, unavailable("cannot resolve " + conn->server + ": " +
                                                       ec.message()));
      asio::async_connect(conn->socket, found, [this, conn](const error_code& ec,
                                                            const tcp::endpoint&) {
        if (conn != conn_) return;
        if (ec) return fail_connection(conn, unavailable("cannot connect to " + conn->server +
                                                         ": " + ec.message()));
        error_code ignored;
        conn->socket.set_option(tcp::no_delay(true), ignored);
        phase_ = Phase::handshaking;
        read_more(conn);
      });
    });
  }

  void read_more(const std::shared_ptr<Conn>& conn) {
    conn->socket.async_read_some(
        asio::buffer(conn->read_buffer), [this, conn](const error_code& ec, size_t n) {
          if (conn != conn_) return;
          if (ec)
            return fail_connection(
                conn, unavailable("the connection to " + conn->server + " was lost: " +
                                  (ec == asio::error::eof ? "the server closed it" : ec.message())));
          Error error = parser_.feed(std::string_view(conn->read_buffer.data(), n), *this);
          if (conn != conn_) return;  // a handler disconnected
          if (!error.ok()) return fail_connection(conn, error);
          read_more(conn);
        });
  }

  void became_connected() {
    handshake_timer_.cancel();
    phase_ = Phase::connected;
    attempts_ = 0;
    pings_out_ = 0;
    size_t resubscribed = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      connected_ = true;
      last_error_ = {};
      std::string subs;
      for (const auto& [sid, sub] : subs_) append_subscribe(subs, sub->topic, sub->queue, sid);
      resubscribed = subs_.size();
      control_out_.insert(0, subs);
      want_flush_locked();
    }
    log_.info("connected to ", conn_->server, " (server ", info_.server_id, " ",
              info_.version, ", max_payload ", info_.max_payload, ", headers ",
              info_.headers ? "yes" : "no", "); ", resubscribed, " subscription(s) sent");
    complete_connect_waiters({});
    schedule_ping(conn_);
  }

  void schedule_ping(const std::shared_ptr<Conn>& conn) {
    ping_timer_.expires_after(settings_.ping_interval);
    ping_timer_.async_wait([this, conn](const error_code& ec) {
      if (ec || conn != conn_) return;
      if (pings_out_ >= settings_.max_pings_out)
        return fail_connection(conn, unavailable(conn->server + " answered none of " +
                                                 std::to_string(pings_out_) + " PINGs"));
      ++pings_out_;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        control_out_ += "PING\r\n";
        want_flush_locked();
      }
      schedule_ping(conn);
    });
  }

  // Drops the connection (if `conn` is still the current one) and schedules the next attempt.
  void fail_connection(const std::shared_ptr<Conn>& conn, const Error& error) {
    if (conn != conn_) return;
    const bool was_connected = phase_ == Phase::connected;
    close_connection();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_ = error;
    }
    if (was_connected || attempts_ == 0)
      log_.warn(error.detail(), "; reconnecting");
    else
      log_.debug(error.detail(), "; attempt ", attempts_ + 1, " failed");
    schedule_reconnect();
  }

  void close_connection() {
    handshake_timer_.cancel();
    ping_timer_.cancel();
    resolver_.cancel();
    if (conn_) {
      error_code ignored;
      // Unread input would make close() send a reset, which may discard what was just written.
      char sink[4096];
      while (conn_->socket.is_open() && conn_->socket.available(ignored) > 0 && !ignored &&
             conn_->socket.read_some(asio::buffer(sink), ignored) > 0 && !ignored) {
      }
      conn_->socket.shutdown(tcp::socket::shutdown_both, ignored);
      conn_->socket.close(ignored);
    }
    conn_.reset();
    phase_ = Phase::idle;
    parser_.reset();
    std::lock_guard<std::mutex> lock(mutex_);
    connected_ = false;
    control_out_.clear();  // SUBs are rebuilt from subs_ on the next connection
  }

  void schedule_reconnect() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) return;
    }
    const int doublings = attempts_ < 16 ? attempts_ : 16;
    auto wait = settings_.reconnect_wait * (int64_t{1} << doublings);
    if (wait > settings_.reconnect_wait_max) wait = settings_.reconnect_wait_max;
    wait += Millis(std::uniform_int_distribution<int64_t>(0, wait.count() / 10)(rng_));
    ++attempts_;
    ++server_index_;
    reconnect_timer_.expires_after(wait);
    reconnect_timer_.async_wait([this](const error_code& ec) {
      if (!ec) start_connect();
    });
  }

  void complete_connect_waiters(const Error& result) {
    auto waiters = std::move(connect_waiters_);
    connect_waiters_.clear();
    for (auto& [id, waiter] : waiters) {
      waiter.timer->cancel();
      waiter.done(result);
    }
  }

  // Closes everything for good (destroy, or disconnect when not connected): pending publishes
  // and connect() waiters fail with `why`.
  void shut_down(const Error& why) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopped_ = true;
    }
    reconnect_timer_.cancel();
    close_connection();
    std::vector<Done> dones;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      dones.swap(pub_done_);
      pub_out_.clear();
    }
    for (auto& done : dones) done(why);
    complete_connect_waiters(why);
    auto disconnects = std::move(disconnect_waiters_);
    disconnect_waiters_.clear();
    for (auto& done : disconnects) done({});
  }

  // ---- writing (I/O thread) ------------------------------------------------------------------

  // Writes everything queued, control commands first, in one write; completes the publishes in
  // it when the write finishes. One write at a time: the next flush starts from its completion.
  void flush() {
    bool drained = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      flush_posted_ = false;
      if (writing_ || !connected_ || !conn_) return;
      write_buffer_.clear();  // the last batch, written
      if (control_out_.empty() && pub_out_.empty()) {
        drained = stopped_;
      } else {
        if (control_out_.empty()) {
          write_buffer_.swap(pub_out_);
        } else {
          write_buffer_.swap(control_out_);
          write_buffer_ += pub_out_;
          pub_out_.clear();
        }
        write_dones_.swap(pub_done_);
      }
    }
    if (drained) return shut_down(unavailable("the broker was disconnected"));
    if (write_buffer_.empty()) return;
    writing_ = true;
    auto conn = conn_;
    asio::async_write(conn->socket, asio::buffer(write_buffer_),
                      [this, conn](const error_code& ec, size_t) {
                        writing_ = false;
                        std::vector<Done> dones;
                        dones.swap(write_dones_);
                        if (ec) {
                          const Error lost = unavailable(
                              "the connection to " + conn->server + " was lost while writing (" +
                              ec.message() + "); the message may not have been delivered");
                          for (auto& done : dones) done(lost);
                          fail_connection(conn, lost);
                        } else {
                          for (auto& done : dones) done({});
                        }
                        flush();
                      });
  }

  // ---- what the server sends (I/O thread, from parser_.feed) ---------------------------------

  Error on_info(std::string_view json) override {
    ServerInfo info;
    Error error = parse_info(json, info);
    if (!error.ok()) return error;
    if (info.tls_required)
      return unavailable(conn_->server + " requires TLS, which broker-nats does not speak");
    info_ = info;
    parser_.set_max_payload(info.max_payload);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      max_payload_ = info.max_payload;
      server_headers_ = info.headers;
      current_server_ = conn_->server;
    }
    if (phase_ == Phase::handshaking && !conn_->sent_connect) {
      conn_->sent_connect = true;
      ConnectOptions options;
      options.name = connect_name_;
      options.user = settings_.user;
      options.pass = settings_.pass;
      options.token = settings_.token;
      options.headers = info.headers;
      auto hello = std::make_shared<std::string>(connect_command(options) + "PING\r\n");
      auto conn = conn_;
      asio::async_write(conn->socket, asio::buffer(*hello),
                        [this, conn, hello](const error_code& ec, size_t) {
                          if (ec && conn == conn_)
                            fail_connection(conn, unavailable("cannot write CONNECT to " +
                                                              conn->server + ": " + ec.message()));
                        });
    }
    return {};
  }

  Error on_msg(std::string_view subject, uint64_t sid, std::string_view,
               std::string_view header_block, std::string_view payload) override {
    std::shared_ptr<Sub> sub;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = subs_.find(sid);
      if (it == subs_.end()) return {};  // unsubscribed while the message was on its way
      sub = it->second;
    }
    Message message;
    if (!header_block.empty()) {
      Error bad = decode_headers(header_block, message.header);
      if (!bad.ok()) {  // another client's doing, not the connection's: drop this message only
        log_.warn("dropping a message on '", subject, "': ", bad.detail());
        return {};
      }
    }
    message.body.assign(payload.data(), payload.size());
    std::lock_guard<std::mutex> delivering(sub->delivering);
    if (!sub->active) return {};
    Error result;
    const Error thrown = detail::guarded([&] { result = sub->handler(subject, message); });
    if (!thrown.ok()) result = thrown;
    if (!result.ok())  // NATS has no way back to the publisher
      log_.warn("the subscriber of '", subject, "' failed: ", result.to_string());
    return {};
  }

  Error on_ping() override {
    std::lock_guard<std::mutex> lock(mutex_);
    control_out_ += "PONG\r\n";
    want_flush_locked();
    return {};
  }

  Error on_pong() override {
    if (phase_ == Phase::handshaking && conn_->sent_connect) {
      became_connected();
    } else if (pings_out_ > 0) {
      --pings_out_;
    }
    return {};
  }

  Error on_ok() override { return {}; }

  Error on_err(std::string_view message) override {
    const std::string text(message);
    if (phase_ != Phase::connected)  // authorization and the like: this attempt failed
      return unavailable(conn_->server + " refused the connection: " + text);
    // The server closes the connection itself when the error is fatal.
    log_.warn(conn_->server, " reported an error: ", text);
    return {};
  }

  const Settings settings_;
  const Logger log_;
  const std::string connect_name_;
  std::string address_;

  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;

  // I/O thread only.
  tcp::resolver resolver_{io_};
  asio::steady_timer handshake_timer_{io_};
  asio::steady_timer ping_timer_{io_};
  asio::steady_timer reconnect_timer_{io_};
  std::shared_ptr<Conn> conn_;
  Phase phase_ = Phase::idle;
  Parser parser_;
  ServerInfo info_;
  size_t server_index_ = 0;
  int attempts_ = 0;
  int pings_out_ = 0;
  bool writing_ = false;
  std::string write_buffer_;
  std::vector<Done> write_dones_;
  uint64_t next_waiter_ = 0;
  struct Waiter {
    Done done;
    std::shared_ptr<asio::steady_timer> timer;
  };
  std::map<uint64_t, Waiter> connect_waiters_;
  std::vector<Done> disconnect_waiters_;
  std::mt19937_64 rng_{std::random_device{}()};

  // Any thread, under mutex_.
  mutable std::mutex mutex_;
  bool connected_ = false;
  bool stopped_ = false;
  bool flush_posted_ = false;
  std::string control_out_;  // SUB, UNSUB, PING, PONG for the current connection
  std::string pub_out_;      // PUB/HPUB not yet written, across reconnects
  std::vector<Done> pub_done_;
  std::map<uint64_t, std::shared_ptr<Sub>> subs_;
  uint64_t next_sid_ = 0;
  uint64_t max_payload_ = 1u << 20;  // until the first INFO
  bool server_headers_ = true;
  std::string current_server_;
  Error last_error_;
};

}  // namespace
}  // namespace micro::broker_nats

MICRO_MODULE("broker-nats", "1.0.0", "Broker over a NATS server (NATS client protocol)",
             micro::plugin<micro::broker_nats::NatsBroker>(
                 "broker-nats",
                 "Publish/subscribe through nats-server: queue groups, headers, reconnects"));
