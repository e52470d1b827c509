// Server, C++ side. Module side: ServerPlugin, with ReplyImpl for the replies it hands to
// handlers. Caller side: Server (non-owning; keeps the handlers given to it), Reply, and the
// EndpointHandler both sides share.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "micro/broker.hpp"
#include "micro/caller.hpp"
#include "micro/client.hpp"
#include "micro/plugin.hpp"
#include "micro/server.h"

namespace micro {

// ---- replies -------------------------------------------------------------------------------

// The server module's side of one call's answer, handed to the handler with to_handle().
class ReplyImpl {
 public:
  virtual ~ReplyImpl() = default;
  // Sends the response, or `error` when it is not ok (`response` is then empty). Called at most
  // once, on any thread; the reply is destroyed right after.
  virtual void send(const Error& error, Message response) = 0;
  // True once the caller has gone away (deadline passed, connection closed). Any thread.
  virtual bool cancelled() const = 0;

  // Optional fast path for the C send, as SocketImpl::send_c: answer from the handler's own view
  // (`error` when non-NULL, else `response`; both valid only during the call), with no Message
  // built for it; or return false, having done nothing, to let it go to send(). Never throw.
  virtual bool send_c(const micro_error_t* error, const micro_message_t* response) noexcept {
    (void)error, (void)response;
    return false;
  }

  static const micro_reply_vtable_t* c_vtable() noexcept;
};

// Gives a module-made reply to a C handler, who then owns it until it sends.
inline micro_reply_t to_handle(std::unique_ptr<ReplyImpl> reply) noexcept {
  if (reply == nullptr) return micro_reply_t{};
  return micro_reply_t{ReplyImpl::c_vtable(), reply.release()};
}

namespace detail {

struct ReplyAdapter {
  static ReplyImpl* as(void* self) noexcept { return static_cast<ReplyImpl*>(self); }

  static void send(void* self, const micro_error_t* error,
                   const micro_message_t* response) noexcept {
    std::unique_ptr<ReplyImpl> reply(as(self));
    if (reply->send_c(error, response)) return;
    Error converted;
    Message message;
    const Error failure = guarded([&] {
      converted = Error::from_c(error);
      if (error == nullptr && response != nullptr) message = from_c(response);
    });
    (void)guarded([&] { reply->send(failure.ok() ? converted : failure, std::move(message)); });
  }

  static int32_t cancelled(void* self) noexcept {
    bool out = false;
    (void)guarded([&] { out = as(self)->cancelled(); });
    return out ? 1 : 0;
  }
};

// Answers a C reply with a 500 made of static text: no allocation, for when allocating failed.
inline void send_static_error(micro_reply_t reply, const char* detail) noexcept {
  static constexpr char kStatus[] = "Internal Server Error";
  const micro_reply_vtable_t vtable = read_struct(reply.vtable);
  const micro_error_t error{sizeof(micro_error_t),
                            nullptr,
                            MICRO_CODE_INTERNAL,
                            micro_str_t{},
                            micro_str_t{detail, std::strlen(detail)},
                            micro_str_t{kStatus, sizeof(kStatus) - 1}};
  if (vtable.send != nullptr) vtable.send(reply.self, &error, nullptr);
}

}  // namespace detail

inline const micro_reply_vtable_t* ReplyImpl::c_vtable() noexcept {
  static const micro_reply_vtable_t vtable = {
      sizeof(micro_reply_vtable_t), &detail::ReplyAdapter::send, &detail::ReplyAdapter::cancelled};
  return &vtable;
}

// A handler's answer to one call. Copies share one reply, so it can travel through std::function
// callbacks; the first send (or fail) wins and later ones return false. If every copy is gone
// before one sends, the caller gets a 500. Thread-safe.
class Reply {
 public:
  Reply() = default;
  // Takes ownership of `owned`.
  explicit Reply(micro_reply_t owned) : state_(std::make_shared<State>(owned)) {}

  bool valid() const noexcept { return state_ != nullptr; }

  // Sends the response; false when this reply has already been answered or released.
  bool send(const Message& response) {
    if (state_ == nullptr) return false;
    const MessageView view(response);
    return state_->send(nullptr, view.c());
  }
  // The same for a response given as a C view, borrowed for the call: for a sender that has the
  // headers and body as views already (no Message built for it).
  bool send_c(const micro_message_t& response) {
    if (state_ == nullptr) return false;
    return state_->send(nullptr, &response);
  }
  // Sends `error` (an ok error is sent as a 500: a failure needs a reason).
  bool fail(const Error& error) {
    if (state_ == nullptr) return false;
    const Error sent =
        error.ok() ? Error::internal("the handler failed without saying why") : error;
    const micro_error_t view = sent.view();
    return state_->send(&view, nullptr);
  }
  // True once the caller has gone away (deadline passed, connection closed), or once answered.
  bool cancelled() const noexcept { return state_ == nullptr || state_->cancelled(); }

  // Hands the C reply on (to a C handler) without answering; every copy is then spent.
  micro_reply_t release() noexcept { return state_ ? state_->release() : micro_reply_t{}; }

 private:
  // The mutex keeps cancelled() from running on a reply that a concurrent send has freed.
  struct State {
    explicit State(micro_reply_t owned) noexcept
        : handle(owned), vtable(read_struct(owned.vtable)) {}
    ~State() {
      if (!done && handle.self != nullptr)
        detail::send_static_error(handle, "the handler finished without replying");
    }
    bool send(const micro_error_t* error, const micro_message_t* response) noexcept {
      std::lock_guard<std::mutex> lock(mutex);
      if (done || handle.self == nullptr || vtable.send == nullptr) return false;
      done = true;
      vtable.send(handle.self, error, response);
      return true;
    }
    bool cancelled() noexcept {
      std::lock_guard<std::mutex> lock(mutex);
      if (done || handle.self == nullptr) return true;
      return vtable.cancelled != nullptr && vtable.cancelled(handle.self) != 0;
    }
    micro_reply_t release() noexcept {
      std::lock_guard<std::mutex> lock(mutex);
      if (done) return micro_reply_t{};
      done = true;
      return handle;
    }

    std::mutex mutex;
    bool done = false;
    micro_reply_t handle;
    micro_reply_vtable_t vtable;
  };
  std::shared_ptr<State> state_;
};

// ---- endpoints -----------------------------------------------------------------------------

// Serves one call: answer through `reply`, exactly once, on any thread, now or later.
using CallHandler = std::function<void(Request request, Reply reply)>;
// Serves one stream, which the handler owns (destroying it ends the stream).
using StreamHandler = std::function<void(Request request, Stream stream)>;

// Middleware around a unary endpoint's handler (logging, metrics, auth): given the endpoint's
// name and the next handler, returns the handler to run instead.
using HandlerWrapper = std::function<CallHandler(const std::string& endpoint, CallHandler next)>;

// One endpoint to serve (see micro_endpoint_handler_t).
struct EndpointHandler {
  std::string name;                               // "Greeter.Hello"
  std::shared_ptr<const Schema> request_schema;   // null: raw bytes in any content type
  std::shared_ptr<const Schema> response_schema;  // null: raw bytes
  Metadata metadata;                              // published in the registry's Endpoint
  uint32_t flags = 0;                             // MICRO_ENDPOINT_*
  CallHandler on_call;      // serves the endpoint unless MICRO_ENDPOINT_STREAMING is set
  StreamHandler on_stream;  // serves it when MICRO_ENDPOINT_STREAMING is set
};

// ---- module side ---------------------------------------------------------------------------

// Implement this in a server module. Methods may be called from any thread at once; each
// completion must be called exactly once, on any thread.
class ServerPlugin : public PluginBase {
 public:
  using KindBase = ServerPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_SERVER;

  // Adds an endpoint (before start only); 409 when the name is taken. The handler's callables stay
  // valid until this instance is destroyed; call none after stop() has completed.
  virtual Error handle(EndpointHandler handler) = 0;
  // Subscribes `handler` to `topic` through the broker once started; `handler` stays valid until
  // this instance is destroyed.
  virtual Error subscribe(const std::string& topic, const SubscribeOptions& options,
                          BrokerHandler handler) = 0;
  // Listens, registers with the registry and keeps the registration fresh.
  virtual void start(Done done) = 0;
  // Deregisters, stops accepting, drains in-flight calls (bounded), closes.
  virtual void stop(Done done) = 0;
  // The bound address once started; the view must stay valid until destroyed.
  virtual std::string_view address() const = 0;

  static const void* c_vtable() noexcept;
};

namespace detail {

// Converts the C calls on micro_server_vtable_t into ServerPlugin's virtuals.
struct ServerAdapter {
  static ServerPlugin* as(void* self) noexcept { return static_cast<ServerPlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static EndpointHandler from_c(const micro_endpoint_handler_t* handler) {
    const micro_endpoint_handler_t h = read_struct(handler);
    EndpointHandler out;
    out.name = std::string(to_view(h.name));
    out.request_schema = micro::from_c(h.request_schema);
    out.response_schema = micro::from_c(h.response_schema);
    out.metadata = micro::from_c(h.metadata);
    out.flags = h.flags;
    if (h.on_call != nullptr) {
      out.on_call = [fn = h.on_call, ctx = h.ctx](Request request, Reply reply) {
        const RequestView view(request);
        const micro_reply_t owned = reply.release();
        if (owned.self != nullptr) fn(ctx, view.c(), owned);
      };
    }
    if (h.on_stream != nullptr) {
      out.on_stream = [fn = h.on_stream, ctx = h.ctx](Request request, Stream stream) {
        const RequestView view(request);
        fn(ctx, view.c(), stream.release());
      };
    }
    return out;
  }

  static micro_error_t* handle(void* self, const micro_endpoint_handler_t* handler) noexcept {
    if (handler == nullptr) return Error::bad_request("handle: the handler is NULL").to_owned_c();
    Error result;
    const Error thrown = guarded([&] { result = as(self)->handle(from_c(handler)); });
    return (thrown.ok() ? result : thrown).to_owned_c();
  }

  static micro_error_t* subscribe(void* self, micro_str_t topic,
                                  const micro_subscribe_options_t* options,
                                  micro_broker_handler_fn handler, void* ctx) noexcept {
    if (handler == nullptr)
      return Error::bad_request("subscribe: the handler is NULL").to_owned_c();
    Error result;
    const Error thrown = guarded([&] {
      const micro_subscribe_options_t o = read_struct(options);
      result = as(self)->subscribe(std::string(to_view(topic)),
                                   SubscribeOptions{std::string(to_view(o.queue))},
                                   c_broker_handler(handler, ctx));
    });
    return (thrown.ok() ? result : thrown).to_owned_c();
  }

  static void start(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->start(complete); });
  }

  static void stop(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->stop(complete); });
  }

  static micro_str_t address(void* self) noexcept {
    micro_str_t out{};
    (void)guarded([&] { out = to_c(as(self)->address()); });
    return out;
  }
};

}  // namespace detail

inline const void* ServerPlugin::c_vtable() noexcept {
  using A = detail::ServerAdapter;
  static const micro_server_vtable_t vtable = {sizeof(micro_server_vtable_t),
                                               &A::destroy,
                                               &A::handle,
                                               &A::subscribe,
                                               &A::start,
                                               &A::stop,
                                               &A::address};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

// Calls a server instance through its C vtable. Does not own the instance (the host does).
//
// Handler lifetime: the C server keeps each handler's ctx until it is destroyed, and the ABI has
// no call that says when the ctx may be freed. So handle() and subscribe() box the std::function
// and keep the box in this wrapper, shared by its copies: keep one copy alive until the server
// has stopped, after which it calls no handler. A handler module does so by holding its Server as
// a member: the host destroys the handler instance only after stopping the server.
class Server {
 public:
  Server() = default;
  explicit Server(micro_server_t handle)
      : vtable_(read_struct(handle.vtable)), self_(handle.self), kept_(std::make_shared<Kept>()) {}

  bool valid() const noexcept { return self_ != nullptr; }

  // Adds an endpoint (before start only); 409 when the name is taken.
  // A copy of this server whose handle() wraps each unary handler in `wrapper`; wrappers run in
  // the order they were added, the first outermost. Copies share the kept handlers.
  Server with(HandlerWrapper wrapper) const {
    Server out = *this;
    auto wrappers = std::make_shared<std::vector<HandlerWrapper>>();
    if (wrappers_) *wrappers = *wrappers_;
    wrappers->push_back(std::move(wrapper));
    out.wrappers_ = std::move(wrappers);
    return out;
  }

  Error handle(EndpointHandler handler) const {
    if (!vtable_.handle || kept_ == nullptr) return detail::missing("server", "handle");
    if (wrappers_ && handler.on_call)
      for (auto it = wrappers_->rbegin(); it != wrappers_->rend(); ++it)
        handler.on_call = (*it)(handler.name, std::move(handler.on_call));
    if (!handler.on_call && !handler.on_stream)
      return Error::bad_request("endpoint " + handler.name + " has neither on_call nor on_stream");
    auto box = std::make_shared<EndpointBox>(
        EndpointBox{std::move(handler.on_call), std::move(handler.on_stream),
                    handler.request_schema, handler.response_schema});
    const SchemaView request_schema(handler.request_schema.get());
    const SchemaView response_schema(handler.response_schema.get());
    const MetadataView metadata(handler.metadata);
    const micro_endpoint_handler_t c{sizeof(micro_endpoint_handler_t),
                                     to_c(handler.name),
                                     request_schema.c(),
                                     response_schema.c(),
                                     metadata.c(),
                                     handler.flags,
                                     box->on_call ? &call_trampoline : nullptr,
                                     box->on_stream ? &stream_trampoline : nullptr,
                                     box.get()};
    return keep_if_added(box, [&] { return take_error(vtable_.handle(self_, &c)); });
  }

  // Subscribes `handler` to `topic` through the broker once the server has started.
  Error subscribe(std::string_view topic, BrokerHandler handler,
                  const SubscribeOptions& options = {}) const {
    if (!vtable_.subscribe || kept_ == nullptr) return detail::missing("server", "subscribe");
    auto box = std::make_shared<BrokerHandler>(std::move(handler));
    const micro_subscribe_options_t o{sizeof(micro_subscribe_options_t), to_c(options.queue)};
    return keep_if_added(box, [&] {
      return take_error(
          vtable_.subscribe(self_, to_c(topic), &o, &detail::broker_handler_trampoline, box.get()));
    });
  }

  // Listens, registers with the registry and keeps the registration fresh.
  void start(Done done) const {
    if (!vtable_.start) return done(detail::missing("server", "start"));
    vtable_.start(self_, &detail::done_trampoline, detail::box(std::move(done)));
  }
  Error start() const {
    return detail::wait_done([&](Done d) { start(std::move(d)); });
  }

  // Deregisters, stops accepting, drains in-flight calls, closes.
  void stop(Done done) const {
    if (!vtable_.stop) return done(detail::missing("server", "stop"));
    vtable_.stop(self_, &detail::done_trampoline, detail::box(std::move(done)));
  }
  Error stop() const {
    return detail::wait_done([&](Done d) { stop(std::move(d)); });
  }

  // The bound address once started; the view lives as long as the instance.
  std::string_view address() const noexcept {
    return vtable_.address ? to_view(vtable_.address(self_)) : std::string_view{};
  }

 private:
  struct EndpointBox {
    CallHandler on_call;
    StreamHandler on_stream;
    // The endpoint's schemas: a request that names the same ones shares them (no copy per call).
    std::shared_ptr<const Schema> request_schema, response_schema;

    Request request_from_c(const micro_request_t* request) const {
      return micro::from_c(request, request_schema, response_schema);
    }
  };
  struct Kept {
    std::mutex mutex;
    std::vector<std::shared_ptr<void>> boxes;
  };

  // Keeps `box` before `add` hands it to the server (so it can never be freed while the server
  // holds it), and lets it go again if the server refused it.
  template <class Box, class Add>
  Error keep_if_added(const std::shared_ptr<Box>& box, Add&& add) const {
    {
      std::lock_guard<std::mutex> lock(kept_->mutex);
      kept_->boxes.push_back(box);
    }
    Error error = add();
    if (!error.ok()) {
      std::lock_guard<std::mutex> lock(kept_->mutex);
      auto& boxes = kept_->boxes;
      boxes.erase(std::find(boxes.begin(), boxes.end(), box));
    }
    return error;
  }

  static void call_trampoline(void* ctx, const micro_request_t* request,
                              micro_reply_t reply) noexcept {
    Reply owned;
    const Error error = detail::guarded([&] {
      owned = Reply(reply);
      const auto* box = static_cast<EndpointBox*>(ctx);
      box->on_call(box->request_from_c(request), owned);
    });
    if (!owned.valid()) return detail::send_static_error(reply, "out of memory accepting a call");
    if (!error.ok()) (void)detail::guarded([&] { owned.fail(error); });
  }

  static void stream_trampoline(void* ctx, const micro_request_t* request,
                                micro_stream_t stream) noexcept {
    Stream owned(stream);
    (void)detail::guarded([&] {
      const auto* box = static_cast<EndpointBox*>(ctx);
      box->on_stream(box->request_from_c(request), std::move(owned));
    });
  }

  micro_server_vtable_t vtable_{};
  void* self_ = nullptr;
  std::shared_ptr<const std::vector<HandlerWrapper>> wrappers_;
  std::shared_ptr<Kept> kept_;
};

}  // namespace micro
