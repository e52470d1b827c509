// Service, C++ side: ServicePlugin (implement it in a module) and ServiceHandle (call one; named so
// because micro::Service is the registry's description of a service).
#pragma once

#include "micro/caller.hpp"
#include "micro/plugin.hpp"
#include "micro/service.h"

namespace micro {

// ---- module side ---------------------------------------------------------------------------

// Implement this in a service module: a client and a server composed under one name. Methods may
// be called from any thread; each completion must be called exactly once, on any thread.
class ServicePlugin : public PluginBase {
 public:
  using KindBase = ServicePlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_SERVICE;

  // Starts the server (and whatever else the service runs, such as a health endpoint).
  virtual void start(Done done) = 0;
  // Deregisters and stops cleanly.
  virtual void stop(Done done) = 0;

  static const void* c_vtable() noexcept;
};

namespace detail {

// Converts the C calls on micro_service_vtable_t into ServicePlugin's virtuals.
struct ServiceAdapter {
  static ServicePlugin* as(void* self) noexcept { return static_cast<ServicePlugin*>(self); }

  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete as(self); });
  }

  static void start(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->start(complete); });
  }

  static void stop(void* self, micro_done_fn done, void* ctx) noexcept {
    CCompletion complete(done, ctx);
    guarded_async(complete, [&] { as(self)->stop(complete); });
  }
};

}  // namespace detail

inline const void* ServicePlugin::c_vtable() noexcept {
  static const micro_service_vtable_t vtable = {
      sizeof(micro_service_vtable_t), &detail::ServiceAdapter::destroy,
      &detail::ServiceAdapter::start, &detail::ServiceAdapter::stop};
  return &vtable;
}

// ---- caller side ---------------------------------------------------------------------------

// Calls a service instance (micro_service_instance_t) through its C vtable. Does not own the
// instance (the host does); copyable. Each operation has an asynchronous form and a blocking one.
class ServiceHandle {
 public:
  ServiceHandle() = default;
  explicit ServiceHandle(micro_service_instance_t handle) noexcept
      : vtable_(read_struct(handle.vtable)), self_(handle.self) {}

  bool valid() const noexcept { return self_ != nullptr; }

  void start(Done done) const {
    if (!vtable_.start) return done(detail::missing("service", "start"));
    vtable_.start(self_, &detail::done_trampoline, detail::box(std::move(done)));
  }
  Error start() const {
    return detail::wait_done([&](Done d) { start(std::move(d)); });
  }

  void stop(Done done) const {
    if (!vtable_.stop) return done(detail::missing("service", "stop"));
    vtable_.stop(self_, &detail::done_trampoline, detail::box(std::move(done)));
  }
  Error stop() const {
    return detail::wait_done([&](Done d) { stop(std::move(d)); });
  }

 private:
  micro_service_vtable_t vtable_{};
  void* self_ = nullptr;
};

}  // namespace micro
