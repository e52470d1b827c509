// selector-default as a client sees it: loaded by the host on top of registry-memory, nodes
// registered through the registry, nodes chosen through the selector's C ABI.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "micro/registry.hpp"
#include "micro/selector.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Counts = std::map<std::string, int>;

class SelectorDefault : public ::testing::Test {
 protected:
  // Builds registry-memory + selector-default; `selector_options` are lines of [selector].
  void start(const std::string& selector_options = "") {
    stack_ = micro::testing::require_stack(
        "[registry]\nmodule = \"registry-memory\"\n"
        "[selector]\nmodule = \"selector-default\"\n" +
            selector_options,
        {MICRO_KIND_SELECTOR});
    ASSERT_NE(stack_, nullptr);
    registry_ = micro::Registry(stack_->registry());
    selector_ = micro::Selector(stack_->selector());
  }

  static micro::Service service(const std::string& name, const std::vector<std::string>& ids) {
    micro::Service s{name, "1.0.0", {}, {}, {}};
    for (size_t i = 0; i < ids.size(); ++i)
      s.nodes.push_back({ids[i], "127.0.0.1:" + std::to_string(9000 + i), {}});
    return s;
  }
  void add(const std::string& name, const std::vector<std::string>& ids) {
    ASSERT_TRUE(registry_.register_service(service(name, ids)).ok());
  }
  void remove(const std::string& name, const std::vector<std::string>& ids) {
    ASSERT_TRUE(registry_.deregister_service(service(name, ids)).ok());
  }

  // The id of the node chosen for one call ("" when the select failed).
  std::string pick(const std::string& name, const micro::SelectOptions& options = {}) {
    auto chosen = selector_.select(name, options);
    EXPECT_TRUE(chosen.ok()) << chosen.error.to_string();
    return chosen.value.id;
  }
  Counts pick_many(const std::string& name, int calls, const micro::SelectOptions& options = {}) {
    Counts counts;
    for (int i = 0; i < calls; ++i) ++counts[pick(name, options)];
    return counts;
  }
  // Selects until `id` comes up or five seconds pass; true if it came up.
  bool eventually_picks(const std::string& name, const std::string& id) {
    const auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline)
      if (pick(name) == id) return true;
    return false;
  }
  void mark_failed(const std::string& name, const std::string& id) {
    ASSERT_TRUE(selector_.mark(name, id, micro::Error::unavailable("connection refused")).ok());
  }

  std::unique_ptr<micro::host::Stack> stack_;
  micro::Registry registry_;
  micro::Selector selector_;
};

// ---- strategies ----

TEST_F(SelectorDefault, RoundRobinSpreadsThirtyThousandSelectsEvenlyOverThreeNodes) {
  start();
  add("greeter", {"a", "b", "c"});
  const Counts counts = pick_many("greeter", 30000);
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [id, n] : counts) EXPECT_NEAR(n, 10000, 500) << id;  // within 5% of even
}

TEST_F(SelectorDefault, RandomStrategyReachesEveryNode) {
  start("strategy = \"random\"\n");
  add("greeter", {"a", "b", "c"});
  const Counts counts = pick_many("greeter", 3000);
  ASSERT_EQ(counts.size(), 3u);
  // Expected 1000 each (standard deviation about 26): 700 would take an 11-sigma fluke.
  for (const auto& [id, n] : counts) EXPECT_GT(n, 700) << id;
}

TEST_F(SelectorDefault, StrategyOfTheCallOverridesTheConfiguredOne) {
  start("strategy = \"random\"\n");
  add("greeter", {"a", "b", "c"});
  const Counts counts = pick_many("greeter", 3000, {"round_robin", {}});
  for (const auto& id : {"a", "b", "c"}) EXPECT_EQ(counts.at(id), 1000) << id;
}

TEST_F(SelectorDefault, UnknownStrategyIsABadRequest) {
  start();
  add("greeter", {"a"});
  auto chosen = selector_.select("greeter", {"fastest", {}});
  EXPECT_EQ(chosen.error.code(), 400);
  EXPECT_NE(chosen.error.detail().find("fastest"), std::string::npos) << chosen.error.detail();

  auto built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-memory\"\n"
      "[selector]\nmodule = \"selector-default\"\nstrategy = \"fastest\"\n",
      {MICRO_KIND_SELECTOR});
  ASSERT_FALSE(built.ok());
  EXPECT_NE(built.errors[0].find("strategy"), std::string::npos) << built.errors[0];
}

// ---- the cache follows the registry ----

TEST_F(SelectorDefault, NodeRegisteredLaterIsPickedUpThroughTheWatch) {
  start();
  add("greeter", {"a"});
  EXPECT_EQ(pick("greeter"), "a");  // cached now, and watched
  add("greeter", {"b"});
  EXPECT_TRUE(eventually_picks("greeter", "b"));  // no reset: the watch brought it
}

TEST_F(SelectorDefault, DeregisteredNodeIsNeverPickedAfterItsDeleteEvent) {
  start();
  add("greeter", {"a", "b", "c"});
  EXPECT_FALSE(pick("greeter").empty());  // the selector's watch starts here
  // registry-memory delivers each event to its watches in the order they started, on one
  // thread, so once this later watch has the delete event the selector has it too.
  micro::testing::Collector<micro::RegistryEvent> events;
  auto watch = registry_.watch("greeter", [&](const micro::RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  remove("greeter", {"b"});
  ASSERT_TRUE(events.wait_for([](const std::vector<micro::RegistryEvent>& got) {
    return !got.empty() && got.back().type == micro::RegistryEventType::remove;
  }));
  const Counts counts = pick_many("greeter", 3000);
  EXPECT_EQ(counts.count("b"), 0u);
  EXPECT_EQ(counts.at("a"), 1500);
  EXPECT_EQ(counts.at("c"), 1500);
}

TEST_F(SelectorDefault, UnknownServiceIsNotFound) {
  start();
  auto chosen = selector_.select("nope");
  EXPECT_EQ(chosen.error.code(), 404);
  EXPECT_EQ(chosen.error.detail(), "service 'nope' not found");
}

TEST_F(SelectorDefault, UnknownServiceIsFoundOnceRegistered) {
  start();
  EXPECT_EQ(selector_.select("late").error.code(), 404);
  add("late", {"a"});
  EXPECT_TRUE(eventually_picks("late", "a"));
}

TEST_F(SelectorDefault, ServiceWhoseLastNodeLeftIsNotFound) {
  start();
  add("greeter", {"a"});
  EXPECT_EQ(pick("greeter"), "a");
  remove("greeter", {"a"});
  auto chosen = selector_.select("greeter");
  EXPECT_EQ(chosen.error.code(), 404);
  EXPECT_EQ(chosen.error.detail(), "service 'greeter' not found");
}

// ---- marks, exclusions, reset ----

TEST_F(SelectorDefault, FailedNodeSitsOutBlacklistMsThenComesBack) {
  start("blacklist_ms = 300\n");
  add("greeter", {"a", "b", "c"});
  EXPECT_FALSE(pick("greeter").empty());
  const auto marked_at = Clock::now();
  mark_failed("greeter", "b");
  // Well inside the 300 ms, b is never chosen.
  for (int i = 0; i < 300 && Clock::now() < marked_at + 200ms; ++i)
    ASSERT_NE(pick("greeter"), "b") << "call " << i;
  ASSERT_TRUE(eventually_picks("greeter", "b"));
  EXPECT_GE(Clock::now() - marked_at, 300ms);  // ... and it came back only after them
}

TEST_F(SelectorDefault, SuccessfulCallClearsTheMark) {
  start("blacklist_ms = 60000\n");
  add("greeter", {"a", "b", "c"});
  EXPECT_FALSE(pick("greeter").empty());
  mark_failed("greeter", "b");
  EXPECT_EQ(pick_many("greeter", 30).count("b"), 0u);
  ASSERT_TRUE(selector_.mark("greeter", "b", micro::Error{}).ok());
  EXPECT_EQ(pick_many("greeter", 3).count("b"), 1u);
}

TEST_F(SelectorDefault, WhenEveryNodeIsBlacklistedOneIsStillReturned) {
  start("blacklist_ms = 60000\n");
  add("greeter", {"a", "b", "c"});
  EXPECT_FALSE(pick("greeter").empty());
  for (const auto& id : {"a", "b", "c"}) mark_failed("greeter", id);
  const Counts counts = pick_many("greeter", 30);  // every call succeeds ...
  EXPECT_EQ(counts.size(), 3u);                    // ... still taking turns
}

TEST_F(SelectorDefault, ExcludedNodesAreNotPicked) {
  start("blacklist_ms = 60000\n");
  add("greeter", {"a", "b", "c"});
  const Counts counts = pick_many("greeter", 100, {"", {"a", "b"}});
  EXPECT_EQ(counts, (Counts{{"c", 100}}));
  // Exclusions and marks together: a excluded, c marked, b is all that is left.
  mark_failed("greeter", "c");
  EXPECT_EQ(pick_many("greeter", 10, {"", {"a"}}), (Counts{{"b", 10}}));
}

TEST_F(SelectorDefault, ExcludingEveryNodeIsUnavailableNamingTheServiceAndTheCount) {
  start();
  add("greeter", {"a", "b", "c"});
  auto chosen = selector_.select("greeter", {"", {"a", "b", "c"}});
  EXPECT_EQ(chosen.error.code(), 503);
  EXPECT_NE(chosen.error.detail().find("'greeter'"), std::string::npos) << chosen.error.detail();
  EXPECT_NE(chosen.error.detail().find("all 3"), std::string::npos) << chosen.error.detail();
}

TEST_F(SelectorDefault, ResetForgetsTheMarks) {
  start("blacklist_ms = 60000\n");
  add("greeter", {"a", "b", "c"});
  EXPECT_FALSE(pick("greeter").empty());
  mark_failed("greeter", "a");
  EXPECT_EQ(pick_many("greeter", 30).count("a"), 0u);
  ASSERT_TRUE(selector_.reset("greeter").ok());
  EXPECT_EQ(pick_many("greeter", 3).count("a"), 1u);
}

// ---- the C select (client-rpc's path): a view of the cached node ----

// A cached node reaches a C select whole: id, address and every metadata entry, whether its
// metadata fits the selector's inline list or not; excluded ids are honoured there too.
TEST_F(SelectorDefault, CSelectSeesTheCachedNodeWithAllItsMetadata) {
  start();
  micro::Service s{"greeter", "1.0.0", {}, {}, {}};
  s.nodes.push_back({"short", "127.0.0.1:9000", {{"protocol", "mucp"}, {"transport", "http"}}});
  micro::Metadata many;
  for (int i = 0; i < 40; ++i) many["key-" + std::to_string(i)] = "value-" + std::to_string(i);
  s.nodes.push_back({"long", "127.0.0.1:9001", many});
  ASSERT_TRUE(registry_.register_service(s).ok());
  EXPECT_FALSE(pick("greeter").empty());  // cached from here on

  struct Seen {
    micro::Error error;
    micro::Node node;
  };
  const auto select_c = [&](const std::vector<std::string>& exclude) {
    std::vector<micro_str_t> ids;
    for (const auto& id : exclude) ids.push_back(micro::to_c(id));
    const micro_select_options_t options{sizeof(micro_select_options_t), {nullptr, 0},
                                         ids.data(), ids.size()};
    Seen seen;
    selector_.select_c("greeter", options,
                       [](void* ctx, const micro_error_t* error, const micro_node_t* node) {
                         auto* out = static_cast<Seen*>(ctx);
                         out->error = micro::Error::from_c(error);
                         if (node != nullptr) out->node = micro::from_c(node);
                       },
                       &seen);
    return seen;  // selector-default answers a cached service inline
  };
  const Seen short_one = select_c({"long"});
  ASSERT_TRUE(short_one.error.ok()) << short_one.error.to_string();
  EXPECT_EQ(short_one.node.id, "short");
  EXPECT_EQ(short_one.node.address, "127.0.0.1:9000");
  EXPECT_EQ(short_one.node.metadata, s.nodes[0].metadata);
  const Seen long_one = select_c({"short"});
  ASSERT_TRUE(long_one.error.ok()) << long_one.error.to_string();
  EXPECT_EQ(long_one.node.id, "long");
  EXPECT_EQ(long_one.node.metadata, many);
  const Seen none = select_c({"short", "long"});
  EXPECT_EQ(none.error.code(), 503) << none.error.to_string();
  EXPECT_TRUE(none.node.id.empty());
}

// ---- threads ----

TEST_F(SelectorDefault, CallbackMayCallTheSelectorAgain) {
  start();
  add("greeter", {"a", "b"});
  micro::testing::Collector<std::string> retried;
  // A first select (a lookup) whose callback marks the node and retries elsewhere, as a client
  // does after a failed call: the selector holds no lock while it calls back.
  selector_.select("greeter", {}, [&](const micro::Error& e, const micro::Node& first) {
    ASSERT_TRUE(e.ok()) << e.to_string();
    (void)selector_.mark("greeter", first.id, micro::Error::unavailable("connection refused"));
    selector_.select("greeter", {"", {first.id}},
                     [&, id = first.id](const micro::Error& again, const micro::Node& second) {
                       EXPECT_TRUE(again.ok()) << again.to_string();
                       EXPECT_NE(second.id, id);
                       retried.push(second.id);
                     });
  });
  EXPECT_TRUE(
      retried.wait_for([](const std::vector<std::string>& got) { return got.size() == 1; }));
}

TEST_F(SelectorDefault, ManyThreadsSelectingAtOnceShareOneFairRoundRobin) {
  start();
  add("greeter", {"a", "b", "c"});
  constexpr int kThreads = 8, kCalls = 3000;
  std::vector<Counts> per_thread(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { per_thread[t] = pick_many("greeter", kCalls); });
  for (auto& t : threads) t.join();
  Counts total;
  for (const auto& counts : per_thread)
    for (const auto& [id, n] : counts) total[id] += n;
  ASSERT_EQ(total.size(), 3u) << "a failed select shows up as id \"\"";
  for (const auto& [id, n] : total) EXPECT_NEAR(n, kThreads * kCalls / 3, 400) << id;
}

TEST_F(SelectorDefault, SelectsStayCorrectWhileNodesComeAndGoAndMarksAndResetsHappen) {
  start("blacklist_ms = 1\n");
  add("greeter", {"a", "b", "c"});
  std::atomic<bool> churning{true};
  std::atomic<int> bad{0};
  std::vector<std::thread> selecting;
  for (int t = 0; t < 4; ++t)
    selecting.emplace_back([&] {
      const std::set<std::string> known{"a", "b", "c", "d"};
      while (churning) {
        auto chosen = selector_.select("greeter", {"", {"c"}});
        if (!chosen.ok() || known.count(chosen.value.id) == 0 || chosen.value.id == "c") ++bad;
        if (chosen.ok())
          (void)selector_.mark("greeter", chosen.value.id, micro::Error::internal("refused"));
      }
    });
  for (int round = 0; round < 200; ++round) {
    add("greeter", {"d"});
    remove("greeter", {"d"});
    if (round % 50 == 0) {
      EXPECT_TRUE(selector_.reset("greeter").ok());
    }
  }
  churning = false;
  for (auto& t : selecting) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
