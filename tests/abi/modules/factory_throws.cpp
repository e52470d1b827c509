// factory-throws: a C++ registry whose constructor throws. The SDK's factory must turn the
// exception into an error at the boundary: the host sees a 500 naming the cause, and lives on.
#include <stdexcept>

#include "micro/registry.hpp"

namespace {

class ThrowingRegistry final : public micro::RegistryPlugin {
 public:
  explicit ThrowingRegistry(const micro::CreateContext&) { throw std::runtime_error("boom"); }

  void register_service(const micro::Service&, const micro::RegisterOptions&,
                        micro::Done done) override {
    done(micro::Error::internal("unreachable"));
  }
  void deregister_service(const micro::Service&, micro::Done done) override {
    done(micro::Error::internal("unreachable"));
  }
  void get_service(const std::string&, micro::ServicesCallback done) override {
    done(micro::Error::internal("unreachable"), {});
  }
  void list_services(micro::ServicesCallback done) override {
    done(micro::Error::internal("unreachable"), {});
  }
  uint64_t watch(const std::string&, micro::RegistryEventCallback) override { return 0; }
  void unwatch(uint64_t) override {}
};

}  // namespace

MICRO_MODULE("factory-throws", "1.0.0", "A registry whose constructor throws",
             micro::plugin<ThrowingRegistry>("factory-throws", "Throws std::runtime_error"));
