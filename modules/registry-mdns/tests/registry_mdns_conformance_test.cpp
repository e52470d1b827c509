// registry-mdns runs the registry conformance suite, as every registry module does, inside the
// private network namespace its ctest entry creates (scripts/netns-run).
#include "micro/testing/registry_conformance.hpp"

namespace {
micro::testing::RegistryUnderTest mdns() {
  micro::testing::RegistryUnderTest r;
  r.module = "registry-mdns";
  r.options_toml = "query_timeout_ms = 200\n";
  // A 300 ms registration lapses locally at 300 ms; the slack covers a loaded machine.
  r.ttl_slack = std::chrono::seconds(2);
  return r;
}
}  // namespace

using micro::testing::RegistryConformance;
INSTANTIATE_TEST_SUITE_P(Mdns, RegistryConformance, ::testing::Values(mdns()));
