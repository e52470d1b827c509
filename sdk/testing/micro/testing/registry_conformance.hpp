// The registry conformance suite: one parameterised GoogleTest suite that every registry module
// runs (memory, mdns, consul, etcd, and any third party's). A module's test instantiates it:
//
//   INSTANTIATE_TEST_SUITE_P(Memory, RegistryConformance,
//       ::testing::Values(micro::testing::RegistryUnderTest{"registry-memory", ""}));
//
// The module is loaded through the host exactly as `micro run` would load it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "micro/registry.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace micro::testing {

struct RegistryUnderTest {
  std::string module;        // "registry-memory"
  std::string options_toml;  // lines for its [registry] table, e.g. "address = \"127.0.0.1:8500\""
  // How long a registration with a short TTL takes to lapse at most (TTL test).
  std::chrono::milliseconds ttl_slack{3000};
  // Where the module file is; empty: $MICRO_TEST_MODULE_DIR (the build's modules folder).
  std::string module_dir;
};

inline void PrintTo(const RegistryUnderTest& r, std::ostream* os) { *os << r.module; }

class RegistryConformance : public ::testing::TestWithParam<RegistryUnderTest> {
 protected:
  void SetUp() override {
    stack_ = require_stack("[registry]\nmodule = \"" + GetParam().module + "\"\n" +
                               GetParam().options_toml,
                           {MICRO_KIND_REGISTRY}, GetParam().module_dir);
    ASSERT_NE(stack_, nullptr);
    registry_ = micro::Registry(stack_->registry());
    // A name per test, so tests against a shared server do not see each other.
    prefix_ = std::string("conformance-") +
              ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(prefix_.begin(), prefix_.end(), '/', '-');
  }

  micro::Service make_service(const std::string& suffix, int nodes, int first_port = 9000) {
    micro::Service s;
    s.name = prefix_ + suffix;
    s.version = "1.0.0";
    s.metadata = {{"team", "core"}, {"unicode", "grüße ✓"}, {"spaces", "a b  c"}};
    s.endpoints = {{"Greeter.Hello", "greeter.Request", "greeter.Response", {{"stream", "false"}}},
                   {"Greeter.Chat", "greeter.Request", "greeter.Response", {{"stream", "true"}}}};
    for (int i = 0; i < nodes; ++i)
      s.nodes.push_back({s.name + "-node-" + std::to_string(i),
                         "127.0.0.1:" + std::to_string(first_port + i),
                         {{"index", std::to_string(i)}}});
    return s;
  }

  static std::vector<std::string> node_ids(const std::vector<micro::Service>& services) {
    std::vector<std::string> ids;
    for (const auto& s : services)
      for (const auto& n : s.nodes) ids.push_back(n.id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  std::unique_ptr<micro::host::Stack> stack_;
  micro::Registry registry_;
  std::string prefix_;
};

TEST_P(RegistryConformance, RegisteredServiceComesBackByteForByte) {
  const auto service = make_service("-roundtrip", 1);
  ASSERT_TRUE(registry_.register_service(service).ok());
  auto got = registry_.get_service(service.name);
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0], service);
  EXPECT_TRUE(registry_.deregister_service(service).ok());
}

TEST_P(RegistryConformance, ListShowsEveryRegisteredService) {
  const auto a = make_service("-list-a", 1, 9100);
  const auto b = make_service("-list-b", 1, 9200);
  ASSERT_TRUE(registry_.register_service(a).ok());
  ASSERT_TRUE(registry_.register_service(b).ok());
  auto listed = registry_.list_services();
  ASSERT_TRUE(listed.ok()) << listed.error.to_string();
  std::vector<std::string> names;
  for (const auto& s : listed.value) names.push_back(s.name);
  EXPECT_NE(std::find(names.begin(), names.end(), a.name), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), b.name), names.end());
  registry_.deregister_service(a);
  registry_.deregister_service(b);
}

TEST_P(RegistryConformance, DeregisteredServiceIsNotFound) {
  const auto service = make_service("-gone", 1);
  ASSERT_TRUE(registry_.register_service(service).ok());
  ASSERT_TRUE(registry_.deregister_service(service).ok());
  auto got = registry_.get_service(service.name);
  EXPECT_EQ(got.error.code(), 404) << got.error.to_string();
}

TEST_P(RegistryConformance, UnknownServiceIsNotFoundWithItsName) {
  auto got = registry_.get_service(prefix_ + "-never-registered");
  EXPECT_EQ(got.error.code(), 404);
  EXPECT_NE(got.error.detail().find(prefix_ + "-never-registered"), std::string::npos)
      << got.error.detail();
}

TEST_P(RegistryConformance, ManyNodesOfTwoServicesStayApart) {
  const auto a = make_service("-many-a", 20, 10000);
  const auto b = make_service("-many-b", 15, 11000);
  ASSERT_TRUE(registry_.register_service(a).ok());
  ASSERT_TRUE(registry_.register_service(b).ok());
  auto got_a = registry_.get_service(a.name);
  auto got_b = registry_.get_service(b.name);
  ASSERT_TRUE(got_a.ok() && got_b.ok());
  EXPECT_EQ(node_ids(got_a.value), node_ids({a}));
  EXPECT_EQ(node_ids(got_b.value), node_ids({b}));
  // Removing one node leaves the others.
  micro::Service one = a;
  one.nodes = {a.nodes[3]};
  ASSERT_TRUE(registry_.deregister_service(one).ok());
  got_a = registry_.get_service(a.name);
  ASSERT_TRUE(got_a.ok());
  EXPECT_EQ(node_ids(got_a.value).size(), 19u);
  registry_.deregister_service(a);
  registry_.deregister_service(b);
}

TEST_P(RegistryConformance, WatcherSeesCreateUpdateAndDelete) {
  const auto service = make_service("-watched", 1);
  Collector<micro::RegistryEvent> events;
  auto watch = registry_.watch(service.name, [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok()) << watch.error.to_string();

  ASSERT_TRUE(registry_.register_service(service).ok());
  auto second = service;
  second.nodes = {{service.name + "-node-b", "127.0.0.1:9999", {}}};
  ASSERT_TRUE(registry_.register_service(second).ok());
  ASSERT_TRUE(registry_.deregister_service(service).ok());

  auto has = [](micro::RegistryEventType type, const std::string& node_id) {
    return [=](const std::vector<micro::RegistryEvent>& all) {
      return std::any_of(all.begin(), all.end(), [&](const micro::RegistryEvent& e) {
        return e.type == type && std::any_of(e.service.nodes.begin(), e.service.nodes.end(),
                                             [&](const micro::Node& n) { return n.id == node_id; });
      });
    };
  };
  EXPECT_TRUE(events.wait_for(has(micro::RegistryEventType::create, service.nodes[0].id)));
  EXPECT_TRUE(events.wait_for(has(micro::RegistryEventType::update, second.nodes[0].id)));
  EXPECT_TRUE(events.wait_for(has(micro::RegistryEventType::remove, service.nodes[0].id)));
  for (const auto& e : events.snapshot()) EXPECT_EQ(e.service.name, service.name);
  registry_.deregister_service(second);
}

TEST_P(RegistryConformance, StoppedWatchGetsNoMoreEvents) {
  const auto service = make_service("-unwatched", 1);
  Collector<micro::RegistryEvent> events;
  auto watch = registry_.watch(service.name, [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  watch.value.stop();
  ASSERT_TRUE(registry_.register_service(service).ok());
  // A watch on the same name that is still running proves the event was emitted.
  Collector<micro::RegistryEvent> control;
  auto control_watch =
      registry_.watch(service.name, [&](const micro::RegistryEvent& e) { control.push(e); });
  ASSERT_TRUE(control_watch.ok());
  ASSERT_TRUE(registry_.deregister_service(service).ok());
  EXPECT_TRUE(control.wait_for([](const auto& all) { return !all.empty(); }));
  EXPECT_TRUE(events.snapshot().empty());
}

TEST_P(RegistryConformance, NodeWhoseTtlLapsesDisappears) {
  const auto service = make_service("-ttl", 1);
  Collector<micro::RegistryEvent> events;
  auto watch = registry_.watch(service.name, [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry_.register_service(service, micro::RegisterOptions{300}).ok());
  EXPECT_TRUE(events.wait_for(
      [](const auto& all) {
        return std::any_of(all.begin(), all.end(), [](const micro::RegistryEvent& e) {
          return e.type == micro::RegistryEventType::remove;
        });
      },
      std::chrono::milliseconds(300) + GetParam().ttl_slack));
  EXPECT_EQ(registry_.get_service(service.name).error.code(), 404);
}

}  // namespace micro::testing
