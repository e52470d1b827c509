// Client, C++ side. Module side: ClientPlugin, with StreamImpl for the streams it opens. Caller
// side: Client (non-owning) and the owning, move-only Stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <string_view>
#include <utility>

#include "micro/caller.hpp"
#include "micro/client.h"
#include "micro/codec.hpp"
#include "micro/plugin.hpp"
#include "micro/transport.hpp"

namespace micro {

// One RPC request (see micro_request_t).
struct Request {
  std::string service;       // "greeter"
  std::string endpoint;      // "Greeter.Hello"
  std::string content_type;  // of `body`; empty: the client's default
  std::string accept;        // wanted for the response; empty: content_type
  Metadata metadata;
  std::string body;
  std::shared_ptr<const Schema> request_schema;   // null for untyped calls
  std::shared_ptr<const Schema> response_schema;  // null for untyped calls
};

struct CallOptions {
  uint64_t timeout_ms = 0;          // the whole call, retries included; 0: the client's default
  std::optional<uint32_t> retries;  // further nodes to try on a retryable error; unset: default
  bool idempotent = false;          // safe to retry even after the request was sent
  std::string address;              // non-empty: call this host:port, skipping the selector
};

// A C view of a Request, borrowing its strings. Keep the request alive and unchanged while the
// view is used.
class RequestView {
 public:
  explicit RequestView(const Request& request)
      : metadata_(request.metadata),
        request_schema_(request.request_schema.get()),
        response_schema_(request.response_schema.get()),
        c_{sizeof(micro_request_t),    to_c(request.service), to_c(request.endpoint),
           to_c(request.content_type), to_c(request.accept),  metadata_.c(),
           to_c_bytes(request.body),   request_schema_.c(),   response_schema_.c()} {}
  RequestView(const RequestView&) = delete;
  RequestView& operator=(const RequestView&) = delete;
  const micro_request_t* c() const noexcept { return &c_; }

 private:
  MetadataView metadata_;
  SchemaView request_schema_;
  SchemaView response_schema_;
  micro_request_t c_;
};

// A C schema as `known` when it is the same schema (same bytes), else a copy (from_c): a receiver
// that holds the schemas it expects shares them instead of copying a descriptor set per call.
inline std::shared_ptr<const Schema> from_c(const micro_schema_t* schema,
                                            const std::shared_ptr<const Schema>& known) {
  if (schema == nullptr || known == nullptr) return from_c(schema);
  const micro_schema_t s = read_struct(schema);
  if (to_view(s.file_descriptor_set) == known->file_descriptor_set &&
      to_view(s.message_name) == known->message_name)
    return known;
  return from_c(schema);
}

// `known_request` / `known_response`: schemas the receiver holds (see above); may be null.
inline Request from_c(const micro_request_t* request,
                      const std::shared_ptr<const Schema>& known_request = nullptr,
                      const std::shared_ptr<const Schema>& known_response = nullptr) {
  const micro_request_t r = read_struct(request);
  Request out;
  out.service = std::string(to_view(r.service));
  out.endpoint = std::string(to_view(r.endpoint));
  out.content_type = std::string(to_view(r.content_type));
  out.accept = std::string(to_view(r.accept));
  out.metadata = from_c(r.metadata);
  out.body = std::string(to_view(r.body));
  out.request_schema = from_c(r.request_schema, known_request);
  out.response_schema = from_c(r.response_schema, known_response);
  return out;
}

// A C view of CallOptions, borrowing the address.
inline micro_call_options_t to_c(const CallOptions& options) noexcept {
  return micro_call_options_t{sizeof(micro_call_options_t), options.timeout_ms,
                              options.retries.value_or(UINT32_MAX), options.idempotent ? 1u : 0u,
                              to_c(options.address)};
}

// NULL options, or options from a caller that predates a member, read as the defaults.
inline CallOptions from_c(const micro_call_options_t* options) {
  CallOptions out;
  if (options == nullptr) return out;
  const micro_call_options_t o = read_struct(options);
  out.timeout_ms = o.timeout_ms;
  if (MICRO_HAS_MEMBER(micro_call_options_t, options, retries) && o.retries != UINT32_MAX)
    out.retries = o.retries;
  out.idempotent = o.idempotent != 0;
  out.address = std::string(to_view(o.address));
  return out;
}

// ---- module side ---------------------------------------------------------------------------

// A bidirectional stream of messages (client or server side), made by a module and handed over
// with to_handle(). Methods may be called from any thread; each completion must be called exactly
// once, on any thread. One send and one recv are pending at a time at most.
class StreamImpl {
 public:
  // Cancels if still open; no callback may run after it returns.
  virtual ~StreamImpl() = default;
  virtual void send(Message message, Done done) = 0;
  // At the peer's end of stream: no error and no message.
  virtual void recv(MessageCallback on_message) = 0;
  // Half-close: no more sends from this side.
  virtual void close_send(Done done) = 0;
  // Aborts the stream; pending operations complete with 499.
  virtual void cancel() = 0;

  // Optional fast paths, as SocketImpl's: take the C call with its own completion (a stream that
  // passes each operation on to a transport socket needs no copy and no box), or return false.
  virtual bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    (void)message, (void)done, (void)ctx;
    return false;
  }
  virtual bool recv_c(micro_message_fn on_message, void* ctx) noexcept {
    (void)on_message, (void)ctx;
    return false;
  }

  static const micro_stream_vtable_t* c_vtable() noexcept;
};

// Gives a module-made stream to a C caller, who then owns it and destroys it via its vtable.
inline micro_stream_t to_handle(std::unique_ptr<StreamImpl> stream) noexcept {
  if (stream == nullptr) return micro_stream_t{};
  return micro_stream_t{StreamImpl::c_vtable(), stream.release()};
}

// Receives the response, or the error ({id, code, detail, status} whether it came from the
// handler, the deadline or the network; the message is then empty).
using ResponseCallback = std::function<void(const Error&, Message)>;
// The same with the response as a C view, borrowed for the callback (NULL with an error): for a
// caller that reads the response once, where it arrives (see Client::call_view).
using ResponseViewCallback = std::function<void(const Error&, const micro_message_t* response)>;
// Receives an opened stream, which the receiver owns, or the error.
using StreamImplCallback = std::function<void(const Error&, std::unique_ptr<StreamImpl>)>;

// Implement this in a client module. Methods may be called from any thread at once; each
// completion must be called exactly once, on any thread.
class ClientPlugin : public PluginBase {
 public:
  using KindBase = ClientPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_CLIENT;

  virtual void call(Request request, const CallOptions& options, ResponseCallback done) = 0;
  // Opens a bidirectional stream to the endpoint; `request.body` is ignored.
  virtual void stream(Request request, const CallOptions& options, StreamImplCallback done) = 0;
  // Publishes `message` on `topic` through the broker.
  virtual void publish(const std::string& topic, Message message, Done done) = 0;

  // Optional fast path for the C call, as SocketImpl::send_c: take the call with the caller's own
  // C completion (a module can then hand it the transport's response as a view, with no Message
  // built on the way), or return false, having done nothing, to let it go to call(). Once taken,
  // `on_response` is called exactly once (now, or later on any thread). Never throw. `request` and
  // `options` (NULL: the defaults) are valid only during the call.
  virtual bool call_c(const micro_request_t& request, const micro_call_options_t* options,
                      micro_response_fn on_response, void* ctx) noexcept {
    (void)request, (void)options, (void)on_response, (void)ctx;
    return false;
  }

  static const void* c_vtable() noexcept;
};

namespace detail {

struct StreamAdapter : ChannelAdapter<StreamImpl> {
  static void cancel(void* self) noexcept {
    (void)guarded([&] { as(self)->cancel(); });
  }
};

// Converts the C calls on micro_client_vtable_t into ClientPlugin's virtuals.
struct ClientAdapter {
  static ClientPlugin* as(void* self) noexcept { return static_cast<ClientPlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void call(void* self, const micro_request_t* request, const micro_call_options_t* options,
                   micro_response_fn on_response, void* ctx) noexcept {
    if (request != nullptr && on_response != nullptr &&
        as(self)->call_c(read_struct(request), options, on_response, ctx))
      return;
    CMessageCompletion complete(on_response, ctx);
    guarded_async(complete, [&] {
      if (request == nullptr) throw Exception(Error::bad_request("call: the request is NULL"));
      as(self)->call(from_c(request), from_c(options), complete);
    });
  }

  static void stream(void* self, const micro_request_t* request,
                     const micro_call_options_t* options, micro_stream_fn on_stream,
                     void* ctx) noexcept {
    CHandoffCompletion<StreamImpl, micro_stream_t> complete(on_stream, ctx);
    guarded_async(complete, [&] {
      if (request == nullptr) throw Exception(Error::bad_request("stream: the request is NULL"));
      as(self)->stream(from_c(request), from_c(options), complete);
    });
  }

  static void publish(void* self, micro_str_t topic, const micro_message_t* message,
                      micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] {
      if (message == nullptr) throw Exception(Error::bad_request("publish: the message is NULL"));
      as(self)->publish(std::string(to_view(topic)), from_c(message), complete);
    });
  }
};

}  // namespace detail

inline const micro_stream_vtable_t* StreamImpl::c_vtable() noexcept {
  using A = detail::StreamAdapter;
  static const micro_stream_vtable_t vtable = {
      sizeof(micro_stream_vtable_t), &A::destroy, &A::send, &A::recv, &A::close_send, &A::cancel};
  return &vtable;
}

inline const void* ClientPlugin::c_vtable() noexcept {
  using A = detail::ClientAdapter;
  static const micro_client_vtable_t vtable = {sizeof(micro_client_vtable_t), &A::destroy, &A::call,
                                               &A::stream, &A::publish};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

namespace detail {
struct StreamTraits {
  using Handle = micro_stream_t;
  using Vtable = micro_stream_vtable_t;
  static constexpr const char* kind = "client";
  static constexpr const char* noun = "stream";
};
}  // namespace detail

// A bidirectional stream, owned: destroying it cancels and frees it. Move-only. recv() yields an
// empty message at the peer's end of stream. Destroy it before the instance that opened it.
class Stream : public detail::Channel<detail::StreamTraits> {
 public:
  using Channel::Channel;

  // Aborts the stream; pending operations complete with 499. Any thread, including the stream's
  // own callbacks.
  void cancel() noexcept {
    if (valid() && vtable_.cancel != nullptr) vtable_.cancel(handle_.self);
  }
};

// Receives an opened stream (which it then owns), or the error.
using StreamCallback = std::function<void(const Error&, Stream)>;

// A call as a function: what a call wrapper is given as `next`, and what it returns.
using CallFunction =
    std::function<void(const Request& request, const CallOptions& options, ResponseCallback done)>;
// Middleware around calls (logging, metrics, auth): given the next step, returns a step that may
// change the request, answer without calling `next`, or look at the response on its way back.
using CallWrapper = std::function<CallFunction(CallFunction next)>;

// Calls a client instance through its C vtable. Does not own the instance (the host does);
// copyable. Each operation has an asynchronous form and a blocking convenience.
class Client {
 public:
  Client() = default;
  explicit Client(micro_client_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  // A copy of this client whose calls pass through `wrapper`; wrappers run in the order they
  // were added, the first outermost (as go-micro's client.Wrap). This client is unchanged.
  Client with(CallWrapper wrapper) const {
    Client out = *this;
    auto wrappers = std::make_shared<std::vector<CallWrapper>>();
    if (wrappers_) *wrappers = *wrappers_;
    wrappers->push_back(std::move(wrapper));
    out.wrappers_ = std::move(wrappers);
    return out;
  }

  // Request/response; `done` runs once, on any thread.
  void call(const Request& request, const CallOptions& options, ResponseCallback done) const {
    if (wrappers_ && !wrappers_->empty()) {
      Client bare = *this;
      bare.wrappers_.reset();
      CallFunction step = [bare](const Request& r, const CallOptions& o, ResponseCallback d) {
        bare.call(r, o, std::move(d));
      };
      for (auto it = wrappers_->rbegin(); it != wrappers_->rend(); ++it) step = (*it)(step);
      return step(request, options, std::move(done));
    }
    if (!vtable_.call) return done(detail::missing("client", "call"), Message{});
    const RequestView view(request);
    const micro_call_options_t o = to_c(options);
    vtable_.call(self_, view.c(), &o, &response_trampoline, detail::box(std::move(done)));
  }
  Result<Message> call(const Request& request, const CallOptions& options = {}) const {
    return detail::wait_result<Message>(
        [&](ResponseCallback d) { call(request, options, std::move(d)); });
  }

  // The same call, its response handed to `done` as the client module's own view: no Message is
  // built for a caller that reads it once (a typed stub parses the body from it). Through
  // wrappers (with()), the view is of the Message they pass back.
  void call_view(const Request& request, const CallOptions& options,
                 ResponseViewCallback done) const {
    if (wrappers_ && !wrappers_->empty()) {
      return call(request, options, [done = std::move(done)](const Error& error, Message m) {
        const MessageView view(m);
        done(error, error.ok() ? view.c() : nullptr);
      });
    }
    if (!vtable_.call) return done(detail::missing("client", "call"), nullptr);
    const RequestView view(request);
    const micro_call_options_t o = to_c(options);
    vtable_.call(self_, view.c(), &o, &response_view_trampoline, detail::box(std::move(done)));
  }

  // Opens a bidirectional stream to the endpoint (`request.body` is ignored).
  void stream(const Request& request, const CallOptions& options, StreamCallback done) const {
    if (!vtable_.stream) return done(detail::missing("client", "stream"), Stream{});
    const RequestView view(request);
    const micro_call_options_t o = to_c(options);
    vtable_.stream(self_, view.c(), &o, &stream_trampoline, detail::box(std::move(done)));
  }
  Result<Stream> stream(const Request& request, const CallOptions& options = {}) const {
    return detail::wait_result<Stream>(
        [&](StreamCallback d) { stream(request, options, std::move(d)); });
  }

  // Publishes `message` on `topic` through the broker.
  void publish(std::string_view topic, const Message& message, Done done) const {
    if (!vtable_.publish) return done(detail::missing("client", "publish"));
    const MessageView view(message);
    vtable_.publish(self_, to_c(topic), view.c(), &detail::done_trampoline,
                    detail::box(std::move(done)));
  }
  Error publish(std::string_view topic, const Message& message) const {
    return detail::wait_done([&](Done d) { publish(topic, message, std::move(d)); });
  }

 private:
  static void response_trampoline(void* ctx, const micro_error_t* error,
                                  const micro_message_t* response) noexcept {
    auto fn = detail::unbox<ResponseCallback>(ctx);
    (void)detail::guarded([&] {
      (*fn)(Error::from_c(error),
            error == nullptr && response != nullptr ? from_c(response) : Message{});
    });
  }
  static void response_view_trampoline(void* ctx, const micro_error_t* error,
                                       const micro_message_t* response) noexcept {
    auto fn = detail::unbox<ResponseViewCallback>(ctx);
    (void)detail::guarded([&] { (*fn)(Error::from_c(error), error == nullptr ? response : nullptr); });
  }
  static void stream_trampoline(void* ctx, const micro_error_t* error,
                                micro_stream_t stream) noexcept {
    Stream owned(stream);
    auto fn = detail::unbox<StreamCallback>(ctx);
    (void)detail::guarded([&] { (*fn)(Error::from_c(error), std::move(owned)); });
  }

  micro_client_vtable_t vtable_{};
  void* self_ = nullptr;
  std::shared_ptr<const std::vector<CallWrapper>> wrappers_;
};

}  // namespace micro
