// client-rpc: calls and streams to services found through the selector, over the transport, with
// a deadline, retries on other nodes for errors that are safe to retry, and go-micro's error
// model whatever went wrong. The mapping onto transport messages is docs/rpc-wire.md.
//
// Threads: completions run on the transport's threads (no hop on the way back); the client's own
// thread runs the deadline and backoff timers and releases sockets outside their own callbacks.
//
// The hot path takes no thread hop: a finished call keeps its socket for the next call to the
// same address (IdleSockets) instead of destroying it, which would have to happen on the
// client's thread; and its deadline is one entry in a shared queue (Deadlines) rather than a
// timer of its own, which would have to be cancelled on the client's thread.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "deadlines.hpp"
#include "micro/error_json.hpp"
#include "micro/module.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

class RpcClient;

// Unary sockets that finished a call cleanly, kept for the next call to the same address: the
// transport keeps their connection alive, so a call that finds one sends at once, with no dial.
// A socket dialed with a shorter timeout than a call wants is not used for it (the transport
// reads with the dial's timeout). Thread-safe.
class IdleSockets {
 public:
  static constexpr size_t kPerAddress = 64;
  static constexpr Clock::duration kMaxIdle = std::chrono::seconds(20);

  struct Entry {
    std::unique_ptr<micro::Socket> socket;
    uint64_t timeout_ms = 0;
    Clock::time_point since;
  };

  // A socket for `address` dialed with at least `timeout_ms`, or null. Sockets idle too long are
  // added to `stale` (to be released by the caller outside this lock).
  std::unique_ptr<micro::Socket> take(const std::string& address, uint64_t timeout_ms,
                                      std::vector<std::unique_ptr<micro::Socket>>& stale) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = idle_.find(address);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    const auto now = Clock::now();
    std::unique_ptr<micro::Socket> found;
    for (size_t i = list.size(); i-- > 0 && found == nullptr;) {
      if (now - list[i].since > kMaxIdle) {
        stale.push_back(std::move(list[i].socket));
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      } else if (list[i].timeout_ms >= timeout_ms) {
        found = std::move(list[i].socket);
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    return found;
  }
  // Keeps `socket`; gives it back when the address has kPerAddress already (or after clear()).
  std::unique_ptr<micro::Socket> put(const std::string& address, uint64_t timeout_ms,
                                     std::unique_ptr<micro::Socket> socket) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return socket;
    auto& list = idle_[address];
    if (list.size() >= kPerAddress) return socket;
    list.push_back({std::move(socket), timeout_ms, Clock::now()});
    return nullptr;
  }
  // Every idle socket, for the owner to destroy; later puts are refused.
  std::vector<std::unique_ptr<micro::Socket>> clear() {
    std::vector<std::unique_ptr<micro::Socket>> out;
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    for (auto& [address, list] : idle_)
      for (auto& e : list) out.push_back(std::move(e.socket));
    idle_.clear();
    return out;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::vector<Entry>> idle_;
  bool closed_ = false;
};

// One call, from the first attempt to its answer. Held by the callbacks in flight.
//
// The request goes to the transport as a C view of the call's own strings (send_c), and the
// response comes back as the transport's view (recv_c), which a C caller's completion receives
// as it is: no header map is built on the way out or back.
class Call : public std::enable_shared_from_this<Call> {
 public:
  // Answers a C caller (`done(ctx, ...)`, exactly once) or, when `cpp_done` is set, a C++ one.
  Call(RpcClient& client, micro::Request request, micro::CallOptions options,
       micro_response_fn done, void* done_ctx, micro::ResponseCallback cpp_done = {});
  void start();
  void deadline_passed();
  // Fails a call that could not start (start threw). Exactly once, as every finish.
  void abort(const micro::Error& error) { finish(error, nullptr); }

 private:
  // One attempt's send and then recv on its socket: the C completions' ctx. It holds the call,
  // and its number tells a completion from an earlier attempt's socket (already given up).
  struct Exchange {
    std::shared_ptr<Call> call;
    uint32_t attempt;
  };
  static void selected(void* ctx, const micro_error_t* error, const micro_node_t* node) noexcept;
  static void sent(void* ctx, const micro_error_t* error) noexcept;
  static void received(void* ctx, const micro_error_t* error,
                       const micro_message_t* response) noexcept;

  void attempt();
  void dial(std::string_view node_id, std::string_view address);
  void send(uint32_t attempt, micro::Socket socket);
  void received(uint32_t attempt, const micro_error_t* error, const micro_message_t* response);
  // A transport failure on this attempt's node: try another node if that is safe, else give up.
  void failed(uint32_t attempt, micro::Error error, bool request_sent);
  // `response`: the answer (NULL with an error), borrowed for the call. `reusable`: the exchange
  // completed, so the socket may carry the next call.
  void finish(const micro::Error& error, const micro_message_t* response, bool reusable = false);
  void complete(const micro::Error& error, const micro_message_t* response) noexcept;
  void release_socket();
  uint64_t remaining_ms() const;

  RpcClient& client_;
  const micro::Request request_;  // its schemas are not kept: the client reads none
  const std::string path_;        // ":path", "/" + the endpoint
  const std::vector<std::string> meta_keys_;  // RpcClient::meta_keys: the headers' names
  micro::CallOptions options_;
  micro_response_fn done_fn_;
  void* done_ctx_;
  micro::ResponseCallback cpp_done_;
  const std::string call_id_;
  uint64_t timeout_ms_ = 0;  // the whole call's; sockets are dialed with it
  Clock::time_point deadline_;
  micro::rpc_common::Deadlines<Call>::Key deadline_key_{};
  uint32_t retries_left_ = 0;
  std::vector<std::string> tried_;  // the nodes of earlier attempts (the current one: node_id_)
  std::shared_ptr<Call> selecting_;  // holds the call while the selector chooses its node
  std::recursive_mutex mutex_;
  bool finished_ = false;
  // The node of the current attempt (under mutex_; callbacks carry their attempt's number, so
  // one from an earlier attempt is recognised and ignored).
  uint32_t attempt_ = 0;
  std::string node_id_;
  std::string address_;  // of the socket below
  std::unique_ptr<micro::Socket> socket_;
};

// Opening a stream: select a node, dial it, send the open message, read the response head. One
// object carries the request, node and socket through the steps (each completion holds it).
class StreamOpen : public std::enable_shared_from_this<StreamOpen> {
 public:
  StreamOpen(RpcClient& client, micro::Request request, micro::StreamImplCallback done)
      : client_(client), request_(std::move(request)), done_(std::move(done)) {}
  void start(const micro::CallOptions& options);

 private:
  void dial(const micro::Node& node);
  void send_open(micro::Socket socket);
  void head(const micro::Error& error, std::optional<micro::Message> head);
  // Fails the open; the socket (if any) is released off this callback.
  void fail(const micro::Error& error);

  RpcClient& client_;
  const micro::Request request_;
  micro::StreamImplCallback done_;
  micro::Node node_;
  std::unique_ptr<micro::Socket> socket_;
};

// The caller's side of a stream, on one transport socket, called straight through: the
// transport writes frames behind and reads them ahead itself (transport-http completes a send
// or a recv on the caller's thread when it can), so the caller's blocking send and recv rarely
// wait for a transport thread.
class ClientStream final : public micro::StreamImpl {
 public:
  explicit ClientStream(micro::Socket socket) : socket_(std::move(socket)) {}
  ~ClientStream() override {
    socket_.reset();  // completes what is pending (with 499) before it returns
  }
  void send(micro::Message message, micro::Done done) override {
    if (message.header.empty()) return socket_.send(message, std::move(done));
    micro::Message frame;  // a frame carries the body only
    frame.body = std::move(message.body);
    socket_.send(frame, std::move(done));
  }
  void recv(micro::MessageCallback on_message) override { socket_.recv(std::move(on_message)); }
  void close_send(micro::Done done) override { socket_.close_send(std::move(done)); }
  void cancel() override { socket_.close(); }

  // The C calls go to the socket with the caller's own completion: nothing here needs to see
  // the result, so there is no copy of the message and no box per frame.
  bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept override {
    micro_message_t frame = message;  // a frame carries the body only
    frame.header = micro_metadata_t{nullptr, 0};
    socket_.send_c(frame, done, ctx);
    return true;
  }
  bool recv_c(micro_message_fn on_message, void* ctx) noexcept override {
    socket_.recv_c(on_message, ctx);
    return true;
  }

 private:
  micro::Socket socket_;
};

class RpcClient final : public micro::ClientPlugin {
 public:
  static constexpr uint32_t required_kinds = MICRO_KIND_BIT(MICRO_KIND_SELECTOR) |
                                             MICRO_KIND_BIT(MICRO_KIND_TRANSPORT) |
                                             MICRO_KIND_BIT(MICRO_KIND_CODEC);
  static constexpr uint32_t optional_kinds = MICRO_KIND_BIT(MICRO_KIND_BROKER);

  static std::vector<micro::OptionSpec> options() {
    return {
        {"content_type", MICRO_OPTION_STRING, "Content type of requests that name none",
         "\"application/json\""},
        {"timeout_ms", MICRO_OPTION_INT, "Deadline of a call, retries included", "5000"},
        {"retries", MICRO_OPTION_INT, "Further nodes tried on a retryable error", "1"},
        {"backoff_ms", MICRO_OPTION_INT, "Wait before retry n is n times this", "10"},
    };
  }

  explicit RpcClient(const micro::CreateContext& ctx)
      : log_(ctx.logger()),
        selector_(ctx.deps().selector),
        transport_(ctx.deps().transport),
        broker_(ctx.deps().broker),
        content_type_(ctx.options().get_string("content_type", "application/json")),
        timeout_ms_(ctx.options().get_int("timeout_ms", 5000)),
        retries_(ctx.options().get_int("retries", 1)),
        backoff_ms_(ctx.options().get_int("backoff_ms", 10)),
        work_(asio::make_work_guard(io_)),
        deadlines_(io_) {
    if (timeout_ms_ <= 0 || retries_ < 0 || backoff_ms_ < 0)
      throw micro::Exception(micro::Error::bad_request(
          "timeout_ms must be > 0, retries and backoff_ms >= 0"));
    thread_ = std::thread([this] { io_.run(); });
  }

  // Calls must be finished (the contract of destroy); what remains is releasing their sockets.
  ~RpcClient() override {
    deadlines_.stop();
    idle_.clear();  // destroyed here: not inside any of their callbacks
    work_.reset();
    thread_.join();
  }

  void call(micro::Request request, const micro::CallOptions& options,
            micro::ResponseCallback done) override {
    if (micro::Error invalid = check(request, options); !invalid.ok()) return done(invalid, {});
    if (request.content_type.empty()) request.content_type = content_type_;
    request.request_schema.reset();
    request.response_schema.reset();
    std::make_shared<Call>(*this, std::move(request), options, nullptr, nullptr, std::move(done))
        ->start();
  }

  // The C caller's call (every call through the ABI): the request's strings are copied for the
  // attempts, and the response reaches `on_response` as the transport's own view.
  bool call_c(const micro_request_t& request, const micro_call_options_t* options,
              micro_response_fn on_response, void* ctx) noexcept override {
    std::shared_ptr<Call> call;
    micro::Error error = micro::detail::guarded([&] {
      micro::Request r;  // no schemas: the client reads none
      r.service = micro::to_view(request.service);
      r.endpoint = micro::to_view(request.endpoint);
      r.content_type = micro::to_view(request.content_type);
      r.accept = micro::to_view(request.accept);
      r.metadata = micro::from_c(request.metadata);
      r.body = micro::to_view(request.body);
      micro::CallOptions o = micro::from_c(options);
      if (micro::Error invalid = check(r, o); !invalid.ok()) throw micro::Exception(invalid);
      if (r.content_type.empty()) r.content_type = content_type_;
      call = std::make_shared<Call>(*this, std::move(r), std::move(o), on_response, ctx);
    });
    if (call == nullptr) {
      const micro_error_t view = error.view();
      on_response(ctx, &view, nullptr);
      return true;
    }
    error = micro::detail::guarded([&] { call->start(); });
    if (!error.ok()) call->abort(error);
    return true;
  }

  void stream(micro::Request request, const micro::CallOptions& options,
              micro::StreamImplCallback done) override {
    if (request.content_type.empty()) request.content_type = content_type_;
    std::make_shared<StreamOpen>(*this, std::move(request), std::move(done))->start(options);
  }

  friend class Call;
  friend class StreamOpen;

  void publish(const std::string& topic, micro::Message message, micro::Done done) override {
    if (!broker_.valid())
      return done(micro::Error::not_implemented("no broker is configured: name one in [broker] to "
                                                "publish to '" + topic + "'"));
    broker_.publish(topic, message, std::move(done));
  }

  // ---- used by calls ----

  static micro::Error check(const micro::Request& request, const micro::CallOptions& options) {
    if (request.service.empty() && options.address.empty())
      return micro::Error::bad_request("a call needs a service name or an address");
    if (request.endpoint.empty())
      return micro::Error::bad_request("a call needs an endpoint (\"Greeter.Hello\")");
    return {};
  }

  // "micro-meta-" + each metadata key of `request`, in order: the header names request_headers
  // gives its metadata.
  static std::vector<std::string> meta_keys(const micro::Request& request) {
    std::vector<std::string> keys;
    keys.reserve(request.metadata.size());
    for (const auto& [key, value] : request.metadata) keys.push_back("micro-meta-" + key);
    return keys;
  }
  // A request's headers (docs/rpc-wire.md), as views of `request`'s strings, of `path` ("/" + its
  // endpoint), of `keys` (meta_keys) and of `timeout` (milliseconds as text; empty: none).
  // Callers add their own, then sort_unique: transports get keys in strictly ascending order, as
  // a MessageView lists a map.
  static void request_headers(const micro::Request& request, std::string_view path,
                              const std::vector<std::string>& keys, std::string_view timeout,
                              micro::KvList& out) {
    out.add(":path", path);
    if (!request.accept.empty()) out.add("accept", request.accept);
    out.add("content-type", request.content_type);
    out.add("micro-endpoint", request.endpoint);
    size_t i = 0;
    for (const auto& [key, value] : request.metadata) out.add(keys[i++], value);
    out.add("micro-service", request.service);
    if (!timeout.empty()) out.add("micro-timeout", timeout);
  }
  static micro::Error response_error(const micro::Message& response, const std::string& status) {
    return response_error(*micro::MessageView(response).c(), status);
  }
  // The error a non-200 response carries (Micro-Error, else its body), read from its view.
  static micro::Error response_error(const micro_message_t& response, std::string_view status) {
    const int32_t code = std::atoi(std::string(status).c_str());
    const std::string_view json = micro::find_value(response.header, "micro-error");
    return micro::error_from_json(json.empty() ? micro::to_view(response.body) : json,
                                  code > 0 ? code : 500);
  }
  // Sockets may not be destroyed inside their own callbacks: release them on the client's thread.
  void release(micro::Socket socket) {
    asio::post(io_, [s = std::make_shared<micro::Socket>(std::move(socket))]() mutable { s.reset(); });
  }
  void release(std::vector<std::unique_ptr<micro::Socket>> sockets) {
    if (sockets.empty()) return;
    asio::post(io_, [s = std::make_shared<decltype(sockets)>(std::move(sockets))]() mutable {
      s.reset();
    });
  }
  // A socket whose call finished cleanly: kept for the next call to `address`.
  void park(const std::string& address, uint64_t timeout_ms, std::unique_ptr<micro::Socket> s) {
    if (auto refused = idle_.put(address, timeout_ms, std::move(s))) release(std::move(*refused));
  }

  micro::Logger log_;
  micro::Selector selector_;
  micro::Transport transport_;
  micro::Broker broker_;
  const std::string content_type_;
  const int64_t timeout_ms_, retries_, backoff_ms_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  micro::rpc_common::Deadlines<Call> deadlines_;
  IdleSockets idle_;
  std::thread thread_;
};

void StreamOpen::start(const micro::CallOptions& options) {
  if (!options.address.empty()) return dial(micro::Node{options.address, options.address, {}});
  client_.selector_.select(request_.service, {},
                           [self = shared_from_this()](const micro::Error& e, micro::Node node) {
                             if (!e.ok()) return self->done_(e, nullptr);
                             self->dial(node);
                           });
}

void StreamOpen::dial(const micro::Node& node) {
  node_ = node;
  client_.transport_.dial(node_.address, {0, true}, [self = shared_from_this()](
                                                        const micro::Error& error,
                                                        micro::Socket socket) {
    if (!error.ok()) {
      self->client_.selector_.mark(self->request_.service, self->node_.id, error);
      return self->done_(error, nullptr);
    }
    self->send_open(std::move(socket));
  });
}

void StreamOpen::send_open(micro::Socket socket) {
  socket_ = std::make_unique<micro::Socket>(std::move(socket));
  const std::vector<std::string> keys = RpcClient::meta_keys(request_);
  const std::string path = "/" + request_.endpoint;
  micro::KvList header;  // views of the strings above and of request_
  RpcClient::request_headers(request_, path, keys, {}, header);
  header.add("micro-stream", "1");
  header.sort_unique();
  // A stream's request body is ignored (client.h); messages follow.
  socket_->send(micro::Message{micro::from_c(header.c()), {}}, [self = shared_from_this()](
                                                                   const micro::Error& error) {
    if (!error.ok()) return self->fail(error);
    self->socket_->recv([self](const micro::Error& error, std::optional<micro::Message> head) {
      self->head(error, std::move(head));
    });
  });
}

void StreamOpen::head(const micro::Error& error, std::optional<micro::Message> head) {
  if (!error.ok() || !head)
    return fail(error.ok() ? micro::Error::unavailable("stream to " + node_.address +
                                                       " closed before it opened")
                           : error);
  const std::string status = micro::header_value(*head, ":status");
  if (status != "200") return fail(RpcClient::response_error(*head, status));
  auto socket = std::move(socket_);
  done_({}, std::make_unique<ClientStream>(std::move(*socket)));
}

void StreamOpen::fail(const micro::Error& error) {
  done_(error, nullptr);
  if (socket_ != nullptr) client_.release(std::move(*socket_));
  socket_.reset();
}

Call::Call(RpcClient& client, micro::Request request, micro::CallOptions options,
           micro_response_fn done, void* done_ctx, micro::ResponseCallback cpp_done)
    : client_(client),
      request_(std::move(request)),
      path_("/" + request_.endpoint),
      meta_keys_(RpcClient::meta_keys(request_)),
      options_(std::move(options)),
      done_fn_(done),
      done_ctx_(done_ctx),
      cpp_done_(std::move(cpp_done)),
      call_id_(micro::random_hex(8)) {
  timeout_ms_ = options_.timeout_ms != 0 ? options_.timeout_ms
                                         : static_cast<uint64_t>(client_.timeout_ms_);
  deadline_ = Clock::now() + std::chrono::milliseconds(timeout_ms_);
  retries_left_ = options_.retries ? *options_.retries : static_cast<uint32_t>(client_.retries_);
}

void Call::start() {
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);  // finish() reads the key under it
    deadline_key_ = client_.deadlines_.add(deadline_, weak_from_this());
  }
  attempt();
}

void Call::deadline_passed() {
  finish(micro::Error::timeout("call to " + request_.service + " " + request_.endpoint +
                               " timed out after " + std::to_string(timeout_ms_) + " ms"),
         nullptr);
}

uint64_t Call::remaining_ms() const {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
  return left > 0 ? static_cast<uint64_t>(left) : 1;
}

// The node comes through the selector's C call as a view: nothing is boxed, and only its id and
// address are kept.
void Call::attempt() {
  if (!options_.address.empty()) return dial(options_.address, options_.address);
  std::vector<micro_str_t> excluded;  // every node tried so far (none on the first attempt)
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (!node_id_.empty()) {
      excluded.reserve(tried_.size() + 1);
      for (const auto& id : tried_) excluded.push_back(micro::to_c(id));
      excluded.push_back(micro::to_c(node_id_));
    }
  }
  const micro_select_options_t select{sizeof(micro_select_options_t), {nullptr, 0},
                                      excluded.data(), excluded.size()};
  selecting_ = shared_from_this();
  client_.selector_.select_c(request_.service, select, &Call::selected, this);
}

void Call::selected(void* ctx, const micro_error_t* error, const micro_node_t* node) noexcept {
  const std::shared_ptr<Call> self = std::move(static_cast<Call*>(ctx)->selecting_);
  (void)micro::detail::guarded([&] {
    micro::Error e = micro::Error::from_c(error);
    if (e.ok() && node == nullptr)
      e = micro::Error::unavailable("the selector returned neither a node nor an error");
    if (!e.ok()) return self->finish(e, nullptr);
    const micro_node_t n = micro::read_struct(node);
    self->dial(micro::to_view(n.id), micro::to_view(n.address));
  });
}

void Call::dial(std::string_view node_id, std::string_view address) {
  uint32_t attempt = 0;
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (!node_id_.empty()) tried_.push_back(std::move(node_id_));
    attempt = ++attempt_;
    node_id_.assign(node_id);
    address_.assign(address);
  }
  std::vector<std::unique_ptr<micro::Socket>> stale;
  std::unique_ptr<micro::Socket> idle = client_.idle_.take(address_, timeout_ms_, stale);
  client_.release(std::move(stale));
  if (idle != nullptr) return send(attempt, std::move(*idle));
  // Dialed with the whole call's timeout, so that later calls with the same timeout can reuse
  // the socket; this call's own deadline still ends it in time.
  micro::DialOptions dial;
  dial.timeout_ms = timeout_ms_;
  client_.transport_.dial(address, dial, [self = shared_from_this(), attempt](
                                                  const micro::Error& error, micro::Socket socket) {
    if (!error.ok()) return self->failed(attempt, error, false);
    self->send(attempt, std::move(socket));
  });
}

// Socket operations happen under the call's mutex and only while the call is unfinished, so a
// deadline that finishes the call never races a completion still using the socket. The mutex is
// recursive because a transport may complete an operation inline.
void Call::send(uint32_t attempt, micro::Socket socket) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (finished_ || attempt != attempt_) return client_.release(std::move(socket));
  socket_ = std::make_unique<micro::Socket>(std::move(socket));
  // The request's headers as views of this call's strings (RpcClient::request_headers).
  char timeout[24];
  const uint64_t remaining = remaining_ms();
  const auto printed = std::to_chars(timeout, timeout + sizeof(timeout), remaining);
  micro::KvList header;
  RpcClient::request_headers(
      request_, path_, meta_keys_,
      remaining > 0 ? std::string_view(timeout, static_cast<size_t>(printed.ptr - timeout)) : "",
      header);
  header.add("micro-id", call_id_);
  header.sort_unique();
  const micro_message_t message{sizeof(micro_message_t), header.c(),
                                micro::to_c_bytes(request_.body)};
  socket_->send_c(message, &Call::sent, new Exchange{shared_from_this(), attempt});
}

void Call::sent(void* ctx, const micro_error_t* error) noexcept {
  std::unique_ptr<Exchange> exchange(static_cast<Exchange*>(ctx));
  Call& self = *exchange->call;
  (void)micro::detail::guarded([&] {
    std::lock_guard<std::recursive_mutex> lock(self.mutex_);
    if (self.finished_ || self.socket_ == nullptr || exchange->attempt != self.attempt_) return;
    if (error != nullptr) return self.failed(exchange->attempt, micro::Error::from_c(error), true);
    self.socket_->recv_c(&Call::received, exchange.release());
  });
}

void Call::received(void* ctx, const micro_error_t* error,
                    const micro_message_t* response) noexcept {
  const std::unique_ptr<Exchange> exchange(static_cast<Exchange*>(ctx));
  (void)micro::detail::guarded(
      [&] { exchange->call->received(exchange->attempt, error, response); });
}

void Call::received(uint32_t attempt, const micro_error_t* error,
                    const micro_message_t* response) {
  {
    std::unique_lock<std::recursive_mutex> lock(mutex_);
    if (attempt != attempt_) return;  // an earlier attempt's socket, already given up
    if (error != nullptr || response == nullptr) {
      const std::string address = address_;
      lock.unlock();
      return failed(attempt,
                    error != nullptr ? micro::Error::from_c(error)
                                     : micro::Error::unavailable(
                                           address + " closed the connection without answering"),
                    true);
    }
    // The node answered: it is alive. (A selector's mark calls nothing back.)
    client_.selector_.mark(request_.service, node_id_, {});
  }
  const micro_message_t m = micro::read_struct(response);
  const std::string_view status = micro::find_value(m.header, ":status");
  if (status == "200") return finish({}, response, true);
  // A handler's own error is never retried: it answered.
  finish(RpcClient::response_error(m, status), nullptr, true);
}

void Call::failed(uint32_t attempt, micro::Error error, bool request_sent) {
  if (error.id().empty()) error.with_id("client-rpc");
  if (error.code() == MICRO_CODE_CLIENT_CLOSED) return;  // our own deadline closed it
  std::string node_id, address;
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (attempt != attempt_) return;  // an earlier attempt's socket, already given up
    node_id = node_id_;
    address = address_;
  }
  client_.selector_.mark(request_.service, node_id, error);
  release_socket();
  bool retry = false;
  uint32_t attempt_number = 0;
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    retry = !finished_ && retries_left_ > 0 && (!request_sent || options_.idempotent) &&
            options_.address.empty();
    if (retry) {
      --retries_left_;
      attempt_number = attempt_;
    }
  }
  if (!retry) return finish(error, nullptr);
  client_.log_.debug("retrying ", request_.endpoint, " of ", request_.service, " after ",
                     error.to_string(), " on ", address);
  const auto backoff = std::chrono::milliseconds(client_.backoff_ms_ * attempt_number);
  if (backoff.count() == 0) return this->attempt();
  auto timer = std::make_shared<asio::steady_timer>(client_.io_, backoff);
  timer->async_wait([self = shared_from_this(), timer](const boost::system::error_code& ec) {
    if (!ec) self->attempt();
  });
}

void Call::release_socket() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (socket_ != nullptr) client_.release(std::move(*socket_));
  socket_.reset();
}

void Call::finish(const micro::Error& error, const micro_message_t* response, bool reusable) {
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (finished_) return;
    finished_ = true;
    if (socket_ != nullptr) {
      if (reusable) {
        // Parked before the caller has the response, so that a next call the caller starts in
        // its callback finds this connection (and a transport can send on it inline). The
        // response view stays valid: it is borrowed for the duration of the callback (abi.h),
        // whatever is done with the socket meanwhile.
        client_.park(address_, timeout_ms_, std::move(socket_));
      } else {
        socket_->close();  // abandoned mid-call (deadline): not reusable
        client_.release(std::move(*socket_));
      }
      socket_.reset();
    }
    client_.deadlines_.remove(deadline_key_);
  }
  complete(error, response);
}

void Call::complete(const micro::Error& error, const micro_message_t* response) noexcept {
  if (cpp_done_) {
    (void)micro::detail::guarded([&] {
      micro::Message message;
      if (error.ok() && response != nullptr) message = micro::from_c(response);
      cpp_done_(error, std::move(message));
    });
    return;
  }
  if (!error.ok()) {
    const micro_error_t view = error.view();
    return done_fn_(done_ctx_, &view, nullptr);
  }
  const micro_message_t empty{sizeof(micro_message_t), {nullptr, 0}, {nullptr, 0}};
  done_fn_(done_ctx_, nullptr, response != nullptr ? response : &empty);
}

}  // namespace

MICRO_MODULE("client-rpc", "1.0.0", "RPC client: calls and streams with deadlines and retries",
             micro::plugin<RpcClient>("client-rpc",
                                      "Calls services found by the selector, retrying on other "
                                      "nodes"));
