// server-rpc: serves `Service.Method` endpoints over whatever transport the stack has, translating
// each body with the codec its Content-Type names, and keeps the service registered while it runs.
// The request/response mapping onto transport messages is docs/rpc-wire.md.
//
// Threads: requests arrive on the transport's threads and handlers are called there (no hop);
// a handler may answer on any thread. The server's own thread runs timers only: deadlines (one
// timer for all calls, so a call never wakes that thread), re-registration, and releasing
// sockets outside their own callbacks.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "deadlines.hpp"
#include "micro/content_type.hpp"
#include "micro/error_json.hpp"
#include "micro/module.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr const char* kCanonical = "application/protobuf";
constexpr const char* kMetaPrefix = "micro-meta-";

// The metadata of a received C header list (the last of a repeated key wins, as from_c reads
// it); no map is built for a request without metadata.
micro::Metadata metadata_of(micro_metadata_t header) {
  micro::Metadata out;
  const std::string_view prefix = kMetaPrefix;
  for (size_t i = 0; i < header.count && header.items != nullptr; ++i) {
    const std::string_view key = micro::to_view(header.items[i].key);
    if (key.size() > prefix.size() && key.compare(0, prefix.size(), prefix) == 0)
      out.insert_or_assign(std::string(key.substr(prefix.size())),
                           std::string(micro::to_view(header.items[i].value)));
  }
  return out;
}
// The same from a stream's head.
micro::Metadata metadata_of(const micro::Message& head) {
  return metadata_of(micro::MessageView(head).c()->header);
}

// "/Greeter.Hello", "/greeter/Greeter.Hello?x=1" -> "Greeter.Hello".
std::string_view endpoint_from_path(std::string_view path) {
  path = path.substr(0, path.find('?'));
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// The response for an error, as docs/rpc-wire.md gives it.
micro::Message error_message(const micro::Error& error, const std::string& call_id) {
  micro::Message m;
  const int32_t code = error.code() >= 400 && error.code() <= 599 ? error.code() : 500;
  m.body = micro::error_to_json(error);
  m.header[":status"] = std::to_string(code);
  m.header["content-type"] = "application/json";
  m.header["micro-error"] = m.body;
  if (!call_id.empty()) m.header["micro-id"] = call_id;
  return m;
}

class RpcServer;

// One accepted connection. HTTP/1.1 serves one call at a time per connection, so a connection
// is a loop: receive a request, dispatch it, send the answer, receive the next.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(RpcServer& server, micro::Socket socket);
  // Destroys the socket (its pending operations complete first), then tells the server one
  // connection fewer can call it back.
  ~Connection();
  // Receives the next request, read by dispatch from the transport's view.
  void serve_next();
  void send(const micro::Message& message, micro::Done done) { socket_.send(message, std::move(done)); }
  // Sends a unary call's answer (borrowed for the call), then serves the next request.
  void send_answer(const micro_message_t& answer);
  micro::Socket& socket() { return socket_; }
  void close() { socket_.close(); }
  bool closed() const { return closed_.load(); }
  void mark_closed() { closed_ = true; }

 private:
  static void received(void* ctx, const micro_error_t* error,
                       const micro_message_t* message) noexcept;
  static void sent(void* ctx, const micro_error_t* error) noexcept;

  RpcServer& server_;
  micro::Socket socket_;
  std::atomic<bool> closed_{false};
  // This connection, held by its pending recv and send (one of each at most): their C
  // completions' ctx is the connection itself, so nothing is boxed per call.
  std::shared_ptr<Connection> recv_hold_, send_hold_;
};

// What one unary call needs until it is answered: by the handler, or by the deadline.
struct CallState : std::enable_shared_from_this<CallState> {
  void deadline_passed();

  RpcServer* server = nullptr;
  std::shared_ptr<Connection> connection;
  std::string call_id;
  std::string endpoint;
  std::shared_ptr<const micro::Schema> response_schema;
  std::string response_type;  // content type of the answer
  micro::Codec response_codec;
  std::mutex mutex;
  bool answered = false;
  bool cancelled = false;
  long timeout_ms = 0;  // > 0: the caller's deadline is armed under deadline_key
  micro::rpc_common::Deadlines<CallState>::Key deadline_key{};
};

class RpcServer final : public micro::ServerPlugin {
 public:
  static constexpr uint32_t required_kinds = MICRO_KIND_BIT(MICRO_KIND_TRANSPORT) |
                                             MICRO_KIND_BIT(MICRO_KIND_REGISTRY) |
                                             MICRO_KIND_BIT(MICRO_KIND_CODEC);
  static constexpr uint32_t optional_kinds = MICRO_KIND_BIT(MICRO_KIND_BROKER);

  static std::vector<micro::OptionSpec> options() {
    return {
        {"address", MICRO_OPTION_STRING, "Listen address; default: [service] address", ""},
        {"register_ttl_ms", MICRO_OPTION_INT, "TTL of the registration", "30000"},
        {"register_interval_ms", MICRO_OPTION_INT, "How often the registration is renewed",
         "10000"},
        {"max_concurrent_calls", MICRO_OPTION_INT, "Calls served at once; more get 503", "1024"},
        {"drain_timeout_ms", MICRO_OPTION_INT, "How long stop waits for calls in flight", "5000"},
        {"default_content_type", MICRO_OPTION_STRING,
         "Content type assumed when a request names none", "\"application/json\""},
    };
  }

  explicit RpcServer(const micro::CreateContext& ctx)
      : log_(ctx.logger()),
        service_(ctx.service()),
        transport_(ctx.deps().transport),
        registry_(ctx.deps().registry),
        broker_(ctx.deps().broker),
        codecs_(std::vector<micro_codec_t>(ctx.deps().codecs,
                                           ctx.deps().codecs + ctx.deps().codec_count)),
        listen_address_(ctx.options().get_string("address")),
        ttl_ms_(ctx.options().get_int("register_ttl_ms", 30000)),
        interval_ms_(ctx.options().get_int("register_interval_ms", 10000)),
        max_calls_(ctx.options().get_int("max_concurrent_calls", 1024)),
        drain_ms_(ctx.options().get_int("drain_timeout_ms", 5000)),
        default_type_(ctx.options().get_string("default_content_type", "application/json")),
        node_id_(service_.name + "-" + micro::random_hex(8)),
        work_(asio::make_work_guard(io_)),
        deadlines_(io_) {
    if (listen_address_.empty()) listen_address_ = service_.address;
    if (listen_address_.empty()) listen_address_ = "127.0.0.1:0";
    if (ttl_ms_ <= 0 || interval_ms_ <= 0 || max_calls_ <= 0 || drain_ms_ < 0)
      throw micro::Exception(micro::Error::bad_request(
          "register_ttl_ms, register_interval_ms and max_concurrent_calls must be > 0"));
    timer_thread_ = std::thread([this] { io_.run(); });
  }

  ~RpcServer() override {
    stop_now();
    // A connection's callbacks reach this server until the connection is gone (a send that
    // completes as stop drains may still issue the next recv): wait for the last one,
    // releasing the ended ones as they come.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      release_ended();  // the ended ones go now, not at the next sweep
      std::unique_lock<std::mutex> lock(mutex_);
      if (connections_gone_.wait_for(lock, kSweep, [this] { return live_connections_ == 0; }))
        break;
      if (std::chrono::steady_clock::now() > give_up) {
        log_.error(live_connections_, " connection(s) still alive 30 s after stop");
        break;
      }
    }
    deadlines_.stop();
    work_.reset();
    io_.stop();
    timer_thread_.join();
  }

  micro::Error handle(micro::EndpointHandler handler) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (started_) return micro::Error::conflict("endpoints must be added before the server starts");
    if (handler.name.empty()) return micro::Error::bad_request("an endpoint needs a name");
    if (endpoints_.count(handler.name) != 0)
      return micro::Error::conflict("endpoint '" + handler.name + "' is already served");
    const std::string name = handler.name;
    endpoints_.emplace(name, std::make_shared<micro::EndpointHandler>(std::move(handler)));
    return {};
  }

  micro::Error subscribe(const std::string& topic, const micro::SubscribeOptions& options,
                         micro::BrokerHandler handler) override {
    if (!broker_.valid())
      return micro::Error::not_implemented("no broker is configured: name one in [broker] to "
                                           "subscribe to '" + topic + "'");
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return micro::Error::conflict("the server is stopping");
    subscriptions_.push_back({topic, options, std::move(handler), {}});
    if (!started_) return {};
    // Already serving: subscribe now rather than never.
    auto& s = subscriptions_.back();
    auto sub = broker_.subscribe(s.topic, s.handler, s.options);
    if (!sub.ok()) {
      subscriptions_.pop_back();
      return sub.error;
    }
    s.subscription = std::move(sub.value);
    return {};
  }

  void start(micro::Done done) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (started_) return done(micro::Error::conflict("the server is already started"));
      started_ = true;
    }
    auto listener = transport_.listen(listen_address_, [this](const micro::Error& error,
                                                             micro::Socket socket) {
      if (!error.ok()) return log_.warn("accept failed: ", error.to_string());
      accept(std::move(socket));
    });
    if (!listener.ok()) {
      std::lock_guard<std::mutex> lock(mutex_);
      started_ = false;
      return done(micro::Error(listener.error.code(), "cannot listen on " + listen_address_ + ": " +
                                                          listener.error.detail()));
    }
    listener_ = std::move(listener.value);
    address_ = std::string(listener_.address());
    micro::Error subscribed;
    {
      // Under the lock: subscribe() may add to subscriptions_ meanwhile.
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& s : subscriptions_) {
        auto sub = broker_.subscribe(s.topic, s.handler, s.options);
        if (!sub.ok()) {
          subscribed = micro::Error(sub.error.code(), "cannot subscribe to '" + s.topic + "': " +
                                                          sub.error.detail());
          break;
        }
        s.subscription = std::move(sub.value);
      }
      if (!subscribed.ok()) {  // undo: no half-started server
        for (auto& s : subscriptions_) s.subscription.stop();
        started_ = false;
      }
    }
    if (!subscribed.ok()) {
      listener_.reset();
      return done(subscribed);
    }
    micro::Error registered = registry_.register_service(describe(), {uint64_t(ttl_ms_)});
    if (!registered.ok()) {
      log_.error("registering ", service_.name, " failed: ", registered.to_string());
      return done(registered);
    }
    log_.info("serving ", service_.name, " ", service_.version, " on ", address_, " (node ",
              node_id_, ", ", endpoints_.size(), " endpoints)");
    schedule_reregister();
    done({});
  }

  void stop(micro::Done done) override {
    done(stop_now());
  }

  std::string_view address() const override { return address_; }

  // ---- used by connections ----

  void dispatch(const std::shared_ptr<Connection>& connection, const micro_message_t& request);
  // A socket may not be destroyed inside its own callbacks, so an ended connection waits in
  // ended_: the next accept releases it (on a transport thread, outside its callbacks), or else a
  // sweep on the timer thread, at most kSweep later. The timer thread is woken once per sweep,
  // not once per connection: over HTTP/2 every unary call is a connection of its own, and waking
  // that thread per call cost a context switch per call.
  void connection_ended(const std::shared_ptr<Connection>& connection) {
    bool arm = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      connections_.erase(connection);
      ended_.push_back(connection);
      arm = !sweep_armed_;
      sweep_armed_ = true;
    }
    if (arm)
      asio::post(io_, [this] {
        sweep_.expires_after(kSweep);
        sweep_.async_wait([this](const boost::system::error_code&) { release_ended(true); });
      });
  }
  // `sweep`: from the sweep itself, which the next connection_ended then arms again (an accept
  // that releases leaves the pending sweep armed, so it is not posted again at once).
  void release_ended(bool sweep = false) {
    std::vector<std::shared_ptr<Connection>> ended;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ended.swap(ended_);
      if (sweep) sweep_armed_ = false;
    }
  }  // destroyed here, outside the lock (a Connection's destructor takes it)
  void connection_created() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++live_connections_;
  }
  void connection_destroyed() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--live_connections_ == 0) connections_gone_.notify_all();
  }
  void call_finished() {
    if (in_flight_.fetch_sub(1) == 1) {  // the last: wake a stop waiting for the drain
      std::lock_guard<std::mutex> lock(mutex_);
      drained_.notify_all();
    }
  }
  asio::io_context& io() { return io_; }
  micro::rpc_common::Deadlines<CallState>& deadlines() { return deadlines_; }
  const std::string& node_id() const { return node_id_; }
  const std::string& service_name() const { return service_.name; }
  const micro::Logger& log() const { return log_; }

 private:
  struct Subscription {
    std::string topic;
    micro::SubscribeOptions options;
    micro::BrokerHandler handler;
    micro::Subscription subscription;
  };

  void accept(micro::Socket socket) {
    release_ended();
    auto connection = std::make_shared<Connection>(*this, std::move(socket));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;  // the socket closes as `connection` goes
      connections_.insert(connection);
    }
    connection->serve_next();
  }

  micro::Service describe() const {
    micro::Service s;
    s.name = service_.name;
    s.version = service_.version;
    s.metadata = service_.metadata;
    for (const auto& [name, h] : endpoints_) {
      micro::Endpoint e;
      e.name = name;
      if (h->request_schema) e.request = h->request_schema->message_name;
      if (h->response_schema) e.response = h->response_schema->message_name;
      e.metadata = h->metadata;
      if (h->flags & MICRO_ENDPOINT_STREAMING) e.metadata["stream"] = "true";
      s.endpoints.push_back(std::move(e));
    }
    s.nodes.push_back({node_id_, address_,
                       {{"transport", "http"}, {"server", "rpc"}, {"protocol", "micro"}}});
    return s;
  }

  void schedule_reregister() {
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(interval_ms_));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      reregister_ = timer;
    }
    timer->async_wait([this, timer](const boost::system::error_code& ec) {
      if (ec) return;
      registry_.register_service(describe(), {uint64_t(ttl_ms_)}, [this](const micro::Error& e) {
        if (!e.ok()) log_.warn("renewing the registration of ", service_.name, " failed: ",
                               e.to_string(), "; retrying in ", interval_ms_, " ms");
      });
      schedule_reregister();
    });
  }

  // Deregisters, stops accepting, waits for calls in flight (bounded), closes connections.
  micro::Error stop_now() {
    std::set<std::shared_ptr<Connection>> connections;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!started_ || stopping_) return {};
      stopping_ = true;
      if (reregister_) asio::post(io_, [t = reregister_] { t->cancel(); });
    }
    micro::Error result = registry_.deregister_service(describe());
    if (!result.ok()) log_.warn("deregistering ", service_.name, " failed: ", result.to_string());
    listener_.reset();  // stops accepting
    for (auto& s : subscriptions_) s.subscription.stop();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!drained_.wait_for(lock, std::chrono::milliseconds(drain_ms_),
                             [this] { return in_flight_ == 0; }))
        log_.warn(in_flight_.load(), " call(s) still running after ", drain_ms_,
                " ms; closing anyway");
      connections.swap(connections_);
    }
    for (const auto& c : connections) c->close();
    log_.info("stopped ", service_.name, " (node ", node_id_, ")");
    return {};
  }

  void dispatch_stream(const std::shared_ptr<Connection>& connection, micro::Message head,
                       std::shared_ptr<micro::EndpointHandler> handler);

  micro::Logger log_;
  const micro::ServiceInfo service_;
  micro::Transport transport_;
  micro::Registry registry_;
  micro::Broker broker_;
  micro::CodecSet codecs_;
  std::string listen_address_;
  const int64_t ttl_ms_, interval_ms_, max_calls_, drain_ms_;
  const std::string default_type_;
  const std::string node_id_;

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  micro::rpc_common::Deadlines<CallState> deadlines_;
  asio::steady_timer sweep_{io_};  // releases ended connections (connection_ended)
  static constexpr std::chrono::milliseconds kSweep{50};
  std::vector<std::shared_ptr<Connection>> ended_;  // under mutex_: see connection_ended
  bool sweep_armed_ = false;                        // under mutex_
  std::thread timer_thread_;

  std::mutex mutex_;
  std::condition_variable drained_;
  std::condition_variable connections_gone_;
  int64_t live_connections_ = 0;  // Connection objects alive (under mutex_)
  bool started_ = false, stopping_ = false;
  std::atomic<int64_t> in_flight_{0};
  // Filled before start and only read after it (handle() refuses later adds): read unlocked.
  std::map<std::string, std::shared_ptr<micro::EndpointHandler>, std::less<>> endpoints_;
  std::vector<Subscription> subscriptions_;
  std::set<std::shared_ptr<Connection>> connections_;
  std::shared_ptr<asio::steady_timer> reregister_;
  micro::Listener listener_;
  std::string address_;

  friend class RpcReply;
  friend class ServerStream;
};

Connection::Connection(RpcServer& server, micro::Socket socket)
    : server_(server), socket_(std::move(socket)) {
  server_.connection_created();
}

Connection::~Connection() {
  socket_ = micro::Socket{};
  server_.connection_destroyed();
}

void Connection::serve_next() {
  recv_hold_ = shared_from_this();
  socket_.recv_c(&Connection::received, this);
}

void Connection::received(void* ctx, const micro_error_t* error,
                          const micro_message_t* message) noexcept {
  const std::shared_ptr<Connection> self = std::move(static_cast<Connection*>(ctx)->recv_hold_);
  (void)micro::detail::guarded([&] {
    if (error != nullptr || message == nullptr) {
      self->mark_closed();
      return self->server_.connection_ended(self);
    }
    self->server_.dispatch(self, micro::read_struct(message));
  });
}

void Connection::send_answer(const micro_message_t& answer) {
  send_hold_ = shared_from_this();
  socket_.send_c(answer, &Connection::sent, this);
}

void Connection::sent(void* ctx, const micro_error_t* error) noexcept {
  const std::shared_ptr<Connection> self = std::move(static_cast<Connection*>(ctx)->send_hold_);
  (void)micro::detail::guarded([&] {
    self->server_.call_finished();
    if (error != nullptr) return self->server_.connection_ended(self);
    self->serve_next();
  });
}

// Sends the answer of one call (the handler's `response`, borrowed for the call, or `error`:
// the handler's or the deadline's 408) exactly once. The handler's answer goes out as views of
// its own headers and body, with ours added (docs/rpc-wire.md): no map, no copy of the body
// unless the codec translates it.
void answer(RpcServer& server, const std::shared_ptr<CallState>& call, const micro::Error& error,
            const micro_message_t* response) {
  {
    std::lock_guard<std::mutex> lock(call->mutex);
    if (call->answered) return;
    call->answered = true;
    if (call->timeout_ms > 0) server.deadlines().remove(call->deadline_key);
  }
  const micro_message_t handler_answer =
      response != nullptr ? micro::read_struct(response)
                          : micro_message_t{sizeof(micro_message_t), {nullptr, 0}, {nullptr, 0}};
  micro::Error failure;
  if (!error.ok()) failure = micro::Error(error).with_id(server.service_name());
  std::string encoded;
  const bool typed = error.ok() && call->response_schema != nullptr;
  if (typed) {
    micro::Error e = call->response_codec.encode(call->response_type,
                                                 micro::to_view(handler_answer.body),
                                                 call->response_schema.get(), encoded);
    if (!e.ok())
      failure = micro::Error::internal("cannot encode the response of " + call->endpoint + ": " +
                                       e.detail());
  }
  if (!failure.ok()) {
    micro::Message out = error_message(failure, call->call_id);
    out.header["micro-node"] = server.node_id();
    const micro::MessageView view(out);
    return call->connection->send_answer(*view.c());
  }
  // The handler's headers, less those we set; a list from any C handler may repeat a key (the
  // last wins, as from_c reads it) and come in any order: sort_unique settles both.
  micro::KvList header;
  bool has_content_type = false;
  const micro_metadata_t theirs = handler_answer.header;
  for (size_t i = 0; i < theirs.count && theirs.items != nullptr; ++i) {
    const std::string_view key = micro::to_view(theirs.items[i].key);
    if (key == ":status" || key == "micro-node" || (key == "micro-id" && !call->call_id.empty()) ||
        (key == "content-type" && typed))
      continue;
    has_content_type = has_content_type || key == "content-type";
    header.add(key, micro::to_view(theirs.items[i].value));
  }
  if (!has_content_type) header.add("content-type", call->response_type);
  header.add(":status", "200");
  if (!call->call_id.empty()) header.add("micro-id", call->call_id);
  header.add("micro-node", server.node_id());
  header.sort_unique();
  const micro_message_t out{sizeof(micro_message_t), header.c(),
                            typed ? micro::to_c_bytes(encoded) : handler_answer.body};
  call->connection->send_answer(out);
}

// The handler's side of a unary call.
class RpcReply final : public micro::ReplyImpl {
 public:
  RpcReply(RpcServer& server, std::shared_ptr<CallState> call)
      : server_(server), call_(std::move(call)) {}
  void send(const micro::Error& error, micro::Message response) override {
    const micro::MessageView view(response);
    answer(server_, call_, error, error.ok() ? view.c() : nullptr);
  }
  // A C handler's answer (every handler's, through the ABI): read from its own view.
  bool send_c(const micro_error_t* error, const micro_message_t* response) noexcept override {
    const micro::Error failed = micro::detail::guarded([&] {
      answer(server_, call_, micro::Error::from_c(error), error == nullptr ? response : nullptr);
    });
    if (!failed.ok()) (void)micro::detail::guarded([&] { answer(server_, call_, failed, nullptr); });
    return true;
  }
  bool cancelled() const override {
    std::lock_guard<std::mutex> lock(call_->mutex);
    return call_->cancelled || call_->connection->closed();
  }

 private:
  RpcServer& server_;
  std::shared_ptr<CallState> call_;
};

void RpcServer::dispatch(const std::shared_ptr<Connection>& connection,
                         const micro_message_t& request) {
  // Read from the transport's view: no Message is built for a unary call.
  const micro_metadata_t header = request.header;
  std::string_view endpoint = micro::find_value(header, "micro-endpoint");
  if (endpoint.empty()) endpoint = endpoint_from_path(micro::find_value(header, ":path"));
  std::string_view content_type = micro::find_value(header, "content-type");
  if (content_type.empty()) content_type = default_type_;
  const std::string_view accept = micro::find_value(header, "accept");
  const bool stream = micro::find_value(header, "micro-stream") == "1";

  // One call state serves both outcomes: an error answered here, or the handler's answer.
  auto call = std::make_shared<CallState>();
  call->server = this;
  call->connection = connection;
  call->call_id = micro::find_value(header, "micro-id");
  call->endpoint = endpoint;
  auto fail = [&](const micro::Error& error) {
    ++in_flight_;
    answer(*this, call, error, nullptr);
  };

  std::shared_ptr<micro::EndpointHandler> handler;
  if (auto it = endpoints_.find(endpoint); it != endpoints_.end()) handler = it->second;
  if (handler == nullptr) {
    std::string known;
    for (const auto& [name, h] : endpoints_) known += (known.empty() ? "" : ", ") + name;
    return fail(micro::Error::not_found("endpoint '" + call->endpoint + "' not found on service '" +
                                        service_.name + "' (it serves: " + known + ")"));
  }
  if (stream) return dispatch_stream(connection, micro::from_c(&request), handler);
  if (handler->flags & MICRO_ENDPOINT_STREAMING)
    return fail(micro::Error::bad_request("endpoint '" + call->endpoint +
                                          "' is a stream: open it with Micro-Stream: 1"));
  if (in_flight_.load() >= max_calls_)
    return fail(micro::Error::unavailable("server busy: " + std::to_string(max_calls_) +
                                          " calls in flight (max_concurrent_calls)"));

  call->response_schema = handler->response_schema;

  micro::Request req;
  req.service = service_.name;
  req.endpoint = call->endpoint;
  req.accept = accept;
  req.metadata = metadata_of(header);
  req.request_schema = handler->request_schema;
  req.response_schema = handler->response_schema;
  if (handler->request_schema) {
    // Typed: the handler reads protobuf binary whatever the caller sent.
    auto codec = codecs_.find(content_type);
    if (!codec.ok()) return fail(codec.error);
    auto reply_codec = codecs_.for_response(req.accept, content_type);
    if (!reply_codec.ok()) return fail(reply_codec.error);
    call->response_type = reply_codec.value.first;
    call->response_codec = reply_codec.value.second;
    micro::Error decoded =
        codec.value.decode(content_type, micro::to_view(request.body),
                           handler->request_schema.get(), req.body);
    if (!decoded.ok()) return fail(decoded);
    req.content_type = kCanonical;
  } else {
    req.content_type = content_type;
    req.body = micro::to_view(request.body);
    call->response_type = std::string(accept.empty() || accept == "*/*" ? content_type : accept);
  }
  ++in_flight_;
  if (const std::string_view timeout = micro::find_value(header, "micro-timeout");
      !timeout.empty()) {
    const long ms = std::strtol(std::string(timeout).c_str(), nullptr, 10);
    if (ms > 0) {
      std::lock_guard<std::mutex> lock(call->mutex);  // answer() reads the key under it
      call->timeout_ms = ms;
      call->deadline_key =
          deadlines_.add(Clock::now() + std::chrono::milliseconds(ms), std::weak_ptr(call));
    }
  }
  micro::Reply reply(micro::to_handle(std::make_unique<RpcReply>(*this, call)));
  micro::Error thrown = micro::detail::guarded([&] { handler->on_call(std::move(req), reply); });
  if (!thrown.ok()) reply.fail(thrown);
}

// On the timer thread: the caller has given up waiting.
void CallState::deadline_passed() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    cancelled = true;
  }
  server->log().debug(endpoint, " passed its caller's deadline of ", timeout_ms, " ms");
  answer(*server, shared_from_this(),
         micro::Error::timeout(endpoint + " did not answer within the caller's deadline of " +
                               std::to_string(timeout_ms) + " ms"),
         nullptr);
}

// The handler's side of a stream: frames in the stream's content type, translated to and from
// protobuf binary for typed endpoints. Calls go straight to the socket: the transport writes
// frames behind and reads them ahead itself (transport-http completes a send or a recv on the
// handler's thread when it can), so a blocking handler rarely waits for a transport thread.
class ServerStream final : public micro::StreamImpl {
 public:
  ServerStream(RpcServer& server, std::shared_ptr<Connection> connection,
               std::shared_ptr<micro::EndpointHandler> handler, std::string content_type,
               micro::Codec codec)
      : server_(server),
        connection_(std::move(connection)),
        handler_(std::move(handler)),
        content_type_(std::move(content_type)),
        codec_(codec),
        canonical_(micro::media_type(content_type_) == kCanonical),
        alive_(std::make_shared<Alive>()) {
    alive_->stream = this;
  }

  ~ServerStream() override {
    {
      std::lock_guard<std::recursive_mutex> lock(alive_->mutex);
      alive_->alive = false;
    }
    server_.call_finished();
    // A stream that ended cleanly reads the caller's remaining frames (bounded by one second)
    // before closing: closing with unread input makes TCP reset the connection, and a reset can
    // overtake the last frames on their way to the caller.
    if (ended_.load()) {
      RpcServer& server = server_;
      auto connection = connection_;
      auto timer = std::make_shared<asio::steady_timer>(server.io(), std::chrono::seconds(1));
      timer->async_wait([connection](const boost::system::error_code& ec) {
        if (!ec) connection->close();
      });
      discard(connection, [&server, connection, timer] {
        asio::post(server.io(), [timer] { timer->cancel(); });
        server.connection_ended(connection);
      });
      return;
    }
    connection_->close();
    server_.connection_ended(connection_);
  }

  void send(micro::Message message, micro::Done done) override {
    micro::Message frame;
    const auto error = message.header.find("micro-error");
    const bool failure = error != message.header.end();
    // Canonical to canonical (protobuf binary both) is the identity: no codec call per frame.
    if (handler_->response_schema && !failure && !canonical_) {
      micro::Error e = codec_.encode(content_type_, message.body, handler_->response_schema.get(),
                                     frame.body);
      if (!e.ok()) return done(e);
    } else {
      frame.body = std::move(message.body);
    }
    if (failure) frame.header["micro-error"] = error->second;
    connection_->socket().send(frame, guard(std::move(done)));
  }

  void recv(micro::MessageCallback on_message) override {
    auto alive = alive_;
    connection_->socket().recv([this, alive, on_message = std::move(on_message)](
                                   const micro::Error& error,
                                   std::optional<micro::Message> message) {
      std::lock_guard<std::recursive_mutex> lock(alive->mutex);
      if (!alive->alive) return;
      if (!error.ok() || !message || !handler_->request_schema)
        return on_message(error, std::move(message));
      micro::Message canonical;
      micro::Error e = codec_.decode(content_type_, message->body, handler_->request_schema.get(),
                                     canonical.body);
      if (!e.ok()) return on_message(e, std::nullopt);
      on_message({}, std::move(canonical));
    });
  }

  void close_send(micro::Done done) override {
    connection_->socket().close_send(guard([this, done = std::move(done)](const micro::Error& e) {
      if (e.ok()) ended_ = true;
      done(e);
    }));
  }

  void cancel() override { connection_->close(); }

  // The C calls of a typed handler's frames go to the socket with completions of ours that need
  // no allocation: the caller's C completion waits in alive_ (one send and one recv pending at
  // most), and a received frame is decoded into a buffer kept there. Error frames and frames to
  // encode take the ordinary path.
  bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    if (handler_->response_schema && !canonical_) return false;
    for (size_t i = 0; i < message.header.count && message.header.items != nullptr; ++i)
      if (micro::to_view(message.header.items[i].key) == "micro-error") return false;
    {
      std::lock_guard<std::recursive_mutex> lock(alive_->mutex);
      if (!alive_->alive || alive_->send_hold != nullptr) return false;
      alive_->send_fn = done;
      alive_->send_ctx = ctx;
      alive_->send_hold = alive_;
    }
    const micro_message_t frame{sizeof(micro_message_t), {nullptr, 0}, message.body};
    connection_->socket().send_c(frame, &sent, alive_.get());
    return true;
  }
  bool recv_c(micro_message_fn on_message, void* ctx) noexcept override {
    {
      std::lock_guard<std::recursive_mutex> lock(alive_->mutex);
      if (!alive_->alive || alive_->recv_hold != nullptr) return false;
      alive_->recv_fn = on_message;
      alive_->recv_ctx = ctx;
      alive_->recv_hold = alive_;
    }
    connection_->socket().recv_c(&received, alive_.get());
    return true;
  }

 private:
  // Receives and drops frames until the caller's end of stream (or an error: the timer's
  // close), then calls `on_end` once. The callbacks hold the connection, so its socket lives on.
  static void discard(std::shared_ptr<Connection> connection, std::function<void()> on_end) {
    micro::Socket& socket = connection->socket();
    socket.recv([connection = std::move(connection), on_end = std::move(on_end)](
                    const micro::Error& error, std::optional<micro::Message> message) mutable {
      if (!error.ok() || !message) return on_end();
      discard(std::move(connection), std::move(on_end));
    });
  }

  struct Alive {
    std::recursive_mutex mutex;  // held while a callback runs, so the destructor waits for it
    bool alive = true;
    ServerStream* stream = nullptr;  // while alive
    // send_c / recv_c: the caller's completion, and this block held until the socket completes.
    micro_done_fn send_fn = nullptr;
    void* send_ctx = nullptr;
    std::shared_ptr<Alive> send_hold;
    micro_message_fn recv_fn = nullptr;
    void* recv_ctx = nullptr;
    std::shared_ptr<Alive> recv_hold;
    std::string canonical;  // the frame recv_c decoded, for its caller to copy
  };
  static void sent(void* ctx, const micro_error_t* error) noexcept {
    auto* alive = static_cast<Alive*>(ctx);
    std::shared_ptr<Alive> hold;  // released after the lock
    std::lock_guard<std::recursive_mutex> lock(alive->mutex);
    hold = std::move(alive->send_hold);
    if (alive->alive) alive->send_fn(alive->send_ctx, error);
  }
  static void received(void* ctx, const micro_error_t* error,
                       const micro_message_t* message) noexcept {
    auto* alive = static_cast<Alive*>(ctx);
    std::shared_ptr<Alive> hold;  // released after the lock
    std::lock_guard<std::recursive_mutex> lock(alive->mutex);
    hold = std::move(alive->recv_hold);
    if (!alive->alive) return;
    const micro_message_fn fn = alive->recv_fn;
    void* const fn_ctx = alive->recv_ctx;
    const ServerStream& self = *alive->stream;
    if (error != nullptr || message == nullptr || !self.handler_->request_schema)
      return fn(fn_ctx, error, message);
    const micro_message_t wire = micro::read_struct(message);
    alive->canonical.clear();
    micro::Error decoded = micro::detail::guarded([&] {
      micro::Error e = self.codec_.decode(self.content_type_, micro::to_view(wire.body),
                                          self.handler_->request_schema.get(), alive->canonical);
      if (!e.ok()) throw micro::Exception(std::move(e));
    });
    if (!decoded.ok()) {
      const micro_error_t view = decoded.view();
      return fn(fn_ctx, &view, nullptr);
    }
    const micro_message_t canonical{sizeof(micro_message_t), {nullptr, 0},
                                    micro::to_c_bytes(alive->canonical)};
    fn(fn_ctx, nullptr, &canonical);
  }
  micro::Done guard(micro::Done done) {
    return [alive = alive_, done = std::move(done)](const micro::Error& e) {
      std::lock_guard<std::recursive_mutex> lock(alive->mutex);
      if (alive->alive) done(e);
    };
  }

  RpcServer& server_;
  std::shared_ptr<Connection> connection_;
  std::shared_ptr<micro::EndpointHandler> handler_;
  std::string content_type_;
  micro::Codec codec_;
  const bool canonical_;  // the stream's content type is the canonical protobuf binary
  std::shared_ptr<Alive> alive_;
  std::atomic<bool> ended_{false};  // our response is complete
};

void RpcServer::dispatch_stream(const std::shared_ptr<Connection>& connection, micro::Message head,
                                std::shared_ptr<micro::EndpointHandler> handler) {
  std::string content_type = micro::header_value(head, "content-type");
  if (content_type.empty()) content_type = default_type_;
  micro::Codec codec;
  if (handler->request_schema) {
    auto found = codecs_.find(content_type);
    if (!found.ok()) {
      micro::Message error = error_message(found.error, micro::header_value(head, "micro-id"));
      connection->send(error, [this, connection](const micro::Error&) {
        connection_ended(connection);
      });
      return;
    }
    codec = found.value;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++in_flight_;
    connections_.erase(connection);  // the stream owns it from here
  }
  micro::Request req;
  req.service = service_.name;
  req.endpoint = handler->name;
  req.content_type = handler->request_schema ? kCanonical : content_type;
  req.metadata = metadata_of(head);
  req.request_schema = handler->request_schema;
  req.response_schema = handler->response_schema;
  // The caller's stream opens once it has the response head, so send it before the handler
  // runs: a handler that reads first would otherwise wait for a caller waiting for it.
  micro::Message response_head;
  response_head.header[":status"] = "200";
  response_head.header["content-type"] = content_type;
  connection->send(response_head, [this, connection, handler, content_type, codec,
                          req = std::move(req)](const micro::Error& sent) mutable {
    if (!sent.ok()) {
      call_finished();
      return connection_ended(connection);
    }
    auto impl = std::make_unique<ServerStream>(*this, connection, handler, content_type, codec);
    micro::Stream stream(micro::to_handle(std::move(impl)));
    micro::Error thrown =
        micro::detail::guarded([&] { handler->on_stream(std::move(req), std::move(stream)); });
    if (!thrown.ok()) log_.error("stream handler ", handler->name, " threw: ", thrown.detail());
  });
}

}  // namespace

MICRO_MODULE("server-rpc", "1.0.0", "RPC server: endpoints over the transport, registered in the registry",
             micro::plugin<RpcServer>("server-rpc",
                                      "Serves Service.Method endpoints and keeps the service "
                                      "registered"));
