// Registry, C++ side: RegistryPlugin (implement it in a module) and Registry (call one).
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "micro/plugin.hpp"
#include "micro/registry.h"

namespace micro {

struct RegisterOptions {
  uint64_t ttl_ms = 0;  // 0: the module's default
};

enum class RegistryEventType : uint32_t {
  create = MICRO_REGISTRY_EVENT_CREATE,
  update = MICRO_REGISTRY_EVENT_UPDATE,
  remove = MICRO_REGISTRY_EVENT_DELETE,
};

struct RegistryEvent {
  RegistryEventType type{};
  Service service;
  int64_t timestamp_ms = 0;
};

using ServicesCallback = std::function<void(const Error&, const std::vector<Service>&)>;
using RegistryEventCallback = std::function<void(const RegistryEvent&)>;

inline const char* to_string(RegistryEventType type) noexcept {
  switch (type) {
    case RegistryEventType::create: return "create";
    case RegistryEventType::update: return "update";
    case RegistryEventType::remove: return "delete";
  }
  return "unknown";
}

// ---- module side ---------------------------------------------------------------------------

// Implement this in a registry module. Methods may be called from any thread at once; each
// completion must be called exactly once, on any thread.
class RegistryPlugin : public PluginBase {
 public:
  using KindBase = RegistryPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_REGISTRY;

  virtual void register_service(const Service& service, const RegisterOptions& options,
                                Done done) = 0;
  virtual void deregister_service(const Service& service, Done done) = 0;
  virtual void get_service(const std::string& name, ServicesCallback done) = 0;
  virtual void list_services(ServicesCallback done) = 0;
  // Starts a watch; returns its id. `on_event` must not be called after unwatch(id) returns
  // (unless unwatch is called from within it).
  virtual uint64_t watch(const std::string& service, RegistryEventCallback on_event) = 0;
  virtual void unwatch(uint64_t watch_id) = 0;

  static const void* c_vtable() noexcept;
};

namespace detail {

inline void call_services_fn(micro_services_fn fn, void* ctx, const Error& error,
                             const std::vector<Service>& services) noexcept {
  (void)guarded([&] {
    if (!error.ok()) {
      const micro_error_t view = error.view();
      fn(ctx, &view, nullptr, 0);
      return;
    }
    ServiceListView list(services);
    fn(ctx, nullptr, list.data(), list.size());
  });
}

// Converts the C calls on micro_registry_vtable_t into RegistryPlugin's virtuals.
struct RegistryAdapter {
  static RegistryPlugin* as(void* self) noexcept { return static_cast<RegistryPlugin*>(self); }

  static void destroy(void* self) noexcept { (void)guarded([&] { delete as(self); }); }

  static void register_service(void* self, const micro_service_t* service,
                               const micro_register_options_t* options, micro_done_fn done,
                               void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] {
      const micro_register_options_t o = read_struct(options);
      as(self)->register_service(from_c(service), RegisterOptions{o.ttl_ms}, complete);
    });
  }

  static void deregister_service(void* self, const micro_service_t* service, micro_done_fn done,
                                 void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->deregister_service(from_c(service), complete); });
  }

  static ServicesCallback services_completion(micro_services_fn fn, void* ctx) {
    OnceFlag<micro_services_fn> once(fn, ctx);
    return [once](const Error& error, const std::vector<Service>& services) {
      if (auto f = once.take()) call_services_fn(f, once.ctx(), error, services);
    };
  }

  static void get_service(void* self, micro_str_t name, micro_services_fn on_result,
                          void* ctx) noexcept {
    ServicesCallback complete;
    Error error = guarded([&] {
      complete = services_completion(on_result, ctx);
      as(self)->get_service(std::string(to_view(name)), complete);
    });
    if (!error.ok()) complete ? complete(error, {}) : call_services_fn(on_result, ctx, error, {});
  }

  static void list_services(void* self, micro_services_fn on_result, void* ctx) noexcept {
    ServicesCallback complete;
    Error error = guarded([&] {
      complete = services_completion(on_result, ctx);
      as(self)->list_services(complete);
    });
    if (!error.ok()) complete ? complete(error, {}) : call_services_fn(on_result, ctx, error, {});
  }

  static micro_error_t* watch(void* self, micro_str_t service, micro_registry_event_fn on_event,
                              void* ctx, uint64_t* out_watch_id) noexcept {
    if (out_watch_id == nullptr) return Error::bad_request("watch: out_watch_id is NULL").to_owned_c();
    Error error = guarded([&] {
      *out_watch_id = as(self)->watch(std::string(to_view(service)),
                                      [on_event, ctx](const RegistryEvent& event) {
                                        (void)guarded([&] {
                                          ServiceView view(event.service);
                                          micro_registry_event_t c{
                                              sizeof(micro_registry_event_t),
                                              static_cast<uint32_t>(event.type), view.c(),
                                              event.timestamp_ms};
                                          on_event(ctx, &c);
                                        });
                                      });
    });
    return error.to_owned_c();
  }

  static void unwatch(void* self, uint64_t watch_id) noexcept {
    (void)guarded([&] { as(self)->unwatch(watch_id); });
  }
};

}  // namespace detail

inline const void* RegistryPlugin::c_vtable() noexcept {
  static const micro_registry_vtable_t vtable = {
      sizeof(micro_registry_vtable_t),         &detail::RegistryAdapter::destroy,
      &detail::RegistryAdapter::register_service, &detail::RegistryAdapter::deregister_service,
      &detail::RegistryAdapter::get_service,   &detail::RegistryAdapter::list_services,
      &detail::RegistryAdapter::watch,         &detail::RegistryAdapter::unwatch};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

class Registry;

// A running watch; unwatches when destroyed. Move-only.
class RegistryWatch {
 public:
  RegistryWatch() = default;
  RegistryWatch(RegistryWatch&& other) noexcept { *this = std::move(other); }
  RegistryWatch& operator=(RegistryWatch&& other) noexcept {
    if (this != &other) {
      stop();
      vtable_ = other.vtable_;
      self_ = other.self_;
      id_ = other.id_;
      callback_ = std::move(other.callback_);
      other.self_ = nullptr;
    }
    return *this;
  }
  ~RegistryWatch() { stop(); }
  // Stops the watch; after it returns no event is delivered.
  void stop() noexcept {
    if (self_ != nullptr && vtable_.unwatch != nullptr) vtable_.unwatch(self_, id_);
    self_ = nullptr;
    callback_.reset();
  }
  bool active() const noexcept { return self_ != nullptr; }

 private:
  friend class Registry;
  micro_registry_vtable_t vtable_{};
  void* self_ = nullptr;
  uint64_t id_ = 0;
  std::unique_ptr<RegistryEventCallback> callback_;  // the ctx the module calls back with
};

// Calls a registry instance through its C vtable. Does not own the instance (the host does);
// copyable. Each operation has an asynchronous form and a blocking convenience.
class Registry {
 public:
  Registry() = default;
  explicit Registry(micro_registry_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  void register_service(const Service& service, const RegisterOptions& options, Done done) const {
    if (!vtable_.register_service) return done(missing("register_service"));
    ServiceView view(service);
    micro_register_options_t o{sizeof(micro_register_options_t), options.ttl_ms};
    vtable_.register_service(self_, view.c(), &o, &detail::done_trampoline,
                             detail::box(std::move(done)));
  }
  Error register_service(const Service& service, const RegisterOptions& options = {}) const {
    return wait([&](Done d) { register_service(service, options, std::move(d)); });
  }

  void deregister_service(const Service& service, Done done) const {
    if (!vtable_.deregister_service) return done(missing("deregister_service"));
    ServiceView view(service);
    vtable_.deregister_service(self_, view.c(), &detail::done_trampoline,
                               detail::box(std::move(done)));
  }
  Error deregister_service(const Service& service) const {
    return wait([&](Done d) { deregister_service(service, std::move(d)); });
  }

  void get_service(std::string_view name, ServicesCallback done) const {
    if (!vtable_.get_service) return done(missing("get_service"), {});
    vtable_.get_service(self_, to_c(name), &services_trampoline, detail::box(std::move(done)));
  }
  Result<std::vector<Service>> get_service(std::string_view name) const {
    return wait_services([&](ServicesCallback d) { get_service(name, std::move(d)); });
  }

  void list_services(ServicesCallback done) const {
    if (!vtable_.list_services) return done(missing("list_services"), {});
    vtable_.list_services(self_, &services_trampoline, detail::box(std::move(done)));
  }
  Result<std::vector<Service>> list_services() const {
    return wait_services([&](ServicesCallback d) { list_services(std::move(d)); });
  }

  // Watches `service` (empty: every service). Events arrive on a module thread until the
  // returned watch is stopped or destroyed.
  Result<RegistryWatch> watch(std::string_view service, RegistryEventCallback on_event) const {
    Result<RegistryWatch> out;
    if (!vtable_.watch || !vtable_.unwatch) {
      out.error = missing("watch");
      return out;
    }
    auto callback = std::make_unique<RegistryEventCallback>(std::move(on_event));
    uint64_t id = 0;
    out.error = take_error(vtable_.watch(self_, to_c(service), &event_trampoline,
                                         callback.get(), &id));
    if (!out.error.ok()) return out;
    out.value.vtable_ = vtable_;
    out.value.self_ = self_;
    out.value.id_ = id;
    out.value.callback_ = std::move(callback);
    return out;
  }

 private:
  static Error missing(const char* what) {
    return Error::not_implemented(std::string("this registry module does not implement ") + what +
                                  " (built against an older SDK?)");
  }
  static void services_trampoline(void* ctx, const micro_error_t* error,
                                  const micro_service_t* const* services, size_t count) noexcept {
    auto fn = detail::unbox<ServicesCallback>(ctx);
    (void)detail::guarded([&] {
      std::vector<Service> out;
      for (size_t i = 0; i < count && services != nullptr; ++i)
        if (services[i] != nullptr) out.push_back(from_c(services[i]));
      (*fn)(Error::from_c(error), out);
    });
  }
  static void event_trampoline(void* ctx, const micro_registry_event_t* event) noexcept {
    (void)detail::guarded([&] {
      const micro_registry_event_t e = read_struct(event);
      RegistryEvent out{static_cast<RegistryEventType>(e.type), from_c(e.service),
                        e.timestamp_ms};
      (*static_cast<RegistryEventCallback*>(ctx))(out);
    });
  }
  template <class Start>
  static Error wait(Start&& start) {
    auto promise = std::make_shared<std::promise<Error>>();
    auto future = promise->get_future();
    start([promise](const Error& e) { promise->set_value(e); });
    return future.get();
  }
  template <class Start>
  static Result<std::vector<Service>> wait_services(Start&& start) {
    auto promise = std::make_shared<std::promise<Result<std::vector<Service>>>>();
    auto future = promise->get_future();
    start([promise](const Error& e, const std::vector<Service>& s) {
      promise->set_value({e, s});
    });
    return future.get();
  }

  micro_registry_vtable_t vtable_{};
  void* self_ = nullptr;
};

}  // namespace micro
