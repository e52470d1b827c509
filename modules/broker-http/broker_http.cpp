// broker-http: a peer-to-peer HTTP broker with no server to run, like go-micro's http broker.
// Each subscription is a node of the registry service `micro.http.broker` (version: its queue
// group, or "ff.http.broadcast"), reached at this instance's HTTP endpoint. A publisher keeps the
// subscribers in a cache fed by the registry's watch and POSTs the envelope (envelope.hpp) to each
// of them (one per queue group) over keep-alive connections. To a subscriber that advertises
// batches (node metadata batch=application/x-micro-batch+proto) the messages go through its
// outbox instead: a FIFO with one POST in flight, each POST carrying every message queued
// meanwhile (batch.hpp). README.md has the wire format.
//
// Threads: one io_context run by `threads` threads serves the endpoint and runs the publishers'
// exchanges (each connection on its own strand). Subscriber handlers run on a pool of
// `handler_threads` threads, one delivery at a time per subscription, so a handler that blocks
// (or publishes and waits) never stalls the network.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "batch.hpp"
#include "envelope.hpp"
#include "micro/error_json.hpp"
#include "micro/module.hpp"
#include "micro/tls_common.hpp"

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr const char* kModule = "broker-http";
constexpr const char* kBroadcastVersion = "ff.http.broadcast";  // go-micro's
constexpr const char* kPath = "/";                               // go-micro's DefaultPath
constexpr const char* kGoneHeader = "micro-broker-gone";  // on a 410: no such subscription here
constexpr auto kFailedFor = std::chrono::seconds(5);    // a queue member that failed is tried last
constexpr size_t kMaxIdlePerPeer = 64;
constexpr size_t kMaxReplyBytes = 1 << 20;
constexpr const char* kBatchKey = "batch";            // node metadata: the batch type it takes
constexpr const char* kMaxBodyKey = "max_body_bytes";  // node metadata: its request limit
constexpr size_t kDefaultPeerLimit = 1 << 20;  // a batch subscriber that names no limit
constexpr size_t kBatchReadBuffer = 64 * 1024;  // read buffer of a connection that brings batches
constexpr int kKeepBatchObjects = 4096;  // messages a connection's reused batch object may keep

struct HostPort {
  std::string host, port;
};

bool split_host_port(std::string_view address, HostPort& out) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view host = address.substr(0, colon);
  const std::string_view port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port)) > 65535)
    return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  out.host = std::string(host);
  out.port = std::string(port);
  return true;
}

std::string host_port(const tcp::endpoint& ep) {
  const std::string host = ep.address().to_string();
  return (ep.address().is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(ep.port());
}

struct Settings {
  std::string address, service;
  int64_t max_body, read_timeout_ms, publish_timeout_ms, ttl_ms, interval_ms, threads,
      handler_threads, cache_ttl_ms, max_batch_messages, max_batch_bytes;
  bool batch;  // advertise and take batches (subscriber), send them where advertised (publisher)
  micro::tls::TlsSettings tls;  // the same tls_* options as transport-http
};

// A connection to or from a peer: plain TCP, or TLS over TCP.
struct Conn {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<TlsStream> tls;
  beast::tcp_stream& tcp() { return tls ? tls->next_layer() : *plain; }
  // f(stream) with the stream HTTP is read from and written to.
  template <class F>
  void with(F&& f) {
    if (tls)
      f(*tls);
    else
      f(*plain);
  }
};

// One subscription of this instance: a node in the registry, a handler.
struct Sub {
  uint64_t id = 0;
  std::string node_id, topic, queue;
  micro::BrokerHandler handler;
  std::mutex run_mutex;  // held while the handler runs: one delivery at a time
  bool active = true;    // under run_mutex
  std::atomic<std::thread::id> running{};
};

using Completion = std::function<void(const micro::Error&, bool try_next)>;

// What one publish asks of one batch subscriber, waiting in its outbox.
struct Outgoing {
  // The message: its own copy when it goes to one subscriber, else shared by its deliveries.
  micro::Message own;
  std::shared_ptr<const micro::Message> shared;
  // Told the result: `done` (try_next: not reached or gone, so a queue group tries another
  // member) or, when empty, `finish` (the publisher's own callback: one plain subscriber).
  Completion done;
  micro::Done finish;
  size_t bytes = 0;  // micro::broker_http::batch_bytes(message())

  const micro::Message& message() const { return shared ? *shared : own; }
  void complete(const micro::Error& error, bool try_next) {
    if (done)
      done(error, try_next);
    else
      finish(error);
  }
};

// The messages on their way to one subscriber that takes batches: a FIFO, one POST in flight;
// when it answers, the next POST takes everything queued meanwhile (up to the limits). No timer:
// a message that finds the outbox idle leaves at once.
struct Outbox {
  std::string id, address, topic, target;  // target: "/?id=<node id>"
  bool secure = false;
  size_t limit = 0;  // the subscriber's request limit as it advertised it (or the default)
  std::mutex mutex;
  size_t max_bytes = 0;  // for the messages of one batch; halved after a 413
  // Not sent yet: queue[head..]. A vector rather than a deque so that a batch taking everything
  // takes the vector itself (no per-message allocation or move).
  std::vector<Outgoing> queue;
  size_t head = 0;
  size_t queued_bytes = 0;  // of queue[head..]
  bool busy = false;  // a POST is in flight; nothing is queued whenever this is false
  // Used by whoever sends the next batch (one at a time: `busy`), so its messages and their
  // strings are allocated once and reused.
  micro::broker_http::wire::Batch encoder;
};

// A subscriber as the publisher's cache knows it.
struct Target {
  std::string id, address, topic, queue;
  bool secure = false;  // registered secure=true: its endpoint speaks TLS
  std::shared_ptr<Outbox> outbox;  // set when batches go to it
};
using TargetPtr = std::shared_ptr<const Target>;

// The subscribers of one topic, from the cache (made on the first publish after a change).
struct Route {
  std::vector<TargetPtr> everyone;
  std::vector<std::vector<TargetPtr>> groups;
  bool json = false;  // some of them take go-micro's JSON envelope only
};

// One publish's message, for every delivery of it.
struct Payload {
  std::shared_ptr<const micro::Message> message;
  std::shared_ptr<const std::string> json;  // the JSON envelope, when a route needs it
};

// Idle keep-alive connections to subscribers, by address.
class Pool {
 public:
  std::unique_ptr<Conn> take(const std::string& address) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = idle_.find(address);
    if (it == idle_.end() || it->second.empty()) return nullptr;
    auto out = std::move(it->second.back());
    it->second.pop_back();
    return out;
  }
  void put(const std::string& address, std::unique_ptr<Conn> stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& list = idle_[address];
    if (!closed_ && list.size() < kMaxIdlePerPeer) list.push_back(std::move(stream));
  }
  void close() {
    std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      idle.swap(idle_);
    }
  }

 private:
  std::mutex mutex_;
  bool closed_ = false;
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;
};

// One POST to a subscriber and its answer. A pooled connection that turns out dead before any
// answer is replaced by a new one once. If the exchange never ends (the broker goes away), the
// callback gets 499.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  // transport: non-ok when no answer came (then status is 0).
  using Callback = std::function<void(const micro::Error& transport, unsigned status,
                                      const micro::Metadata& header, std::string body)>;

  // tls_context: dial TLS with it, verifying as `tls` says; null: plain TCP.
  Exchange(net::io_context& ioc, Pool& pool, std::string address, const std::string& target,
           const char* content_type, std::string body, std::chrono::milliseconds timeout,
           net::ssl::context* tls_context, const micro::tls::TlsSettings& tls, Callback callback)
      : ioc_(ioc),
        pool_(pool),
        address_(std::move(address)),
        pool_key_(tls_context != nullptr ? "tls:" + address_ : address_),
        tls_context_(tls_context),
        tls_(tls),
        timeout_(timeout),
        callback_(std::move(callback)) {
    request_.method(http::verb::post);
    request_.target(target);
    request_.version(11);
    request_.set(http::field::host, address_);
    request_.set(http::field::content_type, content_type);
    request_.set(http::field::user_agent, "micro-cpp broker-http");
    request_.keep_alive(true);
    request_.body() = std::move(body);
    request_.prepare_payload();
  }
  ~Exchange() {
    if (callback_) callback_(micro::Error(499, "the broker was destroyed before the delivery "
                                               "to " + address_ + " ended"), 0, {}, {});
  }

  void start() {
    stream_ = pool_.take(pool_key_);
    if (!stream_) return connect();
    reused_ = true;
    net::dispatch(stream_->tcp().get_executor(), [self = shared_from_this()] { self->write(); });
  }

 private:
  void connect() {
    reused_ = false;
    stream_ = std::make_unique<Conn>();
    if (tls_context_ != nullptr)
      stream_->tls = std::make_unique<TlsStream>(net::make_strand(ioc_), *tls_context_);
    else
      stream_->plain = std::make_unique<beast::tcp_stream>(net::make_strand(ioc_));
    HostPort hp;
    if (!split_host_port(address_, hp))
      return finish(micro::Error::bad_request("'" + address_ + "' is not host:port"));
    host_ = hp.host;
    boost::system::error_code ec;
    const auto ip = net::ip::make_address(hp.host, ec);
    stream_->tcp().expires_after(timeout_);
    if (!ec) {
      const tcp::endpoint ep(ip, static_cast<uint16_t>(std::stoul(hp.port)));
      stream_->tcp().async_connect(ep, [self = shared_from_this()](beast::error_code e) {
        if (e) return self->failed("connect", e);
        self->connected();
      });
      return;
    }
    resolver_ = std::make_unique<tcp::resolver>(stream_->tcp().get_executor());
    resolver_->async_resolve(
        hp.host, hp.port,
        [self = shared_from_this()](beast::error_code e, tcp::resolver::results_type results) {
          if (e) return self->failed("resolve", e);
          self->stream_->tcp().async_connect(results, [self](beast::error_code e2, const tcp::endpoint&) {
            if (e2) return self->failed("connect", e2);
            self->connected();
          });
        });
  }

  void connected() {
    boost::system::error_code ignored;
    stream_->tcp().socket().set_option(tcp::no_delay(true), ignored);
    if (!stream_->tls) return write();
    if (micro::Error e = micro::tls::prepare_client(stream_->tls->native_handle(), tls_, host_);
        !e.ok())
      return finish(e);
    stream_->tls->async_handshake(
        net::ssl::stream_base::client, [self = shared_from_this()](beast::error_code e) {
          if (e)
            return self->finish(micro::Error::unavailable(micro::tls::handshake_failure(
                self->stream_->tls->native_handle(), e, self->address_)));
          self->write();
        });
  }

  void write() {
    stream_->tcp().expires_after(timeout_);
    stream_->with([this](auto& stream) {
      http::async_write(stream, request_, [self = shared_from_this()](beast::error_code e, size_t) {
        if (e) return self->failed("send", e);
        self->read();
      });
    });
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(kMaxReplyBytes);
    buffer_.reserve(4096);  // a batch's results: 2 bytes per message that succeeded
    stream_->with([this](auto& stream) {
      http::async_read(stream, buffer_, *parser_,
                       [self = shared_from_this()](beast::error_code e, size_t) {
                         if (e) return self->failed("read the answer", e);
                         self->answered();
                       });
    });
  }

  void answered() {
    auto response = parser_->release();
    micro::Metadata header;
    for (const auto& field : response) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      header[name] = std::string(field.value());
    }
    if (response.keep_alive()) {
      stream_->tcp().expires_never();
      pool_.put(pool_key_, std::move(stream_));
    }
    stream_.reset();
    auto callback = std::move(callback_);
    callback_ = nullptr;
    callback({}, response.result_int(), header, std::move(response.body()));
  }

  void failed(const char* what, const beast::error_code& e) {
    const bool answered_some = parser_ && parser_->got_some();
    if (reused_ && !answered_some) {  // a stale pooled connection: once more, on a new one
      stream_.reset();
      parser_.reset();
      return connect();
    }
    const std::string reason = e == beast::error::timeout ? "timed out" : e.message();
    finish(micro::Error::unavailable("cannot " + std::string(what) + " to " + address_ + ": " +
                                     reason));
  }

  void finish(const micro::Error& error) {
    stream_.reset();
    auto callback = std::move(callback_);
    callback_ = nullptr;
    callback(error, 0, {}, {});
  }

  net::io_context& ioc_;
  Pool& pool_;
  const std::string address_;
  const std::string pool_key_;  // TLS and plain connections to one address are kept apart
  net::ssl::context* const tls_context_;
  const micro::tls::TlsSettings& tls_;  // the broker's, which outlives every exchange
  std::string host_;
  const std::chrono::milliseconds timeout_;
  Callback callback_;
  http::request<http::string_body> request_;
  std::unique_ptr<Conn> stream_;
  std::unique_ptr<tcp::resolver> resolver_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  bool reused_ = false;
};

// Waits for the deliveries of one publish; answers the publisher once all have ended.
class Deliveries {
 public:
  Deliveries(size_t count, std::string topic, micro::Done done)
      : remaining_(count), topic_(std::move(topic)), done_(std::move(done)) {}

  void complete(const micro::Error& error) {
    micro::Done done;
    micro::Error result;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error.ok()) errors_.push_back(error);
      if (--remaining_ != 0) return;
      done = std::move(done_);
      if (errors_.size() == 1) {
        result = errors_.front();
      } else if (errors_.size() > 1) {
        std::string detail = std::to_string(errors_.size()) + " deliveries of '" + topic_ +
                             "' failed: ";
        for (size_t i = 0; i < errors_.size(); ++i)
          detail += (i ? "; " : "") + errors_[i].detail();
        result = micro::Error(errors_.front().code(), detail, errors_.front().id());
      }
    }
    done(result);
  }

 private:
  std::mutex mutex_;
  size_t remaining_;
  const std::string topic_;
  micro::Done done_;
  std::vector<micro::Error> errors_;
};

class HttpBroker;

// One connection to this instance's endpoint: read a request, deliver it, answer, repeat.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // tls_context: the endpoint speaks TLS only; null: plain HTTP.
  Session(HttpBroker& broker, tcp::socket socket, net::ssl::context* tls_context)
      : broker_(broker) {
    boost::system::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    peer_ = ec ? std::string("an unknown peer") : host_port(peer);
    if (tls_context != nullptr)
      stream_.tls = std::make_unique<TlsStream>(beast::tcp_stream(std::move(socket)), *tls_context);
    else
      stream_.plain = std::make_unique<beast::tcp_stream>(std::move(socket));
  }
  void start() {
    net::dispatch(stream_.tcp().get_executor(), [self = shared_from_this()] {
      if (self->stream_.tls) return self->handshake();
      self->read();
    });
  }
  void answer(const micro::Error& error, bool keep_alive);
  // 200 with a batch's results (batch.hpp).
  void answer_batch(std::string results, bool keep_alive);

 private:
  // Writes one answer; without keep_alive the connection then closes (lingering after a 413, so
  // the peer can finish sending and read it).
  void respond(unsigned status, const char* content_type, std::string body, bool gone,
               bool keep_alive, bool linger = false);
  void handshake();
  void refuse_plaintext();
  void linger();
  void drain();
  void read();
  void on_read(beast::error_code ec);
  void close() {
    beast::error_code ignored;
    stream_.tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.tcp().socket().close(ignored);
  }

  HttpBroker& broker_;
  std::string peer_;
  Conn stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::shared_ptr<micro::broker_http::wire::Batch> batch_;  // reused by each batch request
  std::shared_ptr<micro::broker_http::wire::Results> results_;
};

class HttpBroker final : public micro::BrokerPlugin {
 public:
  static constexpr uint32_t required_kinds = MICRO_KIND_BIT(MICRO_KIND_REGISTRY);

  static std::vector<micro::OptionSpec> options() {
    std::vector<micro::OptionSpec> specs = {
        {"address", MICRO_OPTION_STRING,
         "host:port the subscriber endpoint listens on and is advertised at; default: the host "
         "of [service] address, port 0, else 127.0.0.1:0", ""},
        {"service", MICRO_OPTION_STRING, "registry service the subscribers register under",
         "\"micro.http.broker\""},
        {"max_body_bytes", MICRO_OPTION_INT, "largest request the endpoint reads; more gets 413",
         "4194304"},
        {"read_timeout_ms", MICRO_OPTION_INT,
         "the endpoint's limit for reading one request (and for an idle keep-alive connection)",
         "10000"},
        {"publish_timeout_ms", MICRO_OPTION_INT,
         "limit for each step of one delivery (connect, send, the subscriber's answer)",
         "10000"},
        {"register_ttl_ms", MICRO_OPTION_INT, "TTL of a subscription's registration", "60000"},
        {"register_interval_ms", MICRO_OPTION_INT, "how often registrations are renewed",
         "30000"},
        {"cache_ttl_ms", MICRO_OPTION_INT,
         "without a working registry watch, subscribers are looked up again after this long",
         "10000"},
        {"threads", MICRO_OPTION_INT, "network threads", "1"},
        {"handler_threads", MICRO_OPTION_INT, "threads that run subscriber handlers", "4"},
        {"batch", MICRO_OPTION_BOOL,
         "subscriptions advertise and take batches; publishes to subscribers that advertise them "
         "go in batches (false: go-micro's one JSON envelope per POST both ways)", "true"},
        {"max_batch_messages", MICRO_OPTION_INT, "most messages in one batch POST", "1024"},
        {"max_batch_bytes", MICRO_OPTION_INT,
         "largest batch body a publisher sends (the subscriber's max_body_bytes caps it too)",
         "1048576"},
    };
    for (auto& spec : micro::tls::option_specs()) specs.push_back(std::move(spec));
    return specs;
  }

  explicit HttpBroker(const micro::CreateContext& ctx)
      : log_(ctx.logger()),
        registry_(ctx.deps().registry),
        settings_(read_settings(ctx)),
        broker_id_(micro::random_hex(8)),
        ioc_(std::make_unique<net::io_context>(static_cast<int>(settings_.threads))),
        work_(net::make_work_guard(*ioc_)) {
    // Before any thread: a bad certificate file fails the stack's creation, naming the option.
    // Every publisher can dial TLS (to subscribers registered secure=true).
    if (settings_.tls.server()) tls_server_ = micro::tls::make_server_context(settings_.tls, kModule);
    tls_client_ = micro::tls::make_client_context(settings_.tls, log_, kModule);
    for (int64_t i = 0; i < settings_.threads; ++i) threads_.emplace_back([this] { ioc_->run(); });
  }

  ~HttpBroker() override {
    {
      std::unique_lock<std::mutex> lock(cache_mutex_);
      micro::RegistryWatch watch = std::move(watch_);
      lock.unlock();
      watch.stop();
    }
    std::vector<std::shared_ptr<Sub>> subs;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [id, s] : subs_) subs.push_back(s);
      subs_.clear();
    }
    for (auto& s : subs) {
      log_.warn("subscription to '", s->topic, "' was not removed before the broker went; "
                "deregistering it");
      deregister(*s);
    }
    stop_listening();
    if (handlers_) handlers_->join();
    pool_.close();
    work_.reset();
    ioc_->stop();
    for (auto& t : threads_) t.join();
    closing_ = true;  // outboxes answer what they still hold with 499 and send nothing more
    // Now, while every member is alive: sessions and exchanges still pending go with the
    // io_context (an exchange answers its publisher 499 as it goes).
    ioc_.reset();
  }

  void connect(micro::Done done) override {
    micro::Error error = listen();
    if (error.ok()) {
      std::vector<std::shared_ptr<Sub>> subs = snapshot();
      for (auto& s : subs) {
        micro::Error e = registry_.register_service(describe(*s), {uint64_t(settings_.ttl_ms)});
        if (!e.ok() && error.ok()) error = e;
      }
    }
    done(error);
  }

  void disconnect(micro::Done done) override {
    for (auto& s : snapshot()) deregister(*s);
    stop_listening();
    done({});
  }

  void publish(const std::string& topic, micro::Message message, micro::Done done) override {
    if (topic.empty()) return done(micro::Error::bad_request("publish: the topic is empty"));
    if (!micro::broker_http::header_is_utf8(message))
      return done(micro::Error::bad_request("the message's header is not valid UTF-8"));
    std::shared_ptr<const Route> route = cached_route(topic);  // the usual case: one lock
    if (!route) {
      if (micro::Error e = refresh_cache(); !e.ok()) return done(e);
      route = route_of(topic);
    }
    if (route->everyone.empty() && route->groups.empty()) {
      bool first = false;
      {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        first = unheard_.insert(topic).second;
        has_unheard_ = true;
      }
      if (first) log_.warn("no subscribers to '", topic, "': the message goes nowhere");
      return done({});
    }
    if (has_unheard_.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      unheard_.erase(topic);
      has_unheard_ = !unheard_.empty();
    }
    const size_t deliveries_count = route->everyone.size() + route->groups.size();
    if (deliveries_count == 1 && route->everyone.size() == 1 && route->everyone[0]->outbox) {
      // One plain subscriber taking batches (the common case): the message and the publisher's
      // callback go into its outbox as they are.
      Outgoing item;
      item.bytes = micro::broker_http::batch_bytes(message);
      item.own = std::move(message);
      item.finish = std::move(done);
      return enqueue(route->everyone[0]->outbox, std::move(item));
    }
    Payload payload;
    payload.message = std::make_shared<const micro::Message>(std::move(message));
    if (route->json)
      payload.json = std::make_shared<const std::string>(
          micro::broker_http::encode_envelope(topic, *payload.message));
    // With one subscriber (or group) its result is the publish's; with more, Deliveries waits
    // for all of them.
    std::function<void(const micro::Error&)> finish;
    if (route->everyone.size() + route->groups.size() == 1) {
      finish = std::move(done);
    } else {
      auto deliveries = std::make_shared<Deliveries>(
          route->everyone.size() + route->groups.size(), topic, std::move(done));
      finish = [deliveries](const micro::Error& error) { deliveries->complete(error); };
    }
    for (const auto& t : route->everyone)
      deliver(t, payload, [finish](const micro::Error& error, bool) { finish(error); });
    for (const auto& members : route->groups)
      deliver_to_group(std::make_shared<std::vector<TargetPtr>>(order_members(members)), 0,
                       payload, finish);
  }

  uint64_t subscribe(const std::string& topic, const micro::SubscribeOptions& options,
                     micro::BrokerHandler handler) override {
    if (topic.empty()) throw micro::Exception(micro::Error::bad_request("subscribe: no topic"));
    if (!handler) throw micro::Exception(micro::Error::bad_request("subscribe: no handler"));
    if (micro::Error e = listen(); !e.ok()) throw micro::Exception(e);
    auto sub = std::make_shared<Sub>();
    sub->topic = topic;
    sub->queue = options.queue;
    sub->handler = std::move(handler);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sub->id = ++next_id_;
      sub->node_id = topic + "-" + broker_id_ + "-" + std::to_string(sub->id);
      subs_[sub->node_id] = sub;
    }
    micro::Error e = registry_.register_service(describe(*sub), {uint64_t(settings_.ttl_ms)});
    if (!e.ok()) {
      std::lock_guard<std::mutex> lock(mutex_);
      subs_.erase(sub->node_id);
      throw micro::Exception(micro::Error(e.code(), "cannot register the subscription to '" +
                                                        topic + "': " + e.detail()));
    }
    log_.debug("subscribed to '", topic, "'", options.queue.empty() ? "" : " in queue ",
               options.queue, " at ", address_, " (node ", sub->node_id, ")");
    return sub->id;
  }

  void unsubscribe(uint64_t subscription_id) override {
    std::shared_ptr<Sub> sub;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = subs_.begin(); it != subs_.end(); ++it) {
        if (it->second->id == subscription_id) {
          sub = it->second;
          subs_.erase(it);
          break;
        }
      }
    }
    if (!sub) return;
    deregister(*sub);
    if (sub->running.load() == std::this_thread::get_id()) {  // from its own handler
      sub->active = false;
      return;
    }
    std::lock_guard<std::mutex> lock(sub->run_mutex);  // waits for a delivery in progress
    sub->active = false;
  }

  std::string_view address() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return address_;
  }

  // ---- for sessions ----

  const Settings& settings() const { return settings_; }
  const micro::Logger& log() const { return log_; }

  // Delivers a checked request to its subscription on a handler thread; answers through
  // `session` on its strand.
  void deliver_locally(const std::shared_ptr<Session>& session, const std::string& id,
                       std::string topic, micro::Message message, bool keep_alive) {
    std::shared_ptr<Sub> sub;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = subs_.find(id);
      if (it != subs_.end()) sub = it->second;
    }
    if (!sub) return session->answer(gone(id), keep_alive);
    if (sub->topic != topic)
      return session->answer(micro::Error::bad_request("subscription '" + id + "' is to '" +
                                                       sub->topic + "', not '" + topic + "'"),
                             keep_alive);
    net::post(*handlers_, [this, session, sub, topic = std::move(topic),
                          message = std::move(message), keep_alive] {
      micro::Error result;
      {
        std::lock_guard<std::mutex> lock(sub->run_mutex);
        if (!sub->active) {
          result = gone(sub->node_id);
        } else {
          sub->running = std::this_thread::get_id();
          result = run_handler(*sub, message);
          sub->running = std::thread::id();
        }
      }
      session->answer(result, keep_alive);
    });
  }

  // Runs a checked batch on a handler thread (one hand-off for all its messages, in order, one
  // at a time as every delivery to a subscription); answers one result per message through
  // `session`.
  void deliver_batch(const std::shared_ptr<Session>& session, const std::string& id,
                     std::shared_ptr<const micro::broker_http::wire::Batch> batch,
                     std::shared_ptr<micro::broker_http::wire::Results> results, bool keep_alive) {
    std::shared_ptr<Sub> sub;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = subs_.find(id);
      if (it != subs_.end()) sub = it->second;
    }
    if (!sub) return session->answer(gone(id), keep_alive);
    if (sub->topic != batch->topic())
      return session->answer(micro::Error::bad_request("subscription '" + id + "' is to '" +
                                                       sub->topic + "', not '" +
                                                       batch->topic() + "'"),
                             keep_alive);
    net::post(*handlers_, [this, session, sub, batch = std::move(batch),
                           results = std::move(results), keep_alive] {
      results->Clear();
      micro::Message message;  // reused: its header and body keep their storage
      {
        std::lock_guard<std::mutex> lock(sub->run_mutex);
        sub->running = std::this_thread::get_id();
        for (const auto& envelope : batch->messages()) {
          auto* result = results->add_results();
          if (!sub->active) {  // unsubscribed from a handler of this batch
            micro::broker_http::set_result(*result, gone(sub->node_id), true);
            continue;
          }
          micro::broker_http::to_message(sub->topic, envelope, message);
          micro::Error error = run_handler(*sub, message);
          if (!error.ok() && error.id().empty())
            error = micro::Error(error.code(), error.detail(), kModule);
          micro::broker_http::set_result(*result, error, false);
        }
        sub->running = std::thread::id();
      }
      session->answer_batch(results->SerializeAsString(), keep_alive);
    });
  }

  // One handler call (under sub.run_mutex); its error, logged.
  micro::Error run_handler(Sub& sub, const micro::Message& message) {
    micro::Error result;
    try {
      result = sub.handler(sub.topic, message);
    } catch (const std::exception& e) {
      result = micro::Error::internal(e.what());
    } catch (...) {
      result = micro::Error::internal("the subscriber's handler threw");
    }
    if (!result.ok()) log_.warn("the handler of '", sub.topic, "' failed: ", result.to_string());
    return result;
  }

  static micro::Error gone(const std::string& id) {
    return micro::Error(410, "no subscription '" + id + "' here (it was removed)");
  }

 private:
  static Settings read_settings(const micro::CreateContext& ctx) {
    const auto& o = ctx.options();
    Settings s;
    s.address = o.get_string("address");
    if (s.address.empty()) {
      HostPort hp;
      s.address = split_host_port(ctx.service().address, hp) && !hp.host.empty()
                      ? (hp.host.find(':') != std::string::npos ? "[" + hp.host + "]" : hp.host) +
                            ":0"
                      : "127.0.0.1:0";
    }
    s.service = o.get_string("service", "micro.http.broker");
    s.max_body = o.get_int("max_body_bytes", 4194304);
    s.read_timeout_ms = o.get_int("read_timeout_ms", 10000);
    s.publish_timeout_ms = o.get_int("publish_timeout_ms", 10000);
    s.ttl_ms = o.get_int("register_ttl_ms", 60000);
    s.interval_ms = o.get_int("register_interval_ms", 30000);
    s.cache_ttl_ms = o.get_int("cache_ttl_ms", 10000);
    s.threads = o.get_int("threads", 1);
    s.handler_threads = o.get_int("handler_threads", 4);
    s.batch = o.get_bool("batch", true);
    s.max_batch_messages = o.get_int("max_batch_messages", 1024);
    s.max_batch_bytes = o.get_int("max_batch_bytes", 1048576);
    s.tls = micro::tls::read_settings(o, kModule);
    HostPort hp;
    if (!split_host_port(s.address, hp))
      throw micro::Exception(micro::Error::bad_request("broker address '" + s.address +
                                                       "' is not host:port"));
    if (s.service.empty())
      throw micro::Exception(micro::Error::bad_request("broker service must not be empty"));
    if (s.max_body <= 0 || s.read_timeout_ms <= 0 || s.publish_timeout_ms <= 0 ||
        s.ttl_ms <= 0 || s.interval_ms <= 0 || s.cache_ttl_ms <= 0)
      throw micro::Exception(micro::Error::bad_request(
          "max_body_bytes, read_timeout_ms, publish_timeout_ms, register_ttl_ms, "
          "register_interval_ms and cache_ttl_ms must be > 0"));
    if (s.max_batch_messages < 1 || s.max_batch_messages > 1000000 || s.max_batch_bytes <= 0)
      throw micro::Exception(micro::Error::bad_request(
          "max_batch_messages must be 1..1000000 and max_batch_bytes > 0"));
    if (s.threads < 1 || s.threads > 64 || s.handler_threads < 1 || s.handler_threads > 256)
      throw micro::Exception(micro::Error::bad_request(
          "threads must be 1..64 and handler_threads 1..256"));
    return s;
  }

  std::vector<std::shared_ptr<Sub>> snapshot() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::shared_ptr<Sub>> out;
    for (const auto& [id, s] : subs_) out.push_back(s);
    return out;
  }

  micro::Service describe(const Sub& s) const {
    micro::Service service;
    service.name = settings_.service;
    service.version = s.queue.empty() ? kBroadcastVersion : s.queue;
    std::string address;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      address = address_;
    }
    service.nodes.push_back({s.node_id,
                             address,
                             {{"broker", "http"},
                              {"topic", s.topic},
                              {"queue", s.queue},
                              {"secure", tls_server_ ? "true" : "false"}}});
    if (settings_.batch) {
      service.nodes.back().metadata[kBatchKey] = micro::broker_http::kBatchType;
      service.nodes.back().metadata[kMaxBodyKey] = std::to_string(settings_.max_body);
    }
    return service;
  }

  void deregister(const Sub& s) {
    const micro::Error e = registry_.deregister_service(describe(s));
    if (!e.ok() && e.code() != 404)
      log_.warn("deregistering the subscription to '", s.topic, "' failed: ", e.to_string());
  }

  // ---- the endpoint ----

  micro::Error listen() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (acceptor_) return {};
    if (!handlers_)
      handlers_ = std::make_unique<net::thread_pool>(static_cast<size_t>(settings_.handler_threads));
    HostPort hp;
    split_host_port(settings_.address, hp);  // checked in read_settings
    boost::system::error_code ec;
    const auto ip = net::ip::make_address(hp.host.empty() ? "0.0.0.0" : hp.host, ec);
    if (ec)
      return micro::Error::bad_request("broker address '" + settings_.address +
                                       "' needs an IP address: " + ec.message());
    auto acceptor = std::make_shared<tcp::acceptor>(net::make_strand(*ioc_));
    const tcp::endpoint ep(ip, static_cast<uint16_t>(std::stoul(hp.port)));
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(net::socket_base::max_listen_connections, ec);
    if (ec)
      return micro::Error::unavailable("the broker cannot listen on " + settings_.address + ": " +
                                       ec.message());
    address_ = host_port(acceptor->local_endpoint());
    acceptor_ = acceptor;
    accept(acceptor);
    schedule_renewal();
    log_.debug("broker endpoint on ", address_);
    return {};
  }

  void accept(const std::shared_ptr<tcp::acceptor>& acceptor) {
    acceptor->async_accept(net::make_strand(*ioc_), [this, acceptor](beast::error_code ec,
                                                                  tcp::socket socket) {
      if (ec == net::error::operation_aborted) return;
      if (!ec) {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);  // one answer per request: no batching
        std::make_shared<Session>(*this, std::move(socket), tls_server_.get())->start();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (acceptor_ != acceptor) return;  // closed meanwhile
      }
      accept(acceptor);
    });
  }

  void stop_listening() {
    std::shared_ptr<tcp::acceptor> acceptor;
    std::shared_ptr<net::steady_timer> renewal;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      acceptor = std::move(acceptor_);
      renewal = std::move(renewal_);
    }
    if (renewal) net::post(renewal->get_executor(), [renewal] { renewal->cancel(); });
    if (!acceptor) return;
    // Closed on its strand; freed with the last handler that holds it.
    net::post(acceptor->get_executor(), [acceptor] {
      boost::system::error_code ignored;
      acceptor->close(ignored);
    });
  }

  void schedule_renewal() {  // under mutex_
    auto timer = std::make_shared<net::steady_timer>(*ioc_,
                                                     std::chrono::milliseconds(settings_.interval_ms));
    renewal_ = timer;
    timer->async_wait([this, timer](beast::error_code ec) {
      if (ec) return;
      for (auto& s : snapshot()) {
        registry_.register_service(describe(*s), {uint64_t(settings_.ttl_ms)},
                                   [this, topic = s->topic](const micro::Error& e) {
                                     if (!e.ok())
                                       log_.warn("renewing the subscription to '", topic,
                                                 "' failed: ", e.to_string());
                                   });
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (renewal_ == timer) schedule_renewal();
    });
  }

  // ---- the publisher's cache ----

  // Makes sure the subscribers are known: the first publish watches the broker service and looks
  // it up; afterwards the watch keeps the cache current. Publishes that arrive during a lookup wait
  // for it. Without a watch, the cache is looked up again after cache_ttl_ms.
  micro::Error refresh_cache() {
    std::unique_lock<std::mutex> lock(cache_mutex_);
    const auto now = Clock::now();
    if (cache_ready_ && (watched_ || now - refreshed_ < std::chrono::milliseconds(
                                                            settings_.cache_ttl_ms)))
      return {};
    if (lookup_running_) {
      lookup_done_.wait(lock, [this] { return !lookup_running_; });
      return cache_ready_ ? micro::Error{} : lookup_error_;
    }
    lookup_running_ = true;
    events_during_lookup_.clear();
    const bool watch_now = !watched_;
    lock.unlock();

    micro::Result<micro::RegistryWatch> watch;
    if (watch_now) {
      watch = registry_.watch(settings_.service,
                              [this](const micro::RegistryEvent& event) { on_event(event); });
      if (!watch.ok() && !watch_warned_.exchange(true))
        log_.warn("the registry refused to watch ", settings_.service, " (",
                  watch.error.to_string(), "); looking subscribers up every ",
                  settings_.cache_ttl_ms, " ms instead");
    }
    auto got = registry_.get_service(settings_.service);

    lock.lock();
    if (watch_now && watch.ok()) {
      watch_ = std::move(watch.value);
      watched_ = true;
    }
    lookup_running_ = false;
    lookup_done_.notify_all();
    if (!got.ok() && got.error.code() != 404) {
      lookup_error_ = micro::Error(got.error.code(), "cannot look the subscribers up in the "
                                                     "registry: " + got.error.detail());
      return cache_ready_ ? micro::Error{} : lookup_error_;  // stale is better than nothing
    }
    targets_.clear();
    for (const auto& service : got.value) apply_locked(micro::RegistryEventType::create, service);
    for (const auto& event : events_during_lookup_) apply_locked(event.type, event.service);
    events_during_lookup_.clear();
    for (auto it = outboxes_.begin(); it != outboxes_.end();)  // of nodes no longer listed
      it = targets_.count(it->first) != 0 ? std::next(it) : outboxes_.erase(it);
    routes_.clear();
    cache_ready_ = true;
    refreshed_ = Clock::now();
    return {};
  }

  void on_event(const micro::RegistryEvent& event) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (event.service.name != settings_.service) return;
    if (lookup_running_) events_during_lookup_.push_back(event);
    apply_locked(event.type, event.service);
  }

  void apply_locked(micro::RegistryEventType type, const micro::Service& service) {
    if (service.name != settings_.service) return;
    routes_.clear();
    for (const auto& node : service.nodes) {
      if (type == micro::RegistryEventType::remove) {
        targets_.erase(node.id);
        outboxes_.erase(node.id);  // what it holds still goes (or fails) in order
        failed_.erase(node.id);
        continue;
      }
      auto broker = node.metadata.find("broker");
      auto topic = node.metadata.find("topic");
      if (broker == node.metadata.end() || broker->second != "http" ||
          topic == node.metadata.end())
        continue;
      auto t = std::make_shared<Target>();
      t->id = node.id;
      t->address = node.address;
      t->topic = topic->second;
      t->queue = service.version == kBroadcastVersion ? std::string() : service.version;
      auto secure = node.metadata.find("secure");
      t->secure = secure != node.metadata.end() && secure->second == "true";
      auto batch = node.metadata.find(kBatchKey);
      if (settings_.batch && batch != node.metadata.end() &&
          batch->second == micro::broker_http::kBatchType) {
        t->outbox = outbox_of(*t, advertised_limit(node.metadata));
      } else {
        outboxes_.erase(node.id);
      }
      targets_[node.id] = std::move(t);
    }
  }

  // The request limit a batch subscriber advertises (max_body_bytes), or a conservative default.
  static size_t advertised_limit(const micro::Metadata& metadata) {
    auto it = metadata.find(kMaxBodyKey);
    if (it == metadata.end() || it->second.empty() || it->second.size() > 18 ||
        it->second.find_first_not_of("0123456789") != std::string::npos)
      return kDefaultPeerLimit;
    const size_t limit = std::stoull(it->second);
    return limit > 0 ? limit : kDefaultPeerLimit;
  }

  // The node's outbox: the one it has while its address, TLS and limit stay the same (a renewal
  // must not start a second FIFO beside the first), else a new one.
  std::shared_ptr<Outbox> outbox_of(const Target& t, size_t limit) {  // under cache_mutex_
    auto& box = outboxes_[t.id];
    if (box && box->address == t.address && box->secure == t.secure && box->limit == limit)
      return box;
    box = std::make_shared<Outbox>();
    box->id = t.id;
    box->address = t.address;
    box->topic = t.topic;
    box->target = std::string(kPath) + micro::broker_http::id_query(t.id);
    box->secure = t.secure;
    box->limit = limit;
    const size_t cap = std::min(limit, static_cast<size_t>(settings_.max_batch_bytes));
    const size_t overhead = micro::broker_http::batch_overhead(t.topic);
    box->max_bytes = cap > overhead ? cap - overhead : 1;
    return box;
  }

  // The route of `topic` when the cache is current and has it made; else null.
  std::shared_ptr<const Route> cached_route(const std::string& topic) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (!cache_ready_ || !watched_) return nullptr;
    auto it = routes_.find(topic);
    return it == routes_.end() ? nullptr : it->second;
  }

  // The subscribers of `topic`, made from the cache once per change of it.
  std::shared_ptr<const Route> route_of(const std::string& topic) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = routes_.find(topic);
    if (it != routes_.end()) return it->second;
    auto route = std::make_shared<Route>();
    std::map<std::string, size_t> group_index;
    for (const auto& [id, t] : targets_) {
      if (t->topic != topic) continue;
      route->json = route->json || !t->outbox;
      if (t->queue.empty()) {
        route->everyone.push_back(t);
      } else {
        auto [g, added] = group_index.emplace(t->queue, route->groups.size());
        if (added) route->groups.emplace_back();
        route->groups[g->second].push_back(t);
      }
    }
    routes_[topic] = route;
    return route;
  }

  // ---- delivery ----

  // Members of a queue group in the order they are tried: at random, those that failed lately
  // last.
  std::vector<TargetPtr> order_members(std::vector<TargetPtr> members) {
    thread_local std::mt19937_64 random{std::random_device{}()};
    std::shuffle(members.begin(), members.end(), random);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (failed_.empty()) return members;
    const auto now = Clock::now();
    std::stable_partition(members.begin(), members.end(), [&](const TargetPtr& t) {
      auto it = failed_.find(t->id);
      return it == failed_.end() || it->second < now;
    });
    return members;
  }

  void deliver_to_group(std::shared_ptr<std::vector<TargetPtr>> members, size_t index,
                        const Payload& payload, std::function<void(const micro::Error&)> finish) {
    const TargetPtr& target = (*members)[index];
    deliver(target, payload,
            [this, members, index, payload, finish](const micro::Error& error, bool try_next) {
              if (try_next && index + 1 < members->size())
                return deliver_to_group(members, index + 1, payload, finish);
              // The last member was gone: as if the group had no one.
              finish(error.code() == 410 ? micro::Error{} : error);
            });
  }

  // Delivers the payload to one subscriber: into its outbox when it takes batches, else as one
  // POST of the JSON envelope. `done(error, try_next)`: try_next when the subscriber was not
  // reached or is gone (another queue member may take the message), not when its handler failed.
  void deliver(const TargetPtr& target, const Payload& payload, Completion done) {
    if (target->outbox) {
      Outgoing item;
      item.bytes = micro::broker_http::batch_bytes(*payload.message);
      item.shared = payload.message;
      item.done = std::move(done);
      return enqueue(target->outbox, std::move(item));
    }
    auto exchange = std::make_shared<Exchange>(
        *ioc_, pool_, target->address,
        std::string(kPath) + micro::broker_http::id_query(target->id), "application/json",
        *payload.json, std::chrono::milliseconds(settings_.publish_timeout_ms),
        target->secure || settings_.tls.client ? tls_client_.get() : nullptr, settings_.tls,
        [this, target, done = std::move(done)](const micro::Error& transport, unsigned status,
                                               const micro::Metadata& header, std::string reply) {
          if (!transport.ok()) return done(unreachable(target->id, target->topic, transport), true);
          if (status >= 200 && status < 300) return done({}, false);
          if (status == 410 && header.count(kGoneHeader) != 0) return done({}, true);
          micro::Error error = micro::error_from_json(reply, static_cast<int32_t>(status));
          log_.warn("the subscriber ", target->id, " of '", target->topic, "' answered ",
                    error.to_string());
          done(error, false);
        });
    exchange->start();
  }

  // A subscriber that was not reached: marked (a queue group tries it last for a while), logged,
  // and the error its messages get.
  micro::Error unreachable(const std::string& id, const std::string& topic,
                           const micro::Error& transport) {
    if (transport.code() != 499) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      failed_[id] = Clock::now() + kFailedFor;
    }
    log_.warn("delivery of '", topic, "' to subscriber ", id, " failed: ", transport.detail());
    return micro::Error(transport.code(), "delivery of '" + topic + "' to subscriber " + id +
                                              " failed: " + transport.detail());
  }

  // ---- batches ----

  void enqueue(const std::shared_ptr<Outbox>& box, Outgoing item) {
    std::vector<Outgoing> batch;
    {
      std::lock_guard<std::mutex> lock(box->mutex);
      box->queued_bytes += item.bytes;
      box->queue.push_back(std::move(item));
      if (box->busy) return;  // it goes with the next batch, when the one in flight answers
      box->busy = true;
      take_batch(*box, batch);
    }
    send_batch(box, std::move(batch));
  }

  // Moves the next batch out of the queue: in order, at least one message, then as many as fit
  // max_batch_messages and the byte limit.
  void take_batch(Outbox& box, std::vector<Outgoing>& out) const {  // under box.mutex
    const size_t waiting = box.queue.size() - box.head;
    const size_t most_messages = static_cast<size_t>(settings_.max_batch_messages);
    if (box.head == 0 && waiting <= most_messages && box.queued_bytes <= box.max_bytes) {
      out.swap(box.queue);  // all of it (the usual case)
      box.queue.reserve(out.size());
      box.queued_bytes = 0;
      return;
    }
    size_t bytes = 0;
    out.reserve(std::min(waiting, most_messages));
    while (box.head < box.queue.size() && out.size() < most_messages) {
      Outgoing& next = box.queue[box.head];
      if (!out.empty() && bytes + next.bytes > box.max_bytes) break;
      bytes += next.bytes;
      out.push_back(std::move(next));
      ++box.head;
    }
    box.queued_bytes -= bytes;
    if (box.head == box.queue.size()) {
      box.queue.clear();
      box.head = 0;
    } else if (box.head >= 1024 && box.head * 2 >= box.queue.size()) {  // drop what was sent
      box.queue.erase(box.queue.begin(), box.queue.begin() + static_cast<ptrdiff_t>(box.head));
      box.head = 0;
    }
  }

  void send_batch(const std::shared_ptr<Outbox>& box, std::vector<Outgoing> batch) {
    micro::broker_http::wire::Batch& body = box->encoder;  // ours until this batch is answered
    body.Clear();
    body.set_topic(box->topic);
    for (const auto& item : batch) micro::broker_http::add_to_batch(body, item.message());
    std::string bytes = body.SerializeAsString();
    auto sent = std::make_shared<std::vector<Outgoing>>(std::move(batch));
    auto exchange = std::make_shared<Exchange>(
        *ioc_, pool_, box->address, box->target, micro::broker_http::kBatchType,
        std::move(bytes), std::chrono::milliseconds(settings_.publish_timeout_ms),
        box->secure || settings_.tls.client ? tls_client_.get() : nullptr, settings_.tls,
        [this, box, sent](const micro::Error& transport, unsigned status,
                          const micro::Metadata& header, std::string reply) {
          batch_answered(box, std::move(*sent), transport, status, header, reply);
        });
    exchange->start();
  }

  // The answer to a batch: the next batch leaves, then each message's publisher hears its result.
  void batch_answered(const std::shared_ptr<Outbox>& box, std::vector<Outgoing> batch,
                      const micro::Error& transport, unsigned status,
                      const micro::Metadata& header, const std::string& reply) {
    const size_t n = batch.size();
    std::vector<micro::Error> errors;
    std::vector<bool> next;  // try another queue member
    bool split = false;
    if (!transport.ok()) {
      errors.assign(n, unreachable(box->id, box->topic, transport));
      next.assign(n, true);
    } else if (status == 413 && n > 1) {
      split = true;  // larger than the subscriber takes: sent again in smaller batches
    } else if (status >= 200 && status < 300) {
      const micro::Error bad = micro::broker_http::decode_results(reply, n, errors, next);
      if (!bad.ok()) {
        log_.warn("the subscriber ", box->id, " of '", box->topic, "' answered a batch wrongly: ",
                  bad.detail());
        errors.assign(n, bad);
        next.assign(n, false);
      } else {
        size_t failed = 0;
        for (const auto& e : errors) failed += !e.ok();
        if (failed != 0) {
          const auto first = std::find_if(errors.begin(), errors.end(),
                                           [](const micro::Error& e) { return !e.ok(); });
          log_.warn("the subscriber ", box->id, " of '", box->topic, "' answered ", failed,
                    " of ", n, " messages with an error, the first: ", first->to_string());
        }
      }
    } else if (status == 410 && header.count(kGoneHeader) != 0) {
      errors.assign(n, micro::Error{});
      next.assign(n, true);
    } else {
      const micro::Error error = micro::error_from_json(reply, static_cast<int32_t>(status));
      log_.warn("the subscriber ", box->id, " of '", box->topic, "' answered ",
                error.to_string());
      errors.assign(n, error);
      next.assign(n, false);
    }

    std::vector<Outgoing> following;
    std::vector<Outgoing> abandoned;
    {
      std::lock_guard<std::mutex> lock(box->mutex);
      if (split) {
        size_t bytes = 0;
        for (const auto& item : batch) bytes += item.bytes;
        box->max_bytes = std::max<size_t>(1, bytes / 2);
        log_.info("the subscriber ", box->id, " refused a batch of ", n, " messages as too "
                  "large (413); sending at most ", box->max_bytes, " bytes per batch");
        box->queue.erase(box->queue.begin(),
                         box->queue.begin() + static_cast<ptrdiff_t>(box->head));
        box->head = 0;
        box->queue.insert(box->queue.begin(), std::make_move_iterator(batch.begin()),
                          std::make_move_iterator(batch.end()));
        box->queued_bytes += bytes;
        batch.clear();
      }
      if (closing_) {
        for (size_t i = box->head; i < box->queue.size(); ++i)
          abandoned.push_back(std::move(box->queue[i]));
        box->queue.clear();
        box->head = 0;
        box->queued_bytes = 0;
        box->busy = false;
      } else if (box->head == box->queue.size()) {
        box->busy = false;
      } else {
        take_batch(*box, following);
      }
    }
    if (!following.empty()) send_batch(box, std::move(following));
    for (size_t i = 0; i < batch.size(); ++i) batch[i].complete(errors[i], next[i]);
    for (auto& item : abandoned)
      item.complete(micro::Error(499, "the broker was destroyed before the delivery to " +
                                      box->address + " ended"),
                false);
  }

  micro::Logger log_;
  micro::Registry registry_;
  const Settings settings_;
  const std::string broker_id_;

  std::unique_ptr<net::ssl::context> tls_server_;  // with tls_cert: the endpoint speaks TLS only
  std::unique_ptr<net::ssl::context> tls_client_;  // dials subscribers registered secure=true
  std::unique_ptr<net::io_context> ioc_;  // reset first in the destructor
  net::executor_work_guard<net::io_context::executor_type> work_;
  Pool pool_;  // emptied before ioc_ goes

  mutable std::mutex mutex_;
  std::shared_ptr<tcp::acceptor> acceptor_;
  std::shared_ptr<net::steady_timer> renewal_;
  std::string address_;
  uint64_t next_id_ = 0;
  std::map<std::string, std::shared_ptr<Sub>> subs_;  // by node id

  std::mutex cache_mutex_;
  std::condition_variable lookup_done_;
  bool cache_ready_ = false, lookup_running_ = false, watched_ = false;
  std::atomic<bool> watch_warned_{false};
  Clock::time_point refreshed_{};
  micro::Error lookup_error_;
  std::map<std::string, TargetPtr> targets_;  // by node id
  std::map<std::string, std::shared_ptr<Outbox>> outboxes_;  // of batch subscribers, by node id
  std::unordered_map<std::string, std::shared_ptr<const Route>> routes_;  // by topic
  std::vector<micro::RegistryEvent> events_during_lookup_;
  std::map<std::string, Clock::time_point> failed_;
  std::set<std::string> unheard_;  // topics published with no subscriber (warned once)
  std::atomic<bool> has_unheard_{false};
  std::atomic<bool> closing_{false};  // the destructor runs: outboxes send nothing more
  micro::RegistryWatch watch_;

  std::unique_ptr<net::thread_pool> handlers_;  // made by the first listen(): publishers need none
  std::vector<std::thread> threads_;
};

// The first bytes decide: a TLS handshake goes on to the handshake, anything else (plain HTTP)
// gets a plaintext 400 that says so and the connection closes. A failed handshake is logged.
void Session::handshake() {
  stream_.tcp().expires_after(std::chrono::milliseconds(broker_.settings().read_timeout_ms));
  stream_.tcp().async_read_some(
      buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
        if (ec) return self->close();  // closed or timed out before saying anything
        self->buffer_.commit(n);
        const auto first = static_cast<const unsigned char*>(self->buffer_.data().data())[0];
        if (first != 0x16) return self->refuse_plaintext();  // not a TLS handshake record
        self->stream_.tls->async_handshake(
            net::ssl::stream_base::server, self->buffer_.data(),
            [self](beast::error_code ec, size_t used) {
              self->buffer_.consume(used);
              if (ec) {
                self->broker_.log().warn("broker endpoint: ", micro::tls::handshake_failure(
                                             self->stream_.tls->native_handle(), ec, self->peer_));
                return self->close();
              }
              self->read();
            });
      });
}

void Session::refuse_plaintext() {
  broker_.log().warn("broker endpoint: refused plaintext HTTP from ", peer_, " (it speaks TLS)");
  response_ = {};
  response_.version(11);
  response_.result(http::status::bad_request);
  response_.set(http::field::content_type, "application/json");
  response_.body() = micro::error_to_json(micro::Error(
      400, "plaintext HTTP sent to a TLS broker endpoint: publish with TLS", kModule));
  response_.keep_alive(false);
  response_.prepare_payload();
  http::async_write(stream_.tcp(), response_,
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) return self->close();
                      self->linger();
                    });
}

// Stops sending, then reads and drops what the peer still sends (for 1 s at most), so a refusal
// written before the request was read is not lost to a reset; then closes.
void Session::linger() {
  beast::error_code ignored;
  stream_.tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.tcp().expires_after(std::chrono::seconds(1));
  drain();
}

void Session::drain() {
  buffer_.consume(buffer_.size());
  stream_.tcp().async_read_some(buffer_.prepare(16 * 1024),
                                [self = shared_from_this()](beast::error_code ec, size_t) {
                                  if (ec) return self->close();
                                  self->drain();
                                });
}

void Session::read() {
  parser_.emplace();
  parser_->body_limit(static_cast<uint64_t>(broker_.settings().max_body));
  parser_->header_limit(16 * 1024);
  stream_.tcp().expires_after(std::chrono::milliseconds(broker_.settings().read_timeout_ms));
  stream_.with([this](auto& stream) {
    http::async_read(stream, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec,
                                                                            size_t) {
      self->on_read(ec);
    });
  });
}

void Session::on_read(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    const micro::Error error(413, "the request passes max_body_bytes (" +
                                      std::to_string(broker_.settings().max_body) + ")",
                             kModule);
    return respond(413, "application/json", micro::error_to_json(error), false, false,
                   !stream_.tls);
  }
  // Bytes that are not HTTP get a 400 (then the connection closes: it cannot be resynchronised);
  // a peer that leaves, times out or stops mid-request just loses its connection.
  const bool unparseable = ec && ec.category() == http::make_error_code(http::error::bad_method)
                                                      .category() &&
                           ec != http::error::end_of_stream && ec != http::error::partial_message;
  if (unparseable)
    return answer(micro::Error::bad_request("not an HTTP request: " + ec.message()), false);
  if (ec) return close();

  auto request = parser_->release();
  const bool keep_alive = request.keep_alive();
  std::string id;
  micro::broker_http::BodyKind kind = micro::broker_http::BodyKind::envelope;
  micro::Error error = micro::broker_http::check_request(
      request.method_string(), request.target(), request[http::field::content_type], kPath,
      broker_.settings().batch ? micro::broker_http::kBatchType : "", id, kind);
  if (!error.ok()) return answer(error, keep_alive);
  if (id.empty())
    return answer(micro::Error::bad_request("the request names no subscription (?id=...)"),
                  keep_alive);
  if (kind == micro::broker_http::BodyKind::batch) {
    // One batch at a time per connection (the next request is read once this one is answered),
    // so the connection keeps its batch and results objects and their storage for the next.
    // After an unusually large batch, fresh objects: the kept ones would hold its memory as long
    // as the connection lives.
    if (!batch_ || batch_->messages_size() > kKeepBatchObjects) {
      batch_ = std::make_shared<micro::broker_http::wire::Batch>();
      results_ = std::make_shared<micro::broker_http::wire::Results>();
      // Beast reads as much as the buffer holds (at least 512 bytes): room for large reads, or a
      // batch of 60 kB takes a hundred receive calls.
      buffer_.reserve(kBatchReadBuffer);
    }
    error = micro::broker_http::decode_batch(request.body(), *batch_);
    if (!error.ok()) return answer(error, keep_alive);
    return broker_.deliver_batch(shared_from_this(), id, batch_, results_, keep_alive);
  }
  micro::Message message;
  std::string topic;
  error = micro::broker_http::decode_envelope(request.body(), message, topic);
  if (!error.ok()) return answer(error, keep_alive);
  broker_.deliver_locally(shared_from_this(), id, std::move(topic), std::move(message),
                          keep_alive);
}

void Session::answer(const micro::Error& error, bool keep_alive) {
  if (error.ok()) return respond(200, "application/json", "{}", false, keep_alive);
  const int code = error.code() >= 400 && error.code() <= 599 ? error.code() : 500;
  micro::Error named = error;
  if (named.id().empty()) named = micro::Error(error.code(), error.detail(), kModule);
  respond(static_cast<unsigned>(code), "application/json", micro::error_to_json(named),
          code == 410, keep_alive);
}

void Session::answer_batch(std::string results, bool keep_alive) {
  respond(200, micro::broker_http::kBatchType, std::move(results), false, keep_alive);
}

void Session::respond(unsigned status, const char* content_type, std::string body, bool gone,
                      bool keep_alive, bool linger) {
  net::dispatch(stream_.tcp().get_executor(), [self = shared_from_this(), status, content_type,
                                               body = std::move(body), gone, keep_alive,
                                               linger]() mutable {
    auto& r = self->response_;
    r = {};
    r.version(11);
    r.result(status);
    r.set(http::field::content_type, content_type);
    if (gone) r.set(kGoneHeader, "1");
    r.body() = std::move(body);
    r.keep_alive(keep_alive);
    r.prepare_payload();
    self->stream_.tcp().expires_after(
        std::chrono::milliseconds(self->broker_.settings().read_timeout_ms));
    self->stream_.with([&](auto& stream) {
      http::async_write(stream, r, [self, keep_alive, linger](beast::error_code ec, size_t) {
        if (!ec && linger) return self->linger();
        if (ec || !keep_alive) return self->close();
        self->read();
      });
    });
  });
}

}  // namespace

MICRO_MODULE("broker-http", "1.0.0", "Peer-to-peer HTTP broker found through the registry",
             micro::plugin<HttpBroker>("broker-http",
                                       "Subscribers listen on HTTP and register; publishers POST"));
