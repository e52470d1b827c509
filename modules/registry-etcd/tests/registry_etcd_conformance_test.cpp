// registry-etcd against a real etcd: the registry conformance suite, as every registry module
// runs it. One etcd serves every test of this process; each test uses names of its own.
#include "etcd_process.hpp"
#include "micro/testing/registry_conformance.hpp"

namespace {

micro::testing::RegistryUnderTest etcd() {
  micro::testing::RegistryUnderTest r;
  r.module = "registry-etcd";
  r.options_toml =
      "address = [\"" + micro::testing::shared_etcd().url() + "\"]\nprefix = \"/conformance/\"\n";
  // Leases count whole seconds, and etcd expires them on a 500 ms tick: 300 ms is 1 s plus.
  r.ttl_slack = std::chrono::milliseconds(3500);
  return r;
}

[[maybe_unused]] ::testing::Environment* const kEtcd =
    ::testing::AddGlobalTestEnvironment(new micro::testing::SharedEtcdEnvironment);

}  // namespace

using micro::testing::RegistryConformance;
INSTANTIATE_TEST_SUITE_P(Etcd, RegistryConformance, ::testing::Values(etcd()));
