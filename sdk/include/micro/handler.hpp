// Handler, C++ side: HandlerPlugin, business logic as a module. It has no methods to implement:
// its constructor registers the endpoints and subscribers, and its destructor runs after the
// server has stopped.
//
//   class Greeter : public micro::HandlerPlugin {
//    public:
//     explicit Greeter(const micro::CreateContext& ctx) : server_(ctx.deps().server) {
//       micro::EndpointHandler hello;
//       hello.name = "Greeter.Hello";
//       hello.on_call = [](micro::Request request, micro::Reply reply) {
//         reply.send({{}, "hello " + request.body});
//       };
//       if (auto e = server_.handle(std::move(hello)); !e.ok()) throw micro::Exception(e);
//     }
//    private:
//     micro::Server server_;  // keeps the handlers alive (see micro::Server)
//   };
#pragma once

#include "micro/client.hpp"
#include "micro/handler.h"
#include "micro/plugin.hpp"
#include "micro/server.hpp"

namespace micro {

// Derive from this and register in the constructor through CreateContext::deps(). Requires the
// server and the client by default; redeclare required_kinds to change that.
class HandlerPlugin : public PluginBase {
 public:
  using KindBase = HandlerPlugin;
  static constexpr micro_kind_t kind = MICRO_KIND_HANDLER;
  static constexpr uint32_t required_kinds =
      MICRO_KIND_BIT(MICRO_KIND_SERVER) | MICRO_KIND_BIT(MICRO_KIND_CLIENT);

  static const void* c_vtable() noexcept;
};

namespace detail {

struct HandlerAdapter {
  static void destroy(void* self) noexcept {
    (void)guarded([&] { delete static_cast<HandlerPlugin*>(self); });
  }
};

}  // namespace detail

inline const void* HandlerPlugin::c_vtable() noexcept {
  static const micro_handler_vtable_t vtable = {sizeof(micro_handler_vtable_t),
                                                &detail::HandlerAdapter::destroy};
  return &vtable;
}

}  // namespace micro
