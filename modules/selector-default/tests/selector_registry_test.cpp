// What selector-default asks of its registry: a registry in front of registry-memory counts the
// lookups and watches, and can hold lookups, refuse watches or swallow events. The selector is
// created on it with micro::host::Instance::create, the call the host itself makes.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
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

// A micro_registry_t that forwards to another one and records what it is asked.
class CountingRegistry {
 public:
  explicit CountingRegistry(micro_registry_t inner) : inner_(inner) {}
  micro_registry_t handle() { return {&kVtable, this}; }

  std::atomic<int> get_service_calls{0};
  std::atomic<int> watch_calls{0};
  std::atomic<bool> refuse_watches{false};  // watch answers 503
  std::atomic<bool> swallow_events{false};  // watches run, but no event reaches the selector
  std::atomic<bool> hold_lookups{false};    // get_service waits for release_lookups()

  int active_watches() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int>(forwards_.size());
  }
  size_t held_lookups() {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_.size();
  }
  // Wait (up to five seconds) until that many lookups are held / watches run.
  bool wait_for_held_lookups(size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, 5s, [&] { return held_.size() == count; });
  }
  bool wait_for_active_watches(size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, 5s, [&] { return forwards_.size() == count; });
  }
  // Answers every held lookup now, on this thread, from the registry behind.
  void release_lookups() {
    std::vector<Held> held;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      held.swap(held_);
    }
    for (const auto& h : held)
      inner_.vtable->get_service(inner_.self, micro::to_c(h.name), h.on_result, h.ctx);
  }

 private:
  struct Held {
    std::string name;
    micro_services_fn on_result;
    void* ctx;
  };
  struct Forward {
    CountingRegistry* registry;
    micro_registry_event_fn on_event;
    void* ctx;
  };

  void changed() {
    std::lock_guard<std::mutex> lock(mutex_);
    changed_.notify_all();
  }
  static CountingRegistry* as(void* self) { return static_cast<CountingRegistry*>(self); }

  static void destroy(void*) {}  // not owned
  static void register_service(void* self, const micro_service_t* service,
                               const micro_register_options_t* options, micro_done_fn done,
                               void* ctx) {
    as(self)->inner_.vtable->register_service(as(self)->inner_.self, service, options, done, ctx);
  }
  static void deregister_service(void* self, const micro_service_t* service, micro_done_fn done,
                                 void* ctx) {
    as(self)->inner_.vtable->deregister_service(as(self)->inner_.self, service, done, ctx);
  }
  static void get_service(void* self, micro_str_t name, micro_services_fn on_result, void* ctx) {
    CountingRegistry* r = as(self);
    ++r->get_service_calls;
    if (r->hold_lookups) {
      {
        std::lock_guard<std::mutex> lock(r->mutex_);
        r->held_.push_back({std::string(micro::to_view(name)), on_result, ctx});
      }
      return r->changed();
    }
    r->inner_.vtable->get_service(r->inner_.self, name, on_result, ctx);
  }
  static void list_services(void* self, micro_services_fn on_result, void* ctx) {
    as(self)->inner_.vtable->list_services(as(self)->inner_.self, on_result, ctx);
  }
  static micro_error_t* watch(void* self, micro_str_t service, micro_registry_event_fn on_event,
                              void* ctx, uint64_t* out_watch_id) {
    CountingRegistry* r = as(self);
    ++r->watch_calls;
    if (r->refuse_watches)
      return micro::Error::unavailable("this registry cannot watch (test)").to_owned_c();
    auto forward = std::make_unique<Forward>(Forward{r, on_event, ctx});
    micro_error_t* error = r->inner_.vtable->watch(r->inner_.self, service, &forward_event,
                                                   forward.get(), out_watch_id);
    if (error == nullptr) {
      std::lock_guard<std::mutex> lock(r->mutex_);
      r->forwards_[*out_watch_id] = std::move(forward);
    }
    r->changed();
    return error;
  }
  static void forward_event(void* ctx, const micro_registry_event_t* event) {
    auto* f = static_cast<Forward*>(ctx);
    if (!f->registry->swallow_events) f->on_event(f->ctx, event);
  }
  static void unwatch(void* self, uint64_t watch_id) {
    CountingRegistry* r = as(self);
    r->inner_.vtable->unwatch(r->inner_.self, watch_id);
    {
      std::lock_guard<std::mutex> lock(r->mutex_);
      r->forwards_.erase(watch_id);
    }
    r->changed();
  }

  static constexpr micro_registry_vtable_t kVtable = {sizeof(micro_registry_vtable_t),
                                                      &destroy,
                                                      &register_service,
                                                      &deregister_service,
                                                      &get_service,
                                                      &list_services,
                                                      &watch,
                                                      &unwatch};

  micro_registry_t inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<uint64_t, std::unique_ptr<Forward>> forwards_;
  std::vector<Held> held_;
};

class SelectorOnCountingRegistry : public ::testing::Test {
 protected:
  void SetUp() override {
    stack_ = micro::testing::require_stack("[registry]\nmodule = \"registry-memory\"\n",
                                           {MICRO_KIND_REGISTRY});
    ASSERT_NE(stack_, nullptr);
    registry_ = micro::Registry(stack_->registry());
    counting_ = std::make_unique<CountingRegistry>(stack_->registry());
  }

  // Creates selector-default on the counting registry, as the host would.
  void create(const toml::table& options = {}) {
    micro::host::ModuleLoader loader({micro::testing::module_dir()});
    auto loaded = loader.load_by_name("selector-default");
    ASSERT_TRUE(loaded.ok()) << loaded.error.to_string();
    micro_dependencies_t deps{};
    deps.struct_size = sizeof(deps);
    deps.registry = counting_->handle();
    const micro::ServiceInfo info{"test", "latest", "127.0.0.1:0", {}};
    auto created =
        micro::host::Instance::create(loaded.module, MICRO_KIND_SELECTOR, info, options, deps);
    ASSERT_TRUE(created.ok()) << created.error.to_string();
    module_ = loaded.module;
    instance_ = std::move(created.value);
    selector_ = micro::Selector(instance_->handle<micro_selector_t>());
  }

  void add(const std::string& name, const std::string& id) {
    micro::Service s{name, "1.0.0", {}, {}, {{id, "127.0.0.1:9000", {}}}};
    ASSERT_TRUE(registry_.register_service(s).ok());
  }
  std::string pick(const std::string& name) {
    auto chosen = selector_.select(name);
    EXPECT_TRUE(chosen.ok()) << chosen.error.to_string();
    return chosen.value.id;
  }
  bool eventually_picks(const std::string& name, const std::string& id) {
    const auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline)
      if (pick(name) == id) return true;
    return false;
  }

  // Declared so that they are destroyed selector first, registry last. The module stays loaded
  // until the registry is gone: a lookup's completion may still be returning through the
  // selector's code on the registry's thread when destroy returns.
  std::shared_ptr<micro::host::LoadedModule> module_;
  std::unique_ptr<micro::host::Stack> stack_;
  micro::Registry registry_;
  std::unique_ptr<CountingRegistry> counting_;
  std::unique_ptr<micro::host::Instance> instance_;
  micro::Selector selector_;
};

struct Answer {
  micro::Error error;
  std::string node_id;
};

TEST_F(SelectorOnCountingRegistry, WarmSelectsAnswerInlineWithoutAskingTheRegistry) {
  ASSERT_NO_FATAL_FAILURE(create());
  add("greeter", "a");
  add("greeter", "b");
  EXPECT_FALSE(pick("greeter").empty());
  EXPECT_EQ(counting_->get_service_calls, 1);
  EXPECT_EQ(counting_->watch_calls, 1);

  for (int i = 0; i < 1000; ++i) {
    bool answered = false;
    selector_.select("greeter", {}, [&](const micro::Error& e, const micro::Node& node) {
      answered = e.ok() && !node.id.empty();
    });
    ASSERT_TRUE(answered) << "call " << i << " was not answered before select returned";
  }
  add("greeter", "c");  // reaches the cache through the watch ...
  EXPECT_TRUE(eventually_picks("greeter", "c"));
  EXPECT_EQ(counting_->get_service_calls, 1);  // ... not through another lookup

  // The hot path through the C ABI, for the record (not asserted: machines differ).
  const micro_selector_t c = instance_->handle<micro_selector_t>();
  const micro_select_options_t none{sizeof(micro_select_options_t), {}, nullptr, 0};
  constexpr int kCalls = 200000;
  int ok = 0;
  const auto started = Clock::now();
  for (int i = 0; i < kCalls; ++i)
    c.vtable->select(
        c.self, micro::to_c("greeter"), &none,
        [](void* ctx, const micro_error_t* error, const micro_node_t*) {
          *static_cast<int*>(ctx) += error == nullptr;
        },
        &ok);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started);
  EXPECT_EQ(ok, kCalls);
  EXPECT_EQ(counting_->get_service_calls, 1);
  std::cout << "warm select through the C ABI: " << ns.count() / kCalls << " ns per call\n";
}

TEST_F(SelectorOnCountingRegistry, ConcurrentFirstSelectsShareOneLookup) {
  ASSERT_NO_FATAL_FAILURE(create());
  add("greeter", "a");
  counting_->hold_lookups = true;
  micro::testing::Collector<Answer> answers;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      selector_.select("greeter", {}, [&](const micro::Error& e, const micro::Node& node) {
        answers.push({e, node.id});
      });
    });
  for (auto& t : threads) t.join();  // every select is now waiting on the held lookup
  EXPECT_EQ(counting_->get_service_calls, 1);
  EXPECT_EQ(counting_->held_lookups(), 1u);
  EXPECT_TRUE(answers.snapshot().empty());

  counting_->release_lookups();
  ASSERT_TRUE(answers.wait_for([](const std::vector<Answer>& got) { return got.size() == 8; }));
  for (const auto& answer : answers.snapshot()) {
    EXPECT_TRUE(answer.error.ok()) << answer.error.to_string();
    EXPECT_EQ(answer.node_id, "a");
  }
  EXPECT_EQ(counting_->get_service_calls, 1);
}

TEST_F(SelectorOnCountingRegistry, CacheIsRefreshedAfterTtlWhenTheRegistryCannotWatch) {
  counting_->refuse_watches = true;
  ASSERT_NO_FATAL_FAILURE(create(toml::table{{"cache_ttl_ms", 100}}));
  add("greeter", "a");
  EXPECT_EQ(pick("greeter"), "a");
  add("greeter", "b");  // no watch: only a lookup after the TTL can bring it
  EXPECT_TRUE(eventually_picks("greeter", "b"));
  EXPECT_GE(counting_->get_service_calls, 2);
  EXPECT_GE(counting_->watch_calls, 2);  // each refresh tries to watch again
}

TEST_F(SelectorOnCountingRegistry, CacheIsRefreshedAfterTtlEvenWhenTheWatchIsQuiet) {
  counting_->swallow_events = true;
  ASSERT_NO_FATAL_FAILURE(create(toml::table{{"cache_ttl_ms", 100}}));
  add("greeter", "a");
  EXPECT_EQ(pick("greeter"), "a");
  add("greeter", "b");  // the event is swallowed
  EXPECT_TRUE(eventually_picks("greeter", "b"));
  EXPECT_GE(counting_->get_service_calls, 2);
  EXPECT_EQ(counting_->watch_calls, 1);  // the watch runs; it is not restarted
}

TEST_F(SelectorOnCountingRegistry, UnknownServiceIsAnsweredFromTheCacheWhileWatched) {
  ASSERT_NO_FATAL_FAILURE(create());
  EXPECT_EQ(selector_.select("late").error.code(), 404);
  EXPECT_EQ(selector_.select("late").error.code(), 404);
  EXPECT_EQ(counting_->get_service_calls, 1);
  add("late", "a");
  EXPECT_EQ(pick("late"), "a");  // the watch's create event filled the cache
  EXPECT_EQ(counting_->get_service_calls, 1);
}

TEST_F(SelectorOnCountingRegistry, UnknownServiceIsLookedUpAgainWhenItCannotBeWatched) {
  counting_->refuse_watches = true;
  ASSERT_NO_FATAL_FAILURE(create());
  EXPECT_EQ(selector_.select("late").error.code(), 404);
  add("late", "a");
  EXPECT_EQ(pick("late"), "a");  // a "not found" nobody watches is not cached
  EXPECT_EQ(counting_->get_service_calls, 2);
}

TEST_F(SelectorOnCountingRegistry, ResetDropsTheCacheAndItsWatch) {
  ASSERT_NO_FATAL_FAILURE(create());
  add("greeter", "a");
  EXPECT_EQ(pick("greeter"), "a");
  EXPECT_EQ(counting_->active_watches(), 1);
  ASSERT_TRUE(selector_.reset("greeter").ok());
  EXPECT_EQ(counting_->active_watches(), 0);
  EXPECT_EQ(pick("greeter"), "a");
  EXPECT_EQ(counting_->get_service_calls, 2);
  EXPECT_EQ(counting_->active_watches(), 1);
}

TEST_F(SelectorOnCountingRegistry, DestroyStopsTheWatchesAndWaitsForLookupsInFlight) {
  ASSERT_NO_FATAL_FAILURE(create());
  add("greeter", "a");
  add("other", "b");
  EXPECT_EQ(pick("other"), "b");
  counting_->hold_lookups = true;
  std::atomic<bool> destroyed{false};
  micro::testing::Collector<bool> destroyed_when_answered;
  selector_.select("greeter", {}, [&](const micro::Error&, const micro::Node&) {
    destroyed_when_answered.push(destroyed.load());
  });
  ASSERT_TRUE(counting_->wait_for_held_lookups(1));
  ASSERT_EQ(counting_->active_watches(), 2);

  std::thread destroying([&] {
    instance_.reset();
    destroyed = true;
  });
  // Destroy stops both watches first, then waits for the held lookup.
  ASSERT_TRUE(counting_->wait_for_active_watches(0));
  counting_->release_lookups();  // answers the waiting select on this thread
  destroying.join();
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(destroyed_when_answered.snapshot(), std::vector<bool>{false});
}

}  // namespace
