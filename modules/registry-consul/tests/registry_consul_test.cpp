// registry-consul against the Consul API double (consul_double.hpp), and against a real Consul
// agent when CONSUL_HTTP_ADDR is set: the registry conformance suite, then what a user notices
// when the agent misbehaves (down at start, restarted mid-watch, answering 500 or garbage or too
// slowly) and when a registering process dies.
#include <cstdlib>
#include <thread>

#include "micro/testing/child_process.hpp"
#include "consul_double.hpp"
#include "micro/testing/registry_conformance.hpp"

using micro::RegistryEvent;
using micro::RegistryEventType;
using micro::testing::ChildProcess;
using micro::consul::testing::ConsulDouble;
using micro::testing::Collector;
using std::chrono::milliseconds;

namespace {

// Options that make TTLs, check passes and retries quick enough for tests.
const char* kQuickOptions =
    "check_ttl_ms = 600\n"
    "deregister_critical_service_after_ms = 800\n"
    "watch_wait_ms = 2000\n"
    "watch_retry_max_ms = 300\n";

ConsulDouble& shared_double() {
  static ConsulDouble consul;
  return consul;
}

micro::testing::RegistryUnderTest consul_registry(const std::string& address) {
  micro::testing::RegistryUnderTest r;
  r.module = "registry-consul";
  r.options_toml = "address = \"" + address + "\"\n" + kQuickOptions;
  r.ttl_slack = std::chrono::seconds(3);
  return r;
}

std::vector<micro::testing::RegistryUnderTest> real_consul() {
  const char* address = std::getenv("CONSUL_HTTP_ADDR");
  if (address == nullptr || *address == '\0') return {};
  micro::testing::RegistryUnderTest r;
  r.module = "registry-consul";
  // Real Consul refuses DeregisterCriticalServiceAfter under a minute; 0 leaves it unset.
  r.options_toml = "check_ttl_ms = 600\nderegister_critical_service_after_ms = 0\n";
  r.ttl_slack = std::chrono::seconds(5);
  return {r};
}

}  // namespace

using micro::testing::RegistryConformance;
INSTANTIATE_TEST_SUITE_P(ConsulDouble, RegistryConformance,
                         ::testing::Values(consul_registry(shared_double().address())));
INSTANTIATE_TEST_SUITE_P(RealConsul, RegistryConformance, ::testing::ValuesIn(real_consul()));

namespace {

// Waits until `holds()` or the deadline; for states that no event announces.
template <class Pred>
bool eventually(Pred holds, milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!holds()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

auto has_event(RegistryEventType type, const std::string& node_id) {
  return [=](const std::vector<RegistryEvent>& all) {
    return std::any_of(all.begin(), all.end(), [&](const RegistryEvent& e) {
      return e.type == type && std::any_of(e.service.nodes.begin(), e.service.nodes.end(),
                                           [&](const micro::Node& n) { return n.id == node_id; });
    });
  };
}

class RegistryConsulTest : public ::testing::Test {
 protected:
  std::unique_ptr<micro::host::Stack> stack(const std::string& timeout = "timeout_ms = 2000\n") {
    return micro::testing::require_stack("[registry]\nmodule = \"registry-consul\"\naddress = \"" +
                                             consul_.address() + "\"\n" + kQuickOptions + timeout,
                                         {MICRO_KIND_REGISTRY});
  }

  micro::Service service(const std::string& name, const std::string& node = "node-1") {
    micro::Service s;
    s.name = name;
    s.version = "2.0.0";
    s.metadata = {{"owner", "test"}};
    s.endpoints = {{"Greeter.Hello", "Request", "Response", {}}};
    s.nodes = {{node, "127.0.0.1:7100", {{"zone", "a"}}}};
    return s;
  }

  bool found(const micro::Registry& registry, const std::string& name) {
    return registry.get_service(name).ok();
  }

  ConsulDouble consul_;
};

TEST_F(RegistryConsulTest, AgentDownAtStartIsAClearErrorAndTheNodeIsRegisteredOnceItIsUp) {
  consul_.stop();
  auto s = stack();
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  const auto svc = service("down-at-start");
  const micro::Error error = registry.register_service(svc);
  EXPECT_EQ(error.code(), 503) << error.to_string();
  EXPECT_NE(error.detail().find(consul_.address()), std::string::npos) << error.detail();
  auto got = registry.get_service(svc.name);
  EXPECT_EQ(got.error.code(), 503) << got.error.to_string();

  consul_.start(/*keep_state=*/false);
  // No lost registration: the module registers the node as soon as the agent answers.
  EXPECT_TRUE(eventually([&] { return found(registry, svc.name); }));
  EXPECT_EQ(consul_.check_status("node-1"), "passing");
}

TEST_F(RegistryConsulTest, AgentRestartedWithoutStateGetsTheNodeBackAndTheWatchGoesOn) {
  auto s = stack();
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  const auto svc = service("restarted");
  Collector<RegistryEvent> events;
  auto watch = registry.watch(svc.name, [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry.register_service(svc).ok());
  ASSERT_TRUE(events.wait_for(has_event(RegistryEventType::create, "node-1")));

  consul_.stop();
  EXPECT_EQ(registry.get_service(svc.name).error.code(), 503);
  consul_.start(/*keep_state=*/false);  // the index starts again from 1: it went backwards
  EXPECT_TRUE(eventually([&] { return consul_.has_service("node-1"); }));
  EXPECT_TRUE(eventually([&] { return found(registry, svc.name); }));

  // The watch carries on: a second node registered after the restart is reported.
  auto second = service("restarted", "node-2");
  ASSERT_TRUE(registry.register_service(second).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::update, "node-2")))
      << "no event for a node registered after the agent restarted";
  ASSERT_TRUE(registry.deregister_service(second).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "node-2")));
}

TEST_F(RegistryConsulTest, AgentRestartedWithItsStateKeepsTheNodeAndTheWatch) {
  auto s = stack();
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  const auto svc = service("kept");
  Collector<RegistryEvent> events;
  auto watch = registry.watch(svc.name, [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry.register_service(svc).ok());
  ASSERT_TRUE(events.wait_for(has_event(RegistryEventType::create, "node-1")));
  consul_.stop();
  consul_.start(/*keep_state=*/true);
  ASSERT_TRUE(registry.deregister_service(svc).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "node-1")));
}

TEST_F(RegistryConsulTest, AnswersOf500OrGarbageAreClearErrorsAndEverythingRecovers) {
  auto s = stack();
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  const auto svc = service("faulty");
  Collector<RegistryEvent> events;
  auto watch = registry.watch(svc.name, [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());

  consul_.set_fault(ConsulDouble::Fault::error_500);
  micro::Error error = registry.register_service(svc);
  EXPECT_EQ(error.code(), 503);
  EXPECT_NE(error.detail().find("answered 500"), std::string::npos) << error.detail();
  auto got = registry.get_service(svc.name);
  EXPECT_EQ(got.error.code(), 503);
  EXPECT_NE(got.error.detail().find("injected failure"), std::string::npos) << got.error.detail();

  consul_.set_fault(ConsulDouble::Fault::garbage);
  got = registry.get_service(svc.name);
  EXPECT_EQ(got.error.code(), 502) << got.error.to_string();
  EXPECT_NE(got.error.detail().find("/v1/health/service/faulty"), std::string::npos)
      << got.error.detail();
  auto listed = registry.list_services();
  EXPECT_EQ(listed.error.code(), 502) << listed.error.to_string();

  consul_.set_fault(ConsulDouble::Fault::none);
  // The node refused during the 500s is registered by the module once the agent answers again,
  // and the watch, which kept retrying, reports it.
  EXPECT_TRUE(eventually([&] { return found(registry, svc.name); }));
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "node-1")));
}

TEST_F(RegistryConsulTest, SlowAgentTimesOutWithATimeoutErrorAndRecovers) {
  auto s = stack("timeout_ms = 1000\n");
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  const auto svc = service("slow");
  ASSERT_TRUE(registry.register_service(svc).ok());
  consul_.set_fault(ConsulDouble::Fault::slow, milliseconds(3000));
  const auto started = std::chrono::steady_clock::now();
  auto got = registry.get_service(svc.name);
  EXPECT_EQ(got.error.code(), 408) << got.error.to_string();
  EXPECT_NE(got.error.detail().find("within 1000 ms"), std::string::npos) << got.error.detail();
  EXPECT_LT(std::chrono::steady_clock::now() - started,
            milliseconds(2900));  // not the agent's pace
  consul_.set_fault(ConsulDouble::Fault::none);
  EXPECT_TRUE(eventually([&] { return found(registry, svc.name); }));
}

TEST_F(RegistryConsulTest, NodeOfAKilledProcessGoesCriticalThenIsDeregistered) {
  ChildProcess helper({REGISTRY_CONSUL_HELPER, micro::testing::module_dir(), consul_.address(),
                       "crashy", "crashy-node", "check_ttl_ms = 1000",
                       "deregister_critical_service_after_ms = 600"});
  ASSERT_TRUE(helper.read_until("registered\n")) << helper.output();
  auto s = stack();
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("crashy", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(events.wait_for(has_event(RegistryEventType::create, "crashy-node")));
  // While the process lives, its module keeps the check passing (every third of its 1 s TTL, so
  // a loaded machine that stalls the process for a pass or two does not fail it): two TTLs go by
  // without a delete.
  EXPECT_FALSE(
      events.wait_for(has_event(RegistryEventType::remove, "crashy-node"), milliseconds(2000)));
  EXPECT_TRUE(found(registry, "crashy"));

  helper.kill();
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "crashy-node")));
  EXPECT_EQ(registry.get_service("crashy").error.code(), 404);
  // Critical for longer than DeregisterCriticalServiceAfter: the agent removes it.
  EXPECT_TRUE(eventually([&] { return !consul_.has_service("crashy-node"); }));
}

TEST_F(RegistryConsulTest, ProcessThatStopsCleanlyDeregistersItsNode) {
  ChildProcess helper({REGISTRY_CONSUL_HELPER, micro::testing::module_dir(), consul_.address(),
                       "tidy", "tidy-node"});
  ASSERT_TRUE(helper.read_until("registered\n")) << helper.output();
  EXPECT_TRUE(consul_.has_service("tidy-node"));
  helper.close_stdin();
  EXPECT_EQ(helper.wait_exit(), 0);
  EXPECT_FALSE(consul_.has_service("tidy-node"));
}

TEST_F(RegistryConsulTest, WatchOfEveryServiceSeesNodesOfNewServices) {
  auto s = stack();
  ASSERT_NE(s, nullptr);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  const auto a = service("every-a", "a-1");
  const auto b = service("every-b", "b-1");
  ASSERT_TRUE(registry.register_service(a).ok());
  ASSERT_TRUE(registry.register_service(b).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "a-1")));
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "b-1")));
  ASSERT_TRUE(registry.deregister_service(a).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "a-1")));
}

// The module compiles generated protobuf code, so it is RESIDENT (micro_add_module): a second
// stack after the first is gone loads it again without libprotobuf aborting.
TEST(RegistryConsulModule, LoadsAgainInTheSameProcessAfterItsStackIsGone) {
  for (int round = 0; round < 2; ++round) {
    auto stack = micro::testing::require_stack(
        "[registry]\nmodule = \"registry-consul\"\naddress = \"127.0.0.1:1\"\n",
        {MICRO_KIND_REGISTRY});
    ASSERT_NE(stack, nullptr) << "round " << round;
    EXPECT_NE(stack->find(MICRO_KIND_REGISTRY), nullptr);
  }
}

TEST(RegistryConsulOptions, TokenIsSentAsXConsulTokenAndAWrongOneIsRefused) {
  ConsulDouble::Options options;
  options.token = "s3cret";
  ConsulDouble consul(options);
  auto build = [&](const std::string& extra) {
    return micro::testing::require_stack("[registry]\nmodule = \"registry-consul\"\naddress = \"" +
                                             consul.address() + "\"\n" + extra,
                                         {MICRO_KIND_REGISTRY});
  };
  auto good = build("token = \"s3cret\"\n");
  ASSERT_NE(good, nullptr);
  EXPECT_TRUE(micro::Registry(good->registry()).list_services().ok());
  auto bad = build("token = \"wrong\"\n");
  ASSERT_NE(bad, nullptr);
  auto listed = micro::Registry(bad->registry()).list_services();
  EXPECT_EQ(listed.error.code(), 403);
  EXPECT_NE(listed.error.detail().find("ACL not found"), std::string::npos)
      << listed.error.detail();
  ::setenv("CONSUL_HTTP_TOKEN", "s3cret", 1);
  auto from_env = build("");
  ::unsetenv("CONSUL_HTTP_TOKEN");
  ASSERT_NE(from_env, nullptr);
  EXPECT_TRUE(micro::Registry(from_env->registry()).list_services().ok());
}

TEST(RegistryConsulOptions, AddressComesFromConsulHttpAddrAndDatacenterIsSentAsDc) {
  ConsulDouble consul;
  ::setenv("CONSUL_HTTP_ADDR", ("http://" + consul.address()).c_str(), 1);
  auto here = micro::testing::require_stack("[registry]\nmodule = \"registry-consul\"\n",
                                            {MICRO_KIND_REGISTRY});
  auto elsewhere = micro::testing::require_stack(
      "[registry]\nmodule = \"registry-consul\"\ndatacenter = \"dc9\"\n", {MICRO_KIND_REGISTRY});
  ::unsetenv("CONSUL_HTTP_ADDR");
  ASSERT_NE(here, nullptr);
  ASSERT_NE(elsewhere, nullptr);
  EXPECT_TRUE(micro::Registry(here->registry()).list_services().ok());
  auto listed = micro::Registry(elsewhere->registry()).list_services();
  EXPECT_EQ(listed.error.code(), 503);
  EXPECT_NE(listed.error.detail().find("No path to datacenter"), std::string::npos)
      << listed.error.detail();
}

TEST(RegistryConsulOptions, BadOptionsAreReportedByName) {
  auto built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-consul\"\naddress = \"https://127.0.0.1:8501\"\n",
      {MICRO_KIND_REGISTRY});
  ASSERT_FALSE(built.errors.empty());
  EXPECT_NE(built.errors.front().find("HTTPS"), std::string::npos) << built.errors.front();
  built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-consul\"\ncheck_ttl_ms = 0\n", {MICRO_KIND_REGISTRY});
  ASSERT_FALSE(built.errors.empty());
  EXPECT_NE(built.errors.front().find("check_ttl_ms"), std::string::npos) << built.errors.front();
}

}  // namespace
