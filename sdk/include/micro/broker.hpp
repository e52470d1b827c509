// Broker, C++ side: BrokerPlugin (implement it in a module) and Broker (call one).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "micro/broker.h"
#include "micro/caller.hpp"
#include "micro/plugin.hpp"

namespace micro {

struct SubscribeOptions {
  std::string queue;  // non-empty: of the subscribers sharing this name, one gets each message
};

// Handles one delivered message (borrowed for the call); the error it returns goes back to the
// publisher. Runs on a module thread, never concurrently for one subscription.
using BrokerHandler = std::function<Error(std::string_view topic, const Message& message)>;

// ---- module side ---------------------------------------------------------------------------

// Implement this in a broker module. Methods may be called from any thread at once; each
// completion must be called exactly once, on any thread.
class BrokerPlugin : public PluginBase {
 public:
  using KindBase = BrokerPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_BROKER;

  virtual void connect(Done done) = 0;
  virtual void disconnect(Done done) = 0;
  // Delivers to every subscriber of `topic` (one per queue group).
  virtual void publish(const std::string& topic, Message message, Done done) = 0;
  // Starts delivering `topic` to `handler`; returns the subscription's id; fails by throwing
  // micro::Exception. `handler` must not be called after unsubscribe(id) returns (unless
  // unsubscribe is called from within it).
  virtual uint64_t subscribe(const std::string& topic, const SubscribeOptions& options,
                             BrokerHandler handler) = 0;
  virtual void unsubscribe(uint64_t subscription_id) = 0;
  // Where subscribers are reached (host:port); the view must stay valid until destroyed.
  virtual std::string_view address() const = 0;

  static const void* c_vtable() noexcept;
};

namespace detail {

// A C subscriber as a BrokerHandler (for the module that delivers to it).
inline BrokerHandler c_broker_handler(micro_broker_handler_fn fn, void* ctx) {
  return [fn, ctx](std::string_view topic, const Message& message) {
    const MessageView view(message);
    return take_error(fn(ctx, to_c(topic), view.c()));
  };
}

// Converts the C calls on micro_broker_vtable_t into BrokerPlugin's virtuals.
struct BrokerAdapter {
  static BrokerPlugin* as(void* self) noexcept { return static_cast<BrokerPlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void connect(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->connect(complete); });
  }

  static void disconnect(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->disconnect(complete); });
  }

  static void publish(void* self, micro_str_t topic, const micro_message_t* message,
                      micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] {
      if (message == nullptr) throw Exception(Error::bad_request("publish: the message is NULL"));
      as(self)->publish(std::string(to_view(topic)), from_c(message), complete);
    });
  }

  static micro_error_t* subscribe(void* self, micro_str_t topic,
                                  const micro_subscribe_options_t* options,
                                  micro_broker_handler_fn handler, void* ctx,
                                  uint64_t* out_subscription_id) noexcept {
    if (handler == nullptr || out_subscription_id == nullptr)
      return Error::bad_request("subscribe: handler or out_subscription_id is NULL").to_owned_c();
    const Error error = guarded([&] {
      const micro_subscribe_options_t o = read_struct(options);
      *out_subscription_id = as(self)->subscribe(std::string(to_view(topic)),
                                                 SubscribeOptions{std::string(to_view(o.queue))},
                                                 c_broker_handler(handler, ctx));
    });
    return error.to_owned_c();
  }

  static void unsubscribe(void* self, uint64_t subscription_id) noexcept {
    (void)guarded([&] { as(self)->unsubscribe(subscription_id); });
  }

  static micro_str_t address(void* self) noexcept {
    micro_str_t out{};
    (void)guarded([&] { out = to_c(as(self)->address()); });
    return out;
  }
};

// Trampoline for micro_broker_handler_fn with a BrokerHandler* as ctx (Broker and Server). An
// exception from the handler goes back to the publisher as a 500.
inline micro_error_t* broker_handler_trampoline(void* ctx, micro_str_t topic,
                                                const micro_message_t* message) noexcept {
  Error result;
  const Error thrown = guarded(
      [&] { result = (*static_cast<BrokerHandler*>(ctx))(to_view(topic), from_c(message)); });
  return (thrown.ok() ? result : thrown).to_owned_c();
}

}  // namespace detail

inline const void* BrokerPlugin::c_vtable() noexcept {
  using A = detail::BrokerAdapter;
  static const micro_broker_vtable_t vtable = {sizeof(micro_broker_vtable_t),
                                               &A::destroy,
                                               &A::connect,
                                               &A::disconnect,
                                               &A::publish,
                                               &A::subscribe,
                                               &A::unsubscribe,
                                               &A::address};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

class Broker;

// A running subscription; unsubscribes when destroyed. Move-only. Destroy it before the broker
// instance.
class Subscription {
 public:
  Subscription() = default;
  Subscription(Subscription&& other) noexcept { *this = std::move(other); }
  Subscription& operator=(Subscription&& other) noexcept {
    if (this != &other) {
      stop();
      vtable_ = other.vtable_;
      self_ = other.self_;
      id_ = other.id_;
      handler_ = std::move(other.handler_);
      other.self_ = nullptr;
    }
    return *this;
  }
  ~Subscription() { stop(); }

  // Unsubscribes; after it returns no message is delivered (unless called from the handler, where
  // the current delivery is the last).
  void stop() noexcept {
    if (self_ != nullptr && vtable_.unsubscribe != nullptr) vtable_.unsubscribe(self_, id_);
    self_ = nullptr;
    handler_.reset();
  }
  bool active() const noexcept { return self_ != nullptr; }

 private:
  friend class Broker;
  micro_broker_vtable_t vtable_{};
  void* self_ = nullptr;
  uint64_t id_ = 0;
  std::unique_ptr<BrokerHandler> handler_;  // the ctx the module calls back with
};

// Calls a broker instance through its C vtable. Does not own the instance (the host does);
// copyable. Each operation has an asynchronous form and a blocking convenience.
class Broker {
 public:
  Broker() = default;
  explicit Broker(micro_broker_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  void connect(Done done) const {
    if (!vtable_.connect) return done(detail::missing("broker", "connect"));
    vtable_.connect(self_, &detail::done_trampoline, detail::box(std::move(done)));
  }
  Error connect() const {
    return detail::wait_done([&](Done d) { connect(std::move(d)); });
  }

  void disconnect(Done done) const {
    if (!vtable_.disconnect) return done(detail::missing("broker", "disconnect"));
    vtable_.disconnect(self_, &detail::done_trampoline, detail::box(std::move(done)));
  }
  Error disconnect() const {
    return detail::wait_done([&](Done d) { disconnect(std::move(d)); });
  }

  // Delivers `message` to every subscriber of `topic` (one per queue group).
  void publish(std::string_view topic, const Message& message, Done done) const {
    if (!vtable_.publish) return done(detail::missing("broker", "publish"));
    const MessageView view(message);
    vtable_.publish(self_, to_c(topic), view.c(), &detail::done_trampoline,
                    detail::box(std::move(done)));
  }
  Error publish(std::string_view topic, const Message& message) const {
    return detail::wait_done([&](Done d) { publish(topic, message, std::move(d)); });
  }

  // Delivers `topic` to `handler` on a module thread until the subscription is stopped or
  // destroyed.
  Result<Subscription> subscribe(std::string_view topic, BrokerHandler handler,
                                 const SubscribeOptions& options = {}) const {
    Result<Subscription> out;
    if (!vtable_.subscribe || !vtable_.unsubscribe) {
      out.error = detail::missing("broker", "subscribe");
      return out;
    }
    auto boxed = std::make_unique<BrokerHandler>(std::move(handler));
    const micro_subscribe_options_t o{sizeof(micro_subscribe_options_t), to_c(options.queue)};
    uint64_t id = 0;
    out.error = take_error(vtable_.subscribe(self_, to_c(topic), &o,
                                             &detail::broker_handler_trampoline, boxed.get(), &id));
    if (!out.error.ok()) return out;
    out.value.vtable_ = vtable_;
    out.value.self_ = self_;
    out.value.id_ = id;
    out.value.handler_ = std::move(boxed);
    return out;
  }

  // Where subscribers are reached; the view lives as long as the instance.
  std::string_view address() const noexcept {
    return vtable_.address ? to_view(vtable_.address(self_)) : std::string_view{};
  }

 private:
  micro_broker_vtable_t vtable_{};
  void* self_ = nullptr;
};

}  // namespace micro
