// selector-default: go-micro's cache selector. Chooses a node of a service by round robin or at
// random from a cache of the service's nodes. The first select of a service looks it up and
// watches it; watch events keep the cache current, and a lookup refreshes it once cache_ttl_ms
// has passed (the only way it stays current when the registry cannot watch). A node marked
// failed sits out blacklist_ms.
//
// Threads: every method may be called from any thread at once. The selector owns no thread: a
// select answers inline when the service is cached, else on the thread that completes the
// registry lookup; cache updates run on the registry's watch thread.
#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "micro/registry.hpp"
#include "micro/selector.hpp"
#include "service_entry.hpp"
#include "strategy.hpp"

namespace selector_default {
namespace {

// How soon a cached service is looked up again after a lookup failed (at most cache_ttl_ms).
constexpr Clock::duration kRetryAfterFailure = std::chrono::seconds(1);

// Counts registry lookups whose completion has not finished, so destroy can wait for them: a
// completion runs this module's code and the callbacks of the selects waiting on it.
class LookupsInFlight {
 public:
  void begin() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++count_;
  }
  void end() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--count_ == 0) idle_.notify_all();
  }
  void wait_idle() {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [&] { return count_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable idle_;
  size_t count_ = 0;
};

micro::Exception bad_option(const std::string& detail) {
  return micro::Exception(micro::Error::bad_request(detail));
}

class DefaultSelector final : public micro::SelectorPlugin {
 public:
  static constexpr uint32_t required_kinds = MICRO_KIND_BIT(MICRO_KIND_REGISTRY);

  static std::vector<micro::OptionSpec> options() {
    return {
        {"strategy", MICRO_OPTION_STRING,
         "how a node is chosen: round_robin or random (a call may choose otherwise)",
         "\"round_robin\""},
        {"cache_ttl_ms", MICRO_OPTION_INT,
         "a cached service is looked up again after this long, even if its watch was quiet",
         "60000"},
        {"blacklist_ms", MICRO_OPTION_INT,
         "a node marked failed is not chosen for this long (0: marks have no effect)", "5000"},
    };
  }

  explicit DefaultSelector(const micro::CreateContext& ctx)
      : log_(ctx.logger()), registry_(ctx.deps().registry) {
    const micro::Options& o = ctx.options();
    const std::string strategy = o.get_string("strategy", "round_robin");
    const auto parsed = parse_strategy(strategy);
    if (!parsed)
      throw bad_option("strategy = \"" + strategy +
                       "\" is not a strategy: use \"round_robin\" or \"random\"");
    default_strategy_ = *parsed;
    const int64_t ttl_ms = o.get_int("cache_ttl_ms", 60000);
    if (ttl_ms <= 0)
      throw bad_option("cache_ttl_ms must be > 0 (got " + std::to_string(ttl_ms) + ")");
    cache_ttl_ = std::chrono::milliseconds(ttl_ms);
    const int64_t blacklist_ms = o.get_int("blacklist_ms", 5000);
    if (blacklist_ms < 0)
      throw bad_option("blacklist_ms must be >= 0 (got " + std::to_string(blacklist_ms) + ")");
    blacklist_ = std::chrono::milliseconds(blacklist_ms);
    if (!registry_.valid())
      throw micro::Exception(micro::Error::internal(
          "selector-default was created without a registry (the host passes the [registry] "
          "instance to every plugin that requires one)"));
  }

  // Stops every watch, then waits for lookups still running: once this returns, nothing of this
  // selector runs again. Must not be called from a select's callback.
  ~DefaultSelector() override {
    std::unordered_map<std::string, std::shared_ptr<ServiceEntry>> entries;
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      stopping_ = true;
      entries.swap(entries_);
    }
    for (auto& [name, entry] : entries) drop(*entry);
    lookups_.wait_idle();
  }

  void select(const std::string& service, const micro::SelectOptions& options,
              micro::NodeCallback done) override {
    Strategy strategy = default_strategy_;
    if (!options.strategy.empty()) {
      const auto parsed = parse_strategy(options.strategy);
      if (!parsed)
        return done(
            micro::Error::bad_request("unknown selector strategy '" + options.strategy +
                                      "' for service '" + service + "': use round_robin or random"),
            micro::Node{});
      strategy = *parsed;
    }
    if (select_cached(service, strategy, options.exclude_node_ids, done)) return;
    select_uncached(service, strategy, options.exclude_node_ids, std::move(done));
  }

  // The C select of a cached service, answered inline with a view of the cached node: nothing
  // is copied or allocated (for names that fit std::string's inline buffer). Anything else
  // (a cold service, an unknown strategy) takes the ordinary path through select().
  bool select_c(std::string_view service, const micro_select_options_t& options,
                micro_node_fn done, void* ctx) noexcept override {
    Strategy strategy = default_strategy_;
    if (options.strategy.size != 0) {
      const auto parsed = parse_strategy(micro::to_view(options.strategy));
      if (!parsed) return false;  // select() says why
      strategy = *parsed;
    }
    const CNodeIds exclude{options.exclude_node_ids,
                           options.exclude_node_ids != nullptr ? options.exclude_count : 0};
    std::optional<Pick> pick;
    const micro::Error failed =
        micro::detail::guarded([&] { pick = pick_cached(std::string(service), strategy, exclude); });
    if (!failed.ok() || !pick) return false;
    if (!pick->error.ok()) {
      const micro_error_t view = pick->error.view();
      done(ctx, &view, nullptr);
      return true;
    }
    answer_c((*pick->nodes)[pick->index], done, ctx);
    return true;
  }
  void mark(const std::string& service, const std::string& node_id,
            const micro::Error& outcome) override {
    mark_view(service, node_id, outcome);
  }
  // A success (every call's outcome) clears a mark, if any, without copying the id.
  void mark_view(std::string_view service, std::string_view node_id,
                 const micro::Error& outcome) override {
    const std::shared_ptr<ServiceEntry> entry = find(std::string(service));
    if (!entry) return;  // nothing cached: nothing to choose from, nothing to mark
    std::lock_guard<std::mutex> lock(entry->mutex);
    if (outcome.ok()) {
      entry->clear_mark_locked(node_id);
    } else if (blacklist_.count() > 0) {
      entry->mark_failed_locked(std::string(node_id), Clock::now() + blacklist_);
      log_.debug("node ", node_id, " of service '", service, "' failed (", outcome.to_string(),
                 "): not chosen for ", blacklist_.count(), " ms");
    }
  }

  void reset(const std::string& service) override {
    std::shared_ptr<ServiceEntry> entry;
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      auto it = entries_.find(service);
      if (it == entries_.end()) return;
      entry = std::move(it->second);
      entries_.erase(it);
    }
    drop(*entry);
  }

 private:
  // The hot path: answers from the cache, inline, with no registry call and no allocation.
  // Returns false when the service is not cached well enough to answer.
  bool select_cached(const std::string& service, Strategy strategy,
                     const std::vector<std::string>& exclude, const micro::NodeCallback& done) {
    std::optional<Pick> pick = pick_cached(service, strategy, exclude);
    if (!pick) return false;
    deliver(*pick, done);
    return true;
  }
  // The pick for a cached service, or nothing when it is not cached well enough to answer.
  template <class Exclude>
  std::optional<Pick> pick_cached(const std::string& service, Strategy strategy,
                                  const Exclude& exclude) {
    std::shared_ptr<ServiceEntry> entry = find(service);
    if (!entry) return std::nullopt;
    Pick pick;
    bool stale = false;  // the TTL has passed: refresh
    {
      std::lock_guard<std::mutex> lock(entry->mutex);
      if (!entry->answerable_locked()) return std::nullopt;
      const auto now = Clock::now();
      stale = entry->claim_refresh_locked(now);
      pick = entry->pick_locked(strategy, exclude, now);
    }
    if (stale) start_lookup(std::move(entry));  // the stale nodes answer meanwhile
    return pick;
  }

  // The service's entry, or null. (If reset drops it right after, a select that got it answers
  // as if it had come just before the reset.)
  std::shared_ptr<ServiceEntry> find(const std::string& service) {
    std::lock_guard<std::mutex> lock(map_mutex_);
    auto it = entries_.find(service);
    return it == entries_.end() ? nullptr : it->second;
  }

  // The first select of a service (or one whose lookup failed): waits for the lookup, starting
  // it unless another select already has, so concurrent first selects share one.
  void select_uncached(const std::string& service, Strategy strategy,
                       const std::vector<std::string>& exclude, micro::NodeCallback done) {
    std::shared_ptr<ServiceEntry> entry;
    bool start = false;
    std::optional<Pick> answered;  // another select's lookup answered just before
    {
      std::unique_lock<std::mutex> map_lock(map_mutex_);
      if (stopping_) {
        map_lock.unlock();
        return done(micro::Error::unavailable("selector-default is shutting down: no node "
                                              "selected for service '" +
                                              service + "'"),
                    micro::Node{});
      }
      auto& slot = entries_[service];
      if (!slot) slot = std::make_shared<ServiceEntry>(service);
      entry = slot;
      std::lock_guard<std::mutex> lock(entry->mutex);
      if (entry->answerable_locked()) {
        const auto now = Clock::now();
        start = entry->claim_refresh_locked(now);
        answered = entry->pick_locked(strategy, exclude, now);
      } else {
        entry->waiters.push_back({strategy, exclude, std::move(done)});
        if (!entry->lookup_in_flight) start = entry->lookup_in_flight = true;
      }
    }
    if (start) start_lookup(entry);
    if (answered) deliver(*answered, done);
  }

  // Looks the service up. Watches it first, so a change between the lookup's read and the
  // watch's start cannot be missed (events that arrive meanwhile are replayed on the answer).
  void start_lookup(std::shared_ptr<ServiceEntry> entry) {
    ensure_watch(*entry);
    lookups_.begin();
    ServiceEntry* target = entry.get();
    try {
      registry_.get_service(
          target->service, [this, entry](const micro::Error& error,
                                         const std::vector<micro::Service>& services) mutable {
            finish_lookup(*entry, error, services);
            entry.reset();
            lookups_.end();  // the last touch of this selector: destroy may return now
          });
    } catch (const std::exception& e) {  // the call was never made (allocation failed)
      finish_lookup(*target, micro::Error::internal(e.what()), {});
      lookups_.end();
    }
  }

  // Starts the service's watch unless it runs. On failure the TTL refresh keeps the cache
  // current instead, and the next lookup tries to watch again.
  void ensure_watch(ServiceEntry& entry) {
    {
      std::lock_guard<std::mutex> lock(entry.mutex);
      if (entry.watch_active || entry.watch_starting || entry.dropped) return;
      entry.watch_starting = true;
    }
    micro::Result<micro::RegistryWatch> started;
    try {
      ServiceEntry* target = &entry;  // outlives the watch: drop() stops it first
      started = registry_.watch(entry.service, [this, target](const micro::RegistryEvent& event) {
        log_.debug("service '", target->service, "': ", micro::to_string(event.type), " of ",
                   event.service.nodes.size(), " node(s)");
        std::lock_guard<std::mutex> lock(target->mutex);
        target->apply_event_locked(event);
      });
    } catch (const std::exception& e) {
      started.error = micro::Error::internal(e.what());
    }
    micro::RegistryWatch unwanted;  // the entry was dropped meanwhile: stopped below, unlocked
    bool first_failure = false;
    {
      std::lock_guard<std::mutex> lock(entry.mutex);
      entry.watch_starting = false;
      if (started.ok() && entry.dropped) {
        unwanted = std::move(started.value);
      } else if (started.ok()) {
        entry.watch = std::move(started.value);
        entry.watch_active = true;
      } else {
        first_failure = !entry.watch_failed;
        entry.watch_failed = true;
      }
    }
    if (!started.ok())  // warned once per service; every retry that fails again is a debug line
      log_.log(first_failure ? MICRO_LOG_WARN : MICRO_LOG_DEBUG, "cannot watch service '",
               entry.service, "' (", started.error.to_string(),
               "): its nodes are looked up again every ", cache_ttl_.count(), " ms instead");
  }

  // Installs a lookup's answer and answers the selects that waited for it.
  void finish_lookup(ServiceEntry& entry, const micro::Error& error,
                     const std::vector<micro::Service>& services) {
    const bool found = error.ok() || error.code() == 404;  // 404: known to have no nodes
    NodeList nodes = found && error.ok() ? flatten(services) : NodeList{};
    const size_t node_count = nodes.size();
    micro::Error failure;
    if (!found)
      failure = micro::Error(error.code(), "looking up service '" + entry.service +
                                               "' in the registry failed: " + error.detail());
    std::vector<std::pair<Pick, micro::NodeCallback>> answers;
    {
      const auto now = Clock::now();
      std::lock_guard<std::mutex> lock(entry.mutex);
      if (found)
        entry.install_locked(std::move(nodes), now, cache_ttl_);
      else
        entry.lookup_failed_locked(now, std::min<Clock::duration>(cache_ttl_, kRetryAfterFailure));
      for (auto& waiter : entry.waiters) {
        Pick pick;
        if (found)
          pick = entry.pick_locked(waiter.strategy, waiter.exclude_node_ids, now);
        else
          pick.error = failure;
        answers.emplace_back(std::move(pick), std::move(waiter.done));
      }
      entry.waiters.clear();
    }
    if (found)
      log_.debug("service '", entry.service, "': ", node_count, " node(s) from the registry");
    else
      log_.warn(failure.to_string());
    for (const auto& [pick, done] : answers) deliver(pick, done);
  }

  // Ends an entry that is no longer in the map. Its watch is stopped here, outside every lock:
  // unwatch may wait for an event callback that needs the entry's lock.
  static void drop(ServiceEntry& entry) {
    micro::RegistryWatch watch;
    {
      std::lock_guard<std::mutex> lock(entry.mutex);
      entry.dropped = true;
      entry.watch_active = false;
      watch = std::move(entry.watch);
    }
    watch.stop();
  }

  // Calls a C select's `done` with a view of `node`; its metadata list is on the stack unless
  // it is long.
  static void answer_c(const micro::Node& node, micro_node_fn done, void* ctx) noexcept {
    constexpr size_t kInline = 16;
    if (node.metadata.size() > kInline) {
      std::optional<micro::NodeView> view;
      const micro::Error failure = micro::detail::guarded([&] { view.emplace(node); });
      if (!failure.ok()) {
        const micro_error_t error = failure.view();
        return done(ctx, &error, nullptr);
      }
      return done(ctx, nullptr, view->c());
    }
    micro_kv_t items[kInline];
    size_t count = 0;
    for (const auto& [key, value] : node.metadata)
      items[count++] = {micro::to_c(key), micro::to_c(value)};
    const micro_node_t view{sizeof(micro_node_t), micro::to_c(node.id),
                            micro::to_c(node.address), {items, count}};
    done(ctx, nullptr, &view);
  }
  static void deliver(const Pick& pick, const micro::NodeCallback& done) {
    if (!pick.error.ok()) return done(pick.error, micro::Node{});
    done(micro::Error{}, (*pick.nodes)[pick.index]);
  }

  micro::Logger log_;
  micro::Registry registry_;
  Strategy default_strategy_ = Strategy::round_robin;
  std::chrono::milliseconds cache_ttl_{};
  std::chrono::milliseconds blacklist_{};
  LookupsInFlight lookups_;
  // Guards the two below. Held only for a map operation (and, on the cold path, while the entry
  // is first locked: the order is always map, then entry).
  std::mutex map_mutex_;
  bool stopping_ = false;
  std::unordered_map<std::string, std::shared_ptr<ServiceEntry>> entries_;
};

}  // namespace
}  // namespace selector_default

MICRO_MODULE("selector-default", "1.0.0", "Cache selector: round robin or random, watch-fed",
             micro::plugin<selector_default::DefaultSelector>(
                 "selector-default",
                 "Round robin or random over a watch-fed node cache, with failure blacklisting"));
