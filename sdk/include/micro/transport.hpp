// Transport, C++ side. Module side: TransportPlugin, with SocketImpl and ListenerImpl for the
// objects it hands out. Caller side: Transport (non-owning) and the owning, move-only Socket and
// Listener. The message-channel plumbing here is shared with client streams (client.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "micro/caller.hpp"
#include "micro/plugin.hpp"
#include "micro/transport.h"

namespace micro {

struct DialOptions {
  uint64_t timeout_ms = 0;  // 0: the module's default
  bool stream = false;      // a long-lived bidirectional stream rather than request/reply
};

// Receives one message, which the receiver owns. `message` is empty when `error` is set and, with
// no error, at the peer's end of stream.
using MessageCallback = std::function<void(const Error& error, std::optional<Message> message)>;

// ---- module side ---------------------------------------------------------------------------

// One connection (or one logical stream on it), made by a transport module and handed over with
// to_handle(). Methods may be called from any thread; each completion must be called exactly
// once, on any thread. One send and one recv are pending at a time at most.
class SocketImpl {
 public:
  // Closes if still open. Pending operations complete (with 499) before it returns; no callback
  // may run after it returns.
  virtual ~SocketImpl() = default;
  virtual void send(Message message, Done done) = 0;
  virtual void recv(MessageCallback on_message) = 0;
  // Half-close: tells the peer no more messages follow; receiving goes on.
  virtual void close_send(Done done) = 0;
  // Cancels pending operations (they complete with 499) and closes.
  virtual void close() = 0;
  // host:port; the views must stay valid until the socket is destroyed.
  virtual std::string_view local_address() const = 0;
  virtual std::string_view remote_address() const = 0;

  // Optional fast paths for the C calls (the C++ side only; the C ABI is unchanged): a socket may
  // take a send or recv with the caller's own C completion, with no Message copy and nothing
  // boxed. Return false, having done nothing, to let the call go to send()/recv(); return true
  // once the call is taken: its completion is then called exactly once (now, or later on any
  // thread). Never throw. `message` is valid only during the call.
  virtual bool send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    (void)message, (void)done, (void)ctx;
    return false;
  }
  virtual bool recv_c(micro_message_fn on_message, void* ctx) noexcept {
    (void)on_message, (void)ctx;
    return false;
  }

  static const micro_socket_vtable_t* c_vtable() noexcept;
};

// A listening endpoint, made by a transport module. Its destructor stops accepting; no accept
// callback may run after it returns.
class ListenerImpl {
 public:
  virtual ~ListenerImpl() = default;
  // The bound address (port 0 resolved); the view must stay valid until destroyed.
  virtual std::string_view address() const = 0;

  static const micro_listener_vtable_t* c_vtable() noexcept;
};

// Gives a module-made object to a C caller, who then owns it and destroys it via its vtable.
inline micro_socket_t to_handle(std::unique_ptr<SocketImpl> socket) noexcept {
  if (socket == nullptr) return micro_socket_t{};
  return micro_socket_t{SocketImpl::c_vtable(), socket.release()};
}
inline micro_listener_t to_handle(std::unique_ptr<ListenerImpl> listener) noexcept {
  if (listener == nullptr) return micro_listener_t{};
  return micro_listener_t{ListenerImpl::c_vtable(), listener.release()};
}

// Receives a new socket (dialed or accepted), which the receiver owns, or the error.
using SocketImplCallback = std::function<void(const Error&, std::unique_ptr<SocketImpl>)>;

// Implement this in a transport module. Methods may be called from any thread. Every socket and
// listener it made is destroyed before it is.
class TransportPlugin : public PluginBase {
 public:
  using KindBase = TransportPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_TRANSPORT;

  // Connects to `address` (host:port); `on_dialed` must be called exactly once, on any thread.
  virtual void dial(const std::string& address, const DialOptions& options,
                    SocketImplCallback on_dialed) = 0;
  // Listens on `address` ("host:0" picks a port); fails by throwing micro::Exception. Each
  // accepted socket goes to `on_accept`, one at a time, on a module thread, until the returned
  // listener is destroyed.
  virtual std::unique_ptr<ListenerImpl> listen(const std::string& address,
                                               SocketImplCallback on_accept) = 0;

  static const void* c_vtable() noexcept;
};

namespace detail {

// Calls a C message callback with a view of `message` (NULL when absent or when `error` is set).
inline void call_message_fn(micro_message_fn fn, void* ctx, const Error& error,
                            const Message* message) noexcept {
  if (!error.ok()) {
    const micro_error_t view = error.view();
    fn(ctx, &view, nullptr);
    return;
  }
  if (message == nullptr) {
    fn(ctx, nullptr, nullptr);
    return;
  }
  std::optional<MessageView> view;
  const Error failure = guarded([&] { view.emplace(*message); });
  if (!failure.ok()) {
    const micro_error_t failure_view = failure.view();
    fn(ctx, &failure_view, nullptr);
    return;
  }
  fn(ctx, nullptr, view->c());
}

// The module side of a micro_message_fn completion (a recv, or a client call's response):
// copyable, calls the C callback at most once.
class CMessageCompletion {
 public:
  CMessageCompletion(micro_message_fn fn, void* ctx) : once_(fn, ctx) {}
  void operator()(const Error& error, std::optional<Message> message) const noexcept {
    if (micro_message_fn fn = once_.take())
      call_message_fn(fn, once_.ctx(), error, message ? &*message : nullptr);
  }
  void operator()(const Error& error) const noexcept { (*this)(error, std::nullopt); }

 private:
  OnceFlag<micro_message_fn> once_;
};

// Hands a new object to a C callback that takes ownership of it (dial, accept, open stream). An
// object that comes with an error is destroyed here.
template <class Impl, class Handle>
void call_handoff_fn(void (*fn)(void*, const micro_error_t*, Handle), void* ctx, const Error& error,
                     std::unique_ptr<Impl> object) noexcept {
  if (error.ok() && object == nullptr) {
    const Error none = Error::internal("the module completed with neither a result nor an error");
    const micro_error_t view = none.view();
    fn(ctx, &view, Handle{});
    return;
  }
  if (!error.ok()) {
    const micro_error_t view = error.view();
    fn(ctx, &view, Handle{});
    return;
  }
  fn(ctx, nullptr, to_handle(std::move(object)));
}

// The module side of a once-only hand-off completion (dial, open stream).
template <class Impl, class Handle>
class CHandoffCompletion {
 public:
  using Fn = void (*)(void*, const micro_error_t*, Handle);
  CHandoffCompletion(Fn fn, void* ctx) : once_(fn, ctx) {}
  void operator()(const Error& error, std::unique_ptr<Impl> object) const noexcept {
    if (Fn fn = once_.take()) call_handoff_fn(fn, once_.ctx(), error, std::move(object));
  }
  void operator()(const Error& error) const noexcept { (*this)(error, nullptr); }

 private:
  OnceFlag<Fn> once_;
};

// The module side of a listener's accept callback: called once per accepted socket.
class CAcceptCallback {
 public:
  CAcceptCallback(micro_socket_fn fn, void* ctx) noexcept : fn_(fn), ctx_(ctx) {}
  void operator()(const Error& error, std::unique_ptr<SocketImpl> socket) const noexcept {
    call_handoff_fn(fn_, ctx_, error, std::move(socket));
  }

 private:
  micro_socket_fn fn_;
  void* ctx_;
};

// The C calls every message channel (socket, stream) shares, converted into Impl's virtuals.
template <class Impl>
struct ChannelAdapter {
  static Impl* as(void* self) noexcept { return static_cast<Impl*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void send(void* self, const micro_message_t* message, micro_done_fn done,
                   void* ctx) noexcept {
    if (message != nullptr && done != nullptr && as(self)->send_c(read_struct(message), done, ctx))
      return;
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] {
      if (message == nullptr) throw Exception(Error::bad_request("send: the message is NULL"));
      as(self)->send(from_c(message), complete);
    });
  }

  static void recv(void* self, micro_message_fn on_message, void* ctx) noexcept {
    if (on_message != nullptr && as(self)->recv_c(on_message, ctx)) return;
    CMessageCompletion complete(on_message, ctx);
    guarded_async(complete, [&] { as(self)->recv(complete); });
  }

  static void close_send(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->close_send(complete); });
  }
};

struct SocketAdapter : ChannelAdapter<SocketImpl> {
  static void close(void* self) noexcept {
    (void)guarded([&] { as(self)->close(); });
  }
  static micro_str_t local_address(void* self) noexcept {
    micro_str_t out{};
    (void)guarded([&] { out = to_c(as(self)->local_address()); });
    return out;
  }
  static micro_str_t remote_address(void* self) noexcept {
    micro_str_t out{};
    (void)guarded([&] { out = to_c(as(self)->remote_address()); });
    return out;
  }
};

struct ListenerAdapter {
  static ListenerImpl* as(void* self) noexcept { return static_cast<ListenerImpl*>(self); }
  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }
  static micro_str_t address(void* self) noexcept {
    micro_str_t out{};
    (void)guarded([&] { out = to_c(as(self)->address()); });
    return out;
  }
};

// Converts the C calls on micro_transport_vtable_t into TransportPlugin's virtuals.
struct TransportAdapter {
  static TransportPlugin* as(void* self) noexcept { return static_cast<TransportPlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void dial(void* self, micro_str_t address, const micro_dial_options_t* options,
                   micro_socket_fn on_dialed, void* ctx) noexcept {
    CHandoffCompletion<SocketImpl, micro_socket_t> complete(on_dialed, ctx);
    guarded_async(complete, [&] {
      const micro_dial_options_t o = read_struct(options);
      as(self)->dial(std::string(to_view(address)), DialOptions{o.timeout_ms, o.stream != 0},
                     complete);
    });
  }

  static micro_error_t* listen(void* self, micro_str_t address, micro_socket_fn on_accept,
                               void* ctx, micro_listener_t* out_listener) noexcept {
    if (out_listener == nullptr || on_accept == nullptr)
      return Error::bad_request("listen: on_accept or out_listener is NULL").to_owned_c();
    const Error error = guarded([&] {
      std::unique_ptr<ListenerImpl> listener =
          as(self)->listen(std::string(to_view(address)), CAcceptCallback(on_accept, ctx));
      if (listener == nullptr) throw Exception(Error::internal("listen returned no listener"));
      *out_listener = to_handle(std::move(listener));
    });
    return error.to_owned_c();
  }
};

}  // namespace detail

inline const micro_socket_vtable_t* SocketImpl::c_vtable() noexcept {
  using A = detail::SocketAdapter;
  static const micro_socket_vtable_t vtable = {sizeof(micro_socket_vtable_t),
                                               &A::destroy,
                                               &A::send,
                                               &A::recv,
                                               &A::close_send,
                                               &A::close,
                                               &A::local_address,
                                               &A::remote_address};
  return &vtable;
}

inline const micro_listener_vtable_t* ListenerImpl::c_vtable() noexcept {
  static const micro_listener_vtable_t vtable = {sizeof(micro_listener_vtable_t),
                                                 &detail::ListenerAdapter::destroy,
                                                 &detail::ListenerAdapter::address};
  return &vtable;
}

inline const void* TransportPlugin::c_vtable() noexcept {
  static const micro_transport_vtable_t vtable = {
      sizeof(micro_transport_vtable_t), &detail::TransportAdapter::destroy,
      &detail::TransportAdapter::dial, &detail::TransportAdapter::listen};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

namespace detail {

// Trampoline for micro_message_fn: calls the boxed MessageCallback once.
inline void message_trampoline(void* ctx, const micro_error_t* error,
                               const micro_message_t* message) noexcept {
  auto fn = unbox<MessageCallback>(ctx);
  (void)guarded([&] {
    std::optional<Message> out;
    if (error == nullptr && message != nullptr) out = from_c(message);
    (*fn)(Error::from_c(error), std::move(out));
  });
}

// Trampolines whose ctx is a Waiter on the blocked caller's stack (the blocking forms below).
inline void done_waiter_trampoline(void* ctx, const micro_error_t* error) noexcept {
  static_cast<Waiter<Error>*>(ctx)->set(Error::from_c(error));
}
inline void message_waiter_trampoline(void* ctx, const micro_error_t* error,
                                      const micro_message_t* message) noexcept {
  using R = Result<std::optional<Message>>;
  auto* waiter = static_cast<Waiter<R>*>(ctx);
  R out{Error::from_c(error), std::nullopt};
  if (error == nullptr && message != nullptr) {
    const Error failed = guarded([&] { out.value = from_c(message); });
    if (!failed.ok()) out = R{failed, std::nullopt};
  }
  waiter->set(std::move(out));
}

inline Error no_channel(const char* noun) {
  return Error::bad_request(std::string("no ") + noun +
                            ": it was moved from, released or never opened");
}

// The caller's side of an owned message channel (a transport socket, a client stream): owns the
// handle and destroys it when destroyed. Move-only. Traits name the handle, vtable and kind.
// Never destroy a channel from inside one of its own callbacks (the C contract forbids it).
template <class Traits>
class Channel {
 public:
  using Handle = typename Traits::Handle;
  using Vtable = typename Traits::Vtable;

  Channel() = default;
  // Takes ownership of `owned`.
  explicit Channel(Handle owned) noexcept : handle_(owned), vtable_(read_struct(owned.vtable)) {}
  Channel(Channel&& other) noexcept : handle_(other.handle_), vtable_(other.vtable_) {
    other.handle_ = Handle{};
  }
  Channel& operator=(Channel&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = other.handle_;
      vtable_ = other.vtable_;
      other.handle_ = Handle{};
    }
    return *this;
  }

  bool valid() const noexcept { return handle_.self != nullptr; }

  // Sends one message; `done` runs once it is written or failed. One send at a time.
  void send(const Message& message, Done done) {
    if (!valid()) return done(no_channel(Traits::noun));
    if (!vtable_.send) return done(missing(Traits::kind, "send"));
    const MessageView view(message);
    vtable_.send(handle_.self, view.c(), &done_trampoline, box(std::move(done)));
  }
  Error send(const Message& message) {
    if (!valid()) return no_channel(Traits::noun);
    if (!vtable_.send) return missing(Traits::kind, "send");
    Waiter<Error> waiter;  // the C callback's ctx is the waiter itself: nothing boxed
    const MessageView view(message);
    vtable_.send(handle_.self, view.c(), &done_waiter_trampoline, &waiter);
    return waiter.wait();
  }

  // Receives the next message (empty at the peer's end of stream). One recv at a time.
  void recv(MessageCallback on_message) {
    if (!valid()) return on_message(no_channel(Traits::noun), std::nullopt);
    if (!vtable_.recv) return on_message(missing(Traits::kind, "recv"), std::nullopt);
    vtable_.recv(handle_.self, &message_trampoline, box(std::move(on_message)));
  }
  Result<std::optional<Message>> recv() {
    using R = Result<std::optional<Message>>;
    if (!valid()) return R{no_channel(Traits::noun), std::nullopt};
    if (!vtable_.recv) return R{missing(Traits::kind, "recv"), std::nullopt};
    Waiter<R> waiter;
    vtable_.recv(handle_.self, &message_waiter_trampoline, &waiter);
    return waiter.wait();
  }

  // The C calls as they are, for a module that passes on an operation with the C completion it
  // was given (see SocketImpl::send_c): nothing is copied or boxed here. The completion runs
  // exactly once, possibly before this returns.
  void send_c(const micro_message_t& message, micro_done_fn done, void* ctx) noexcept {
    if (valid() && vtable_.send) return vtable_.send(handle_.self, &message, done, ctx);
    const Error error = guarded([&] {
      throw Exception(valid() ? missing(Traits::kind, "send") : no_channel(Traits::noun));
    });
    const micro_error_t view = error.view();
    done(ctx, &view);
  }
  void recv_c(micro_message_fn on_message, void* ctx) noexcept {
    if (valid() && vtable_.recv) return vtable_.recv(handle_.self, on_message, ctx);
    const Error error = guarded([&] {
      throw Exception(valid() ? missing(Traits::kind, "recv") : no_channel(Traits::noun));
    });
    const micro_error_t view = error.view();
    on_message(ctx, &view, nullptr);
  }

  // Half-close: tells the peer no more messages follow; receiving goes on.
  void close_send(Done done) {
    if (!valid()) return done(no_channel(Traits::noun));
    if (!vtable_.close_send) return done(missing(Traits::kind, "close_send"));
    vtable_.close_send(handle_.self, &done_trampoline, box(std::move(done)));
  }
  Error close_send() {
    if (!valid()) return no_channel(Traits::noun);
    if (!vtable_.close_send) return missing(Traits::kind, "close_send");
    Waiter<Error> waiter;
    vtable_.close_send(handle_.self, &done_waiter_trampoline, &waiter);
    return waiter.wait();
  }

  // Gives up ownership: whoever takes the handle destroys it.
  Handle release() noexcept {
    const Handle out = handle_;
    handle_ = Handle{};
    return out;
  }
  // Destroys the channel now; pending operations complete (with 499) before it returns.
  void reset() noexcept {
    if (handle_.self != nullptr && vtable_.destroy != nullptr) vtable_.destroy(handle_.self);
    handle_ = Handle{};
  }

 protected:
  ~Channel() { reset(); }

  Handle handle_{};
  Vtable vtable_{};
};

struct SocketTraits {
  using Handle = micro_socket_t;
  using Vtable = micro_socket_vtable_t;
  static constexpr const char* kind = "transport";
  static constexpr const char* noun = "socket";
};

}  // namespace detail

// A connection, owned: destroying it closes and frees it. Move-only. Destroy every socket before
// the transport instance that made it.
class Socket : public detail::Channel<detail::SocketTraits> {
 public:
  using Channel::Channel;

  // Cancels pending operations (they complete with 499) and closes; the socket stays owned (its
  // addresses stay readable). Any thread, including the socket's own callbacks.
  void close() noexcept {
    if (valid() && vtable_.close != nullptr) vtable_.close(handle_.self);
  }
  // host:port; the views live as long as the socket.
  std::string_view local_address() const noexcept {
    return valid() && vtable_.local_address ? to_view(vtable_.local_address(handle_.self))
                                            : std::string_view{};
  }
  std::string_view remote_address() const noexcept {
    return valid() && vtable_.remote_address ? to_view(vtable_.remote_address(handle_.self))
                                             : std::string_view{};
  }
};

// Receives a dialed or accepted socket (which it then owns), or the error.
using SocketCallback = std::function<void(const Error&, Socket)>;

class Transport;

// A listening endpoint, owned: destroying it stops accepting, and after that no accept callback
// runs. Move-only. Destroy it before the transport instance that made it.
class Listener {
 public:
  Listener() = default;
  Listener(Listener&& other) noexcept { *this = std::move(other); }
  Listener& operator=(Listener&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = other.handle_;
      vtable_ = other.vtable_;
      on_accept_ = std::move(other.on_accept_);
      other.handle_ = micro_listener_t{};
    }
    return *this;
  }
  ~Listener() { reset(); }

  bool valid() const noexcept { return handle_.self != nullptr; }
  // The bound address (port 0 resolved); the view lives as long as the listener.
  std::string_view address() const noexcept {
    return valid() && vtable_.address ? to_view(vtable_.address(handle_.self)) : std::string_view{};
  }
  // Stops accepting and frees the listener.
  void reset() noexcept {
    if (handle_.self != nullptr && vtable_.destroy != nullptr) vtable_.destroy(handle_.self);
    handle_ = micro_listener_t{};
    on_accept_.reset();
  }

 private:
  friend class Transport;
  micro_listener_t handle_{};
  micro_listener_vtable_t vtable_{};
  std::unique_ptr<SocketCallback> on_accept_;  // the ctx the module calls back with
};

// Calls a transport instance through its C vtable. Does not own the instance (the host does);
// copyable. Each operation has an asynchronous form and a blocking convenience.
class Transport {
 public:
  Transport() = default;
  explicit Transport(micro_transport_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  // Connects to `address` (host:port); `on_dialed` gets the socket or the error, on any thread.
  void dial(std::string_view address, const DialOptions& options, SocketCallback on_dialed) const {
    if (!vtable_.dial) return on_dialed(detail::missing("transport", "dial"), Socket{});
    const micro_dial_options_t o{sizeof(micro_dial_options_t), options.timeout_ms,
                                 options.stream ? 1u : 0u};
    vtable_.dial(self_, to_c(address), &o, &dial_trampoline, detail::box(std::move(on_dialed)));
  }
  Result<Socket> dial(std::string_view address, const DialOptions& options = {}) const {
    return detail::wait_result<Socket>(
        [&](SocketCallback d) { dial(address, options, std::move(d)); });
  }

  // Listens on `address` ("host:0" picks a port). Each accepted socket goes to `on_accept`, one
  // at a time, on a module thread, until the returned listener is destroyed.
  Result<Listener> listen(std::string_view address, SocketCallback on_accept) const {
    Result<Listener> out;
    if (!vtable_.listen) {
      out.error = detail::missing("transport", "listen");
      return out;
    }
    auto callback = std::make_unique<SocketCallback>(std::move(on_accept));
    micro_listener_t listener{};
    out.error = take_error(
        vtable_.listen(self_, to_c(address), &accept_trampoline, callback.get(), &listener));
    if (!out.error.ok()) return out;
    out.value.handle_ = listener;
    out.value.vtable_ = read_struct(listener.vtable);
    out.value.on_accept_ = std::move(callback);
    return out;
  }

 private:
  static void dial_trampoline(void* ctx, const micro_error_t* error,
                              micro_socket_t socket) noexcept {
    Socket owned(socket);
    auto fn = detail::unbox<SocketCallback>(ctx);
    (void)detail::guarded([&] { (*fn)(Error::from_c(error), std::move(owned)); });
  }
  static void accept_trampoline(void* ctx, const micro_error_t* error,
                                micro_socket_t socket) noexcept {
    Socket owned(socket);
    (void)detail::guarded(
        [&] { (*static_cast<SocketCallback*>(ctx))(Error::from_c(error), std::move(owned)); });
  }

  micro_transport_vtable_t vtable_{};
  void* self_ = nullptr;
};

}  // namespace micro
