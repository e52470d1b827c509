// registry-memory runs the registry conformance suite, as every registry module does.
#include "micro/testing/registry_conformance.hpp"

namespace {
micro::testing::RegistryUnderTest memory() {
  micro::testing::RegistryUnderTest r;
  r.module = "registry-memory";
  r.ttl_slack = std::chrono::seconds(2);
  return r;
}
}  // namespace

using micro::testing::RegistryConformance;
INSTANTIATE_TEST_SUITE_P(Memory, RegistryConformance, ::testing::Values(memory()));
