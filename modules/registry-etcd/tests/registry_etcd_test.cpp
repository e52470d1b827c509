// registry-etcd's own behaviour against a real etcd (shared by the tests of this process, or
// one of a test's own when it restarts or stops etcd) and against a fake HTTP server for the
// answers a real etcd does not give on demand.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>

#include "etcd_process.hpp"
#include "fake_http_server.hpp"
#include "micro/registry.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace {

using namespace std::chrono_literals;
using micro::testing::Collector;
using micro::testing::EtcdProcess;
using micro::testing::FakeHttpServer;

[[maybe_unused]] ::testing::Environment* const kEtcd =
    ::testing::AddGlobalTestEnvironment(new micro::testing::SharedEtcdEnvironment);

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string unbase64(const std::string& text) {
  std::string out(3 * text.size() / 4 + 1, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return {};
  // EVP_DecodeBlock counts the padding as zero bytes.
  const size_t padding = text.size() - std::min(text.size(), text.find_last_not_of('=') + 1);
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

// The fields of a JSON object (protobuf's JSON mapping into a Struct).
google::protobuf::Struct json(const std::string& text) {
  google::protobuf::Struct out;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &out).ok()) << text;
  return out;
}

// A registry-etcd stack with `options` in its [registry] table.
std::unique_ptr<micro::host::Stack> etcd_stack(const std::string& url,
                                               const std::string& options = "") {
  return micro::testing::require_stack(
      "[registry]\nmodule = \"registry-etcd\"\naddress = [\"" + url + "\"]\n" + options,
      {MICRO_KIND_REGISTRY});
}

micro::Service service(const std::string& name, const std::vector<std::string>& nodes) {
  micro::Service s;
  s.name = name;
  s.version = "1.0.0";
  s.metadata = {{"team", "core"}};
  s.endpoints = {{"Greeter.Hello", "greeter.Request", "greeter.Response", {}}};
  int port = 7000;
  for (const auto& id : nodes) s.nodes.push_back({id, "127.0.0.1:" + std::to_string(port++), {}});
  return s;
}

size_t node_count(const micro::Registry& registry, const std::string& name) {
  auto got = registry.get_service(name);
  size_t n = 0;
  for (const auto& s : got.value) n += s.nodes.size();
  return n;
}

// Polls until `name` has `count` nodes (a state another process or etcd brings about).
bool wait_for_nodes(const micro::Registry& registry, const std::string& name, size_t count,
                    std::chrono::milliseconds timeout = 10s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (node_count(registry, name) == count) return true;
    std::this_thread::sleep_for(50ms);  // bounded poll of an external state
  }
  return false;
}

auto has_event(micro::RegistryEventType type, const std::string& node_id) {
  return [=](const std::vector<micro::RegistryEvent>& all) {
    return std::any_of(all.begin(), all.end(), [&](const micro::RegistryEvent& e) {
      return e.type == type && std::any_of(e.service.nodes.begin(), e.service.nodes.end(),
                                           [&](const micro::Node& n) { return n.id == node_id; });
    });
  };
}

// ---- layout and leases, on the shared etcd --------------------------------------------------

TEST(RegistryEtcd, NodeIsStoredAsJsonUnderPrefixServiceAndNodeId) {
  auto& etcd = micro::testing::shared_etcd();
  auto stack = etcd_stack(etcd.url(), "prefix = \"/layout\"\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  const auto s = service("svc a/b", {"node-1"});
  ASSERT_TRUE(registry.register_service(s).ok());

  const std::string key = "/layout/svc%20a%2Fb/node-1";  // '/' escaped: no reach into other ranges
  auto [status, body] = micro::testing::gateway_post(etcd.client_port(), "/v3/kv/range",
                                                     "{\"key\":\"" + base64(key) + "\"}");
  ASSERT_EQ(status, 200u) << body;
  const auto range = json(body);
  const auto& kvs = range.fields().at("kvs").list_value().values();
  ASSERT_EQ(kvs.size(), 1);
  const auto& kv = kvs[0].struct_value().fields();
  const auto record = json(unbase64(kv.at("value").string_value()));
  EXPECT_EQ(record.fields().at("name").string_value(), "svc a/b");
  EXPECT_EQ(record.fields().at("version").string_value(), "1.0.0");
  EXPECT_EQ(record.fields().at("node").struct_value().fields().at("address").string_value(),
            "127.0.0.1:7000");
  // Attached to a lease (the instance's, kept alive), so it lapses if the process dies.
  ASSERT_TRUE(kv.count("lease"));
  EXPECT_NE(kv.at("lease").string_value(), "0");
}

TEST(RegistryEtcd, DefaultLeaseIsKeptAliveBeyondItsTtl) {
  auto stack =
      etcd_stack(micro::testing::shared_etcd().url(), "prefix = \"/kept/\"\nttl_ms = 1000\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  const auto s = service("kept", {"k1"});
  ASSERT_TRUE(registry.register_service(s).ok());
  std::this_thread::sleep_for(2500ms);  // 2.5 TTLs: the node lives only if the lease was renewed
  EXPECT_EQ(node_count(registry, "kept"), 1u);
}

TEST(RegistryEtcd, ARegistrationRenewedWithinItsTtlStaysAndLapsesOnceNoLongerRenewed) {
  EtcdProcess etcd;  // its own, to count the leases
  ASSERT_TRUE(etcd.start());
  auto stack = etcd_stack(etcd.url());
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  const auto s = service("renewed", {"r1", "r2"});
  const auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {  // as server-rpc renews: register again
    ASSERT_TRUE(registry.register_service(s, micro::RegisterOptions{1000}).ok());
    std::this_thread::sleep_for(300ms);
  }
  EXPECT_EQ(node_count(registry, "renewed"), 2u);
  // Renewing an unchanged registration renews its lease rather than granting one per call.
  auto [status, leases] =
      micro::testing::gateway_post(etcd.client_port(), "/v3/lease/leases", "{}");
  ASSERT_EQ(status, 200u) << leases;
  EXPECT_EQ(json(leases).fields().at("leases").list_value().values_size(), 1) << leases;
  // A changed registration is written, not only renewed.
  auto changed = s;
  changed.nodes[0].address = "127.0.0.1:9";
  ASSERT_TRUE(registry.register_service(changed, micro::RegisterOptions{1000}).ok());
  auto got = registry.get_service("renewed");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0].nodes, changed.nodes);
  EXPECT_TRUE(wait_for_nodes(registry, "renewed", 0u, 5s));  // no longer renewed
}

TEST(RegistryEtcd, ClosingTheRegistryRevokesItsLeaseSoItsNodesGoAtOnce) {
  const std::string options = "prefix = \"/closing/\"\nttl_ms = 60000\n";
  auto watcher_stack = etcd_stack(micro::testing::shared_etcd().url(), options);
  auto owner_stack = etcd_stack(micro::testing::shared_etcd().url(), options);
  ASSERT_TRUE(watcher_stack && owner_stack);
  micro::Registry watcher(watcher_stack->registry());
  Collector<micro::RegistryEvent> events;
  auto watch = watcher.watch("closing", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(
      micro::Registry(owner_stack->registry()).register_service(service("closing", {"c1"})).ok());
  ASSERT_TRUE(events.wait_for(has_event(micro::RegistryEventType::create, "c1")));
  owner_stack.reset();
  // Far sooner than the 60 s TTL.
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::remove, "c1"), 5s));
  EXPECT_EQ(watcher.get_service("closing").error.code(), 404);
}

TEST(RegistryEtcd, AnEndpointThatRefusesConnectionsIsSkippedForTheNext) {
  EtcdProcess dead;  // never started: its port refuses connections
  auto stack = micro::testing::require_stack(
      "[registry]\nmodule = \"registry-etcd\"\nprefix = \"/failover/\"\naddress = [\"" +
          dead.url() + "\", \"" + micro::testing::shared_etcd().url() + "\"]\n",
      {MICRO_KIND_REGISTRY});
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  Collector<micro::RegistryEvent> events;
  auto watch = registry.watch("failover", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  const auto registered = registry.register_service(service("failover", {"f1"}));
  ASSERT_TRUE(registered.ok()) << registered.to_string();
  EXPECT_EQ(node_count(registry, "failover"), 1u);
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::create, "f1")));
}

TEST(RegistryEtcd, AnHttpsAddressIsRefusedByName) {
  auto built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-etcd\"\naddress = [\"https://127.0.0.1:2379\"]\n",
      {MICRO_KIND_REGISTRY});
  EXPECT_EQ(built.stack, nullptr);
  const std::string all = micro::testing::errors_of(built);
  EXPECT_NE(all.find("https://127.0.0.1:2379"), std::string::npos) << all;
}

// ---- etcd down, restarted, or losing its data ------------------------------------------------

TEST(RegistryEtcdDown, RegisterFailsAtOnceWithAnErrorNamingTheAddress) {
  EtcdProcess etcd;  // ports chosen, never started
  auto stack = etcd_stack(etcd.url());
  ASSERT_NE(stack, nullptr) << "the stack builds; etcd is contacted only when used";
  micro::Registry registry(stack->registry());
  const auto error = registry.register_service(service("down", {"d1"}));
  EXPECT_EQ(error.code(), 503) << error.to_string();
  EXPECT_NE(error.detail().find(etcd.url()), std::string::npos) << error.detail();
  const auto got = registry.get_service("down");
  EXPECT_EQ(got.error.code(), 503) << got.error.to_string();
  EXPECT_EQ(registry.list_services().error.code(), 503);
}

TEST(RegistryEtcdDown, ANodeOnTheInstanceLeaseRegisteredWhileEtcdIsDownIsWrittenOnceItIsUp) {
  EtcdProcess etcd;
  auto stack = etcd_stack(etcd.url(), "ttl_ms = 1000\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  EXPECT_EQ(registry.register_service(service("patient", {"p1"})).code(), 503);
  ASSERT_TRUE(etcd.start());
  // Not registered again by the caller: the instance writes what it keeps alive.
  EXPECT_TRUE(wait_for_nodes(registry, "patient", 1u, 10s));
}

TEST(RegistryEtcdDown, WatchStartedWhileEtcdIsDownSeesEventsOnceItIsUp) {
  EtcdProcess etcd;
  auto stack = etcd_stack(etcd.url());
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  Collector<micro::RegistryEvent> events;
  auto watch = registry.watch("late", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok()) << watch.error.to_string();
  std::this_thread::sleep_for(300ms);  // let the watch fail a few times first
  ASSERT_TRUE(etcd.start());
  // Registering succeeds once etcd is up; the watch, retrying, finds the node.
  ASSERT_TRUE(registry.register_service(service("late", {"l1"})).ok());
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::create, "l1"), 10s));
}

TEST(RegistryEtcdRestart, WatchResumesAndRegistrationsSurviveARestart) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.start());
  auto stack = etcd_stack(etcd.url(), "ttl_ms = 2000\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  Collector<micro::RegistryEvent> events;
  auto watch = registry.watch("restarted", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry.register_service(service("restarted", {"before"})).ok());
  ASSERT_TRUE(events.wait_for(has_event(micro::RegistryEventType::create, "before")));

  etcd.stop();  // SIGKILL, data dir kept
  ASSERT_TRUE(etcd.start());
  // The node registered before the restart is still there (its lease too, kept alive).
  EXPECT_EQ(node_count(registry, "restarted"), 1u);
  ASSERT_TRUE(registry.register_service(service("restarted", {"after"})).ok());
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::update, "after"), 10s));
  ASSERT_TRUE(registry.deregister_service(service("restarted", {"before"})).ok());
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::remove, "before"), 10s));
  std::this_thread::sleep_for(2500ms);  // past the TTL: the lease is still kept alive
  EXPECT_EQ(node_count(registry, "restarted"), 1u);
}

TEST(RegistryEtcdRestart, NodesAreRegisteredAgainWhenEtcdLosesTheLease) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.start());
  auto stack = etcd_stack(etcd.url(), "ttl_ms = 1000\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  ASSERT_TRUE(registry.register_service(service("phoenix", {"p1", "p2"})).ok());
  etcd.stop();
  ASSERT_TRUE(etcd.start(/*fresh_data=*/true));  // keys and lease gone
  EXPECT_TRUE(wait_for_nodes(registry, "phoenix", 2u, 10s));
}

TEST(RegistryEtcdAuth, WithAuthOnAUserWithAPasswordRegistersAndWatchesOthersGetAClearError) {
  EtcdProcess etcd;
  ASSERT_TRUE(etcd.start());
  for (const auto& [path, body] : std::vector<std::pair<std::string, std::string>>{
           {"/v3/auth/role/add", "{\"name\":\"root\"}"},
           {"/v3/auth/user/add", "{\"name\":\"root\",\"password\":\"s3cret\"}"},
           {"/v3/auth/user/grant", "{\"user\":\"root\",\"role\":\"root\"}"},
           {"/v3/auth/enable", "{}"}}) {
    auto [status, answer] = micro::testing::gateway_post(etcd.client_port(), path, body);
    ASSERT_EQ(status, 200u) << path << ": " << answer;
  }
  auto stack = etcd_stack(etcd.url(), "username = \"root\"\npassword = \"s3cret\"\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  Collector<micro::RegistryEvent> events;
  auto watch = registry.watch("guarded", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry.register_service(service("guarded", {"g1"})).ok());
  EXPECT_EQ(node_count(registry, "guarded"), 1u);
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::create, "g1")));

  auto anonymous_stack = etcd_stack(etcd.url());
  ASSERT_NE(anonymous_stack, nullptr);
  const auto refused = micro::Registry(anonymous_stack->registry()).get_service("guarded");
  EXPECT_EQ(refused.error.code(), 400) << refused.error.to_string();
  EXPECT_NE(refused.error.detail().find("user name is empty"), std::string::npos)
      << refused.error.detail();

  auto wrong_stack = etcd_stack(etcd.url(), "username = \"root\"\npassword = \"guess\"\n");
  ASSERT_NE(wrong_stack, nullptr);
  const auto wrong = micro::Registry(wrong_stack->registry()).get_service("guarded");
  EXPECT_NE(wrong.error.detail().find("authenticate as 'root'"), std::string::npos)
      << wrong.error.detail();
  EXPECT_NE(wrong.error.detail().find("authentication failed"), std::string::npos)
      << wrong.error.detail();
}

// ---- a server that misbehaves ----------------------------------------------------------------

TEST(RegistryEtcdFake, AnAnswerOf500IsAClearError) {
  FakeHttpServer server([](const std::string&, const std::string&) {
    return FakeHttpServer::Answer{FakeHttpServer::http(
        500, "{\"error\":\"boom\",\"message\":\"etcdserver: boom\",\"code\":13}")};
  });
  auto stack = etcd_stack(server.url());
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  const auto error = registry.register_service(service("five", {"f1"}));
  EXPECT_EQ(error.code(), 503) << error.to_string();
  EXPECT_NE(error.detail().find("HTTP 500"), std::string::npos) << error.detail();
  EXPECT_NE(error.detail().find("etcdserver: boom"), std::string::npos) << error.detail();
  EXPECT_EQ(registry.get_service("five").error.code(), 503);
}

TEST(RegistryEtcdFake, GarbageAnswersAreErrorsAndAWatchOnThemDeliversNothing) {
  FakeHttpServer server([](const std::string& target, const std::string&) {
    if (target == "/v3/watch")
      return FakeHttpServer::Answer{FakeHttpServer::chunked_head() +
                                    FakeHttpServer::chunk("{\"result\": [1,2\n\x01\xff}}}\n")};
    return FakeHttpServer::Answer{FakeHttpServer::http(200, "\x01\x02 not json {{{")};
  });
  auto stack = etcd_stack(server.url());
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  EXPECT_EQ(registry.register_service(service("junk", {"j1"})).code(), 503);
  const auto got = registry.get_service("junk");
  EXPECT_EQ(got.error.code(), 503);
  EXPECT_NE(got.error.detail().find("not valid"), std::string::npos) << got.error.detail();
  Collector<micro::RegistryEvent> events;
  auto watch = registry.watch("", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  EXPECT_FALSE(events.wait_for([](const auto& all) { return !all.empty(); }, 500ms));
  EXPECT_GT(server.requests(), 2);  // the watch kept trying
}

TEST(RegistryEtcdFake, AServerTooSlowToAnswerTimesOut) {
  FakeHttpServer server([](const std::string&, const std::string&) {
    return FakeHttpServer::Answer{FakeHttpServer::http(200, "{}"), 30s};
  });
  auto stack = etcd_stack(server.url(), "timeout_ms = 300\n");
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  const auto start = std::chrono::steady_clock::now();
  const auto error = registry.register_service(service("slow", {"s1"}));
  EXPECT_EQ(error.code(), 408) << error.to_string();
  EXPECT_NE(error.detail().find("300 ms"), std::string::npos) << error.detail();
  EXPECT_EQ(registry.list_services().error.code(), 408);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);  // bounded, not the server's 30 s
}

TEST(RegistryEtcdFake, WatchBehindACompactionReadsAgainAndReportsTheDifference) {
  auto record = [](const std::string& node) {
    return base64("{\"name\":\"compacted\",\"version\":\"1\",\"node\":{\"id\":\"" + node +
                  "\",\"address\":\"127.0.0.1:1\"}}");
  };
  std::atomic<int> ranges{0}, watches{0};
  FakeHttpServer server([&](const std::string& target, const std::string&) {
    if (target == "/v3/kv/range") {
      const bool first = ranges++ == 0;
      const std::string node = first ? "old" : "new";
      return FakeHttpServer::Answer{FakeHttpServer::http(
          200, "{\"header\":{\"revision\":\"" + std::string(first ? "5" : "10") +
                   "\"},\"kvs\":[{\"key\":\"" + base64("/micro/registry/compacted/" + node) +
                   "\",\"mod_revision\":\"3\",\"value\":\"" + record(node) + "\"}]}")};
    }
    if (target == "/v3/watch") {
      if (watches++ == 0)  // the revision after the first range is gone: compacted
        return FakeHttpServer::Answer{
            FakeHttpServer::chunked_head() +
            FakeHttpServer::chunk("{\"result\":{\"created\":true}}\n") +
            FakeHttpServer::chunk("{\"result\":{\"canceled\":true,\"compact_revision\":\"8\"}}\n") +
            "0\r\n\r\n"};
      return FakeHttpServer::Answer{FakeHttpServer::chunked_head() +
                                        FakeHttpServer::chunk("{\"result\":{\"created\":true}}\n"),
                                    0ms, true};
    }
    return FakeHttpServer::Answer{FakeHttpServer::http(404, "{}")};
  });
  auto stack = etcd_stack(server.url());
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  Collector<micro::RegistryEvent> events;
  auto watch = registry.watch("compacted", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::remove, "old")));
  EXPECT_TRUE(events.wait_for(has_event(micro::RegistryEventType::create, "new")));
  EXPECT_EQ(ranges.load(), 2);
  watch.value.stop();
}

}  // namespace
