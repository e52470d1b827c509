// handler-greeter: the greeter as a handler module. `micro run micro.toml` loads it and it
// registers Greeter.Hello, Greeter.Stream, Greeter.Collect and Greeter.Chat with the server.
#include "greeter_logic.hpp"
#include "micro/module.hpp"

namespace {

class GreeterModule final : public micro::HandlerPlugin {
 public:
  explicit GreeterModule(const micro::CreateContext& ctx) : server_(ctx.deps().server) {
    if (micro::Error e = greeter::RegisterGreeterHandler(server_, std::make_shared<greeter::Greeter>());
        !e.ok())
      throw micro::Exception(e);
  }

 private:
  micro::Server server_;  // keeps the registered handlers alive while the server may call them
};

}  // namespace

MICRO_MODULE("handler-greeter", "1.0.0", "The greeter example's handlers",
             micro::plugin<GreeterModule>("handler-greeter",
                                          "Greeter.Hello, .Stream, .Collect and .Chat"));
