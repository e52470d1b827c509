// client-rpc: calls and streams to services found through the selector, over the transport, with
// a deadline, retries on other nodes for errors that are safe to retry, and go-micro's error
// model whatever went wrong. The mapping onto transport messages is docs/rpc-wire.md.
//
// Threads: completions run on the transport's threads (no hop on the way back); the client's own
// thread runs deadline and backoff timers and releases sockets outside their own callbacks.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <mutex>
#include <thread>

#include "micro/error_json.hpp"
#include "micro/module.hpp"

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

class RpcClient;

// One call, from the first attempt to its answer. Held by the callbacks in flight.
class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(RpcClient& client, micro::Request request, micro::CallOptions options,
       micro::ResponseCallback done);
  void start();

 private:
  void attempt();
  void dial(const micro::Node& node);
  void send(const micro::Node& node, micro::Socket socket);
  void received(const micro::Node& node, const micro::Error& error,
                std::optional<micro::Message> response);
  // A transport failure on `node`: try another node if that is safe, else give up.
  void failed(const micro::Node& node, micro::Error error, bool request_sent);
  void finish(const micro::Error& error, micro::Message response);
  void release_socket();
  uint64_t remaining_ms() const;

  RpcClient& client_;
  micro::Request request_;
  micro::CallOptions options_;
  micro::ResponseCallback done_;
  const std::string call_id_;
  Clock::time_point deadline_;
  uint32_t retries_left_ = 0;
  std::vector<std::string> tried_;
  std::recursive_mutex mutex_;
  bool finished_ = false;
  std::unique_ptr<micro::Socket> socket_;
  std::unique_ptr<asio::steady_timer> timer_;
};

// The caller's side of a stream, on one transport socket.
class ClientStream final : public micro::StreamImpl {
 public:
  explicit ClientStream(micro::Socket socket) : socket_(std::move(socket)) {}
  void send(micro::Message message, micro::Done done) override {
    micro::Message frame;
    frame.body = std::move(message.body);
    socket_.send(frame, std::move(done));
  }
  void recv(micro::MessageCallback on_message) override { socket_.recv(std::move(on_message)); }
  void close_send(micro::Done done) override { socket_.close_send(std::move(done)); }
  void cancel() override { socket_.close(); }

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
        work_(asio::make_work_guard(io_)) {
    if (timeout_ms_ <= 0 || retries_ < 0 || backoff_ms_ < 0)
      throw micro::Exception(micro::Error::bad_request(
          "timeout_ms must be > 0, retries and backoff_ms >= 0"));
    thread_ = std::thread([this] { io_.run(); });
  }

  // Calls must be finished (the contract of destroy); what remains is releasing their sockets.
  ~RpcClient() override {
    work_.reset();
    thread_.join();
  }

  void call(micro::Request request, const micro::CallOptions& options,
            micro::ResponseCallback done) override {
    if (request.service.empty() && options.address.empty())
      return done(micro::Error::bad_request("a call needs a service name or an address"), {});
    if (request.endpoint.empty())
      return done(micro::Error::bad_request("a call needs an endpoint (\"Greeter.Hello\")"), {});
    if (request.content_type.empty()) request.content_type = content_type_;
    std::make_shared<Call>(*this, std::move(request), options, std::move(done))->start();
  }

  void stream(micro::Request request, const micro::CallOptions& options,
              micro::StreamImplCallback done) override {
    if (request.content_type.empty()) request.content_type = content_type_;
    auto opened = [this, request, done = std::move(done)](const micro::Error& error,
                                                         const micro::Node& node) {
      if (!error.ok()) return done(error, nullptr);
      transport_.dial(node.address, {0, true}, [this, request, node, done](
                                                   const micro::Error& error,
                                                   micro::Socket socket) {
        if (!error.ok()) {
          selector_.mark(request.service, node.id, error);
          return done(error, nullptr);
        }
        auto shared = std::make_shared<micro::Socket>(std::move(socket));
        micro::Message open = request_message(request, 0);
        open.header["micro-stream"] = "1";
        open.body.clear();  // a stream's request body is ignored (client.h); messages follow
        shared->send(open, [this, shared, request, node, done](const micro::Error& error) {
          if (!error.ok()) return done(error, nullptr);
          shared->recv([this, shared, request, node, done](const micro::Error& error,
                                                           std::optional<micro::Message> head) {
            if (!error.ok() || !head) {
              done(error.ok() ? micro::Error::unavailable("stream to " + node.address +
                                                          " closed before it opened")
                              : error,
                   nullptr);
              return release(std::move(*shared));
            }
            const std::string status = micro::header_value(*head, ":status");
            if (status != "200") {
              done(response_error(*head, status), nullptr);
              return release(std::move(*shared));
            }
            done({}, std::make_unique<ClientStream>(std::move(*shared)));
          });
        });
      });
    };
    if (!options.address.empty()) return opened({}, micro::Node{options.address, options.address, {}});
    selector_.select(request.service, {}, [opened](const micro::Error& e, micro::Node node) {
      opened(e, node);
    });
  }

  friend class Call;

  void publish(const std::string& topic, micro::Message message, micro::Done done) override {
    if (!broker_.valid())
      return done(micro::Error::not_implemented("no broker is configured: name one in [broker] to "
                                                "publish to '" + topic + "'"));
    broker_.publish(topic, message, std::move(done));
  }

  // ---- used by calls ----

  micro::Message request_message(const micro::Request& request, uint64_t timeout_ms) const {
    micro::Message m;
    m.header[":path"] = "/" + request.endpoint;
    m.header["content-type"] = request.content_type;
    if (!request.accept.empty()) m.header["accept"] = request.accept;
    m.header["micro-service"] = request.service;
    m.header["micro-endpoint"] = request.endpoint;
    if (timeout_ms > 0) m.header["micro-timeout"] = std::to_string(timeout_ms);
    for (const auto& [key, value] : request.metadata) m.header["micro-meta-" + key] = value;
    m.body = request.body;
    return m;
  }
  static micro::Error response_error(const micro::Message& response, const std::string& status) {
    const int32_t code = std::atoi(status.c_str());
    const std::string json = micro::header_value(response, "micro-error");
    return micro::error_from_json(json.empty() ? response.body : json, code > 0 ? code : 500);
  }
  // Sockets may not be destroyed inside their own callbacks: release them on the client's thread.
  void release(micro::Socket socket) {
    asio::post(io_, [s = std::make_shared<micro::Socket>(std::move(socket))]() mutable { s.reset(); });
  }

  micro::Logger log_;
  micro::Selector selector_;
  micro::Transport transport_;
  micro::Broker broker_;
  const std::string content_type_;
  const int64_t timeout_ms_, retries_, backoff_ms_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

Call::Call(RpcClient& client, micro::Request request, micro::CallOptions options,
           micro::ResponseCallback done)
    : client_(client),
      request_(std::move(request)),
      options_(std::move(options)),
      done_(std::move(done)),
      call_id_(micro::random_hex(8)) {
  const uint64_t timeout = options_.timeout_ms != 0 ? options_.timeout_ms : client_.timeout_ms_;
  deadline_ = Clock::now() + std::chrono::milliseconds(timeout);
  retries_left_ = options_.retries ? *options_.retries : static_cast<uint32_t>(client_.retries_);
}

void Call::start() {
  timer_ = std::make_unique<asio::steady_timer>(client_.io_, deadline_);
  const auto timeout_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
  timer_->async_wait([self = shared_from_this(), timeout_ms](const boost::system::error_code& ec) {
    if (ec) return;
    self->finish(micro::Error::timeout("call to " + self->request_.service + " " +
                                       self->request_.endpoint + " timed out after " +
                                       std::to_string(timeout_ms) + " ms"),
                 {});
  });
  attempt();
}

uint64_t Call::remaining_ms() const {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()).count();
  return left > 0 ? static_cast<uint64_t>(left) : 1;
}

void Call::attempt() {
  if (!options_.address.empty()) return dial(micro::Node{options_.address, options_.address, {}});
  micro::SelectOptions select;
  select.exclude_node_ids = tried_;
  client_.selector_.select(request_.service, select,
                           [self = shared_from_this()](const micro::Error& error, micro::Node node) {
                             if (!error.ok()) return self->finish(error, {});
                             self->dial(node);
                           });
}

void Call::dial(const micro::Node& node) {
  tried_.push_back(node.id);
  micro::DialOptions dial;
  dial.timeout_ms = remaining_ms();
  client_.transport_.dial(node.address, dial, [self = shared_from_this(), node](
                                                  const micro::Error& error, micro::Socket socket) {
    if (!error.ok()) return self->failed(node, error, false);
    self->send(node, std::move(socket));
  });
}

// Socket operations happen under the call's mutex and only while the call is unfinished, so a
// deadline that finishes the call never races a completion still using the socket. The mutex is
// recursive because a transport may complete an operation inline.
void Call::send(const micro::Node& node, micro::Socket socket) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (finished_) return client_.release(std::move(socket));
  socket_ = std::make_unique<micro::Socket>(std::move(socket));
  micro::Message message = client_.request_message(request_, remaining_ms());
  message.header["micro-id"] = call_id_;
  socket_->send(message, [self = shared_from_this(), node](const micro::Error& error) {
    std::lock_guard<std::recursive_mutex> lock(self->mutex_);
    if (self->finished_ || self->socket_ == nullptr) return;
    if (!error.ok()) return self->failed(node, error, true);
    self->socket_->recv([self, node](const micro::Error& error,
                                     std::optional<micro::Message> response) {
      self->received(node, error, std::move(response));
    });
  });
}

void Call::received(const micro::Node& node, const micro::Error& error,
                    std::optional<micro::Message> response) {
  if (!error.ok() || !response)
    return failed(node, error.ok() ? micro::Error::unavailable(node.address + " closed the "
                                                               "connection without answering")
                                   : error,
                  true);
  client_.selector_.mark(request_.service, node.id, {});  // the node answered: it is alive
  const std::string status = micro::header_value(*response, ":status");
  if (status == "200") return finish({}, std::move(*response));
  // A handler's own error is never retried: it answered.
  finish(RpcClient::response_error(*response, status), {});
}

void Call::failed(const micro::Node& node, micro::Error error, bool request_sent) {
  if (error.id().empty()) error.with_id("client-rpc");
  if (error.code() == MICRO_CODE_CLIENT_CLOSED) return;  // our own deadline closed it
  client_.selector_.mark(request_.service, node.id, error);
  release_socket();
  bool retry = false;
  uint32_t attempt_number = 0;
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    retry = !finished_ && retries_left_ > 0 && (!request_sent || options_.idempotent) &&
            options_.address.empty();
    if (retry) {
      --retries_left_;
      attempt_number = static_cast<uint32_t>(tried_.size());
    }
  }
  if (!retry) return finish(error, {});
  client_.log_.debug("retrying ", request_.endpoint, " of ", request_.service, " after ",
                     error.to_string(), " on ", node.address);
  const auto backoff = std::chrono::milliseconds(client_.backoff_ms_ * attempt_number);
  if (backoff.count() == 0) return attempt();
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

void Call::finish(const micro::Error& error, micro::Message response) {
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    if (finished_) return;
    finished_ = true;
    if (socket_ != nullptr) {
      if (!error.ok()) socket_->close();  // abandoned mid-call (deadline): not reusable
      client_.release(std::move(*socket_));
      socket_.reset();
    }
  }
  asio::post(client_.io_, [timer = timer_.get(), self = shared_from_this()] { timer->cancel(); });
  done_(error, std::move(response));
}

}  // namespace

MICRO_MODULE("client-rpc", "1.0.0", "RPC client: calls and streams with deadlines and retries",
             micro::plugin<RpcClient>("client-rpc",
                                      "Calls services found by the selector, retrying on other "
                                      "nodes"));
