// service-default: a client and a server composed under the service's name. Start starts the
// server (which registers the service); stop deregisters and drains it. It also serves
// Debug.Health, answering {"status":"ok"} while the service runs, as go-micro does.
#include <atomic>

#include "micro/module.hpp"

namespace {

class DefaultService final : public micro::ServicePlugin {
 public:
  static constexpr uint32_t required_kinds =
      MICRO_KIND_BIT(MICRO_KIND_CLIENT) | MICRO_KIND_BIT(MICRO_KIND_SERVER);

  static std::vector<micro::OptionSpec> options() {
    return {{"health", MICRO_OPTION_BOOL, "Serve the Debug.Health endpoint", "true"}};
  }

  explicit DefaultService(const micro::CreateContext& ctx)
      : log_(ctx.logger()), name_(ctx.service().name), server_(ctx.deps().server) {
    if (!ctx.options().get_bool("health", true)) return;
    micro::EndpointHandler health;
    health.name = "Debug.Health";
    health.flags = MICRO_ENDPOINT_IDEMPOTENT;
    health.on_call = [this](micro::Request, micro::Reply reply) {
      micro::Message response;
      response.header["content-type"] = "application/json";
      response.body = running_ ? R"({"status":"ok"})" : R"({"status":"stopping"})";
      reply.send(response);
    };
    if (micro::Error e = server_.handle(std::move(health)); !e.ok()) throw micro::Exception(e);
  }

  void start(micro::Done done) override {
    server_.start([this, done = std::move(done)](const micro::Error& error) {
      if (error.ok()) {
        running_ = true;
        log_.info("service ", name_, " started on ", server_.address());
      }
      done(error);
    });
  }

  void stop(micro::Done done) override {
    running_ = false;
    server_.stop(std::move(done));
  }

 private:
  micro::Logger log_;
  const std::string name_;
  micro::Server server_;  // keeps the health handler alive until this service is destroyed
  std::atomic<bool> running_{false};
};

}  // namespace

MICRO_MODULE("service-default", "1.0.0", "Client and server under one name, with Debug.Health",
             micro::plugin<DefaultService>("service-default",
                                           "Starts and stops the server; serves Debug.Health"));
