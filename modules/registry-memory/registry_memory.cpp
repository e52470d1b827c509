// registry-memory: an in-process registry for tests and examples. Services live in this
// instance's memory only; nodes registered with a TTL expire unless re-registered in time.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "micro/registry.hpp"

namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class MemoryRegistry final : public micro::RegistryPlugin {
 public:
  static std::vector<micro::OptionSpec> options() {
    return {{"ttl_ms", MICRO_OPTION_INT,
             "TTL for registrations that set none (0: never expire)", "0"}};
  }

  explicit MemoryRegistry(const micro::CreateContext& ctx)
      : log_(ctx.logger()), default_ttl_ms_(ctx.options().get_int("ttl_ms", 0)) {
    if (default_ttl_ms_ < 0) throw micro::Exception(micro::Error::bad_request("ttl_ms must be >= 0"));
    reaper_ = std::thread([this] { reap_loop(); });
  }

  ~MemoryRegistry() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    reaper_.join();
  }

  void register_service(const micro::Service& service, const micro::RegisterOptions& options,
                        micro::Done done) override {
    if (service.name.empty()) return done(micro::Error::bad_request("service has no name"));
    const uint64_t ttl = options.ttl_ms != 0 ? options.ttl_ms : uint64_t(default_ttl_ms_);
    const auto expiry = ttl == 0 ? Clock::time_point::max() : Clock::now() + std::chrono::milliseconds(ttl);
    std::vector<micro::RegistryEvent> events;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& entry = services_[service.name][service.version];
      const bool created = entry.nodes.empty();
      entry.service.name = service.name;
      entry.service.version = service.version;
      entry.service.metadata = service.metadata;
      entry.service.endpoints = service.endpoints;
      for (const auto& node : service.nodes) entry.nodes[node.id] = {node, expiry};
      events.push_back({created ? micro::RegistryEventType::create : micro::RegistryEventType::update,
                        service, unix_ms()});
    }
    wake_.notify_all();
    log_.debug("registered ", service.name, " ", service.version, " (", service.nodes.size(),
               " nodes)");
    deliver(events);
    done({});
  }

  void deregister_service(const micro::Service& service, micro::Done done) override {
    std::vector<micro::RegistryEvent> events;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto by_name = services_.find(service.name);
      if (by_name != services_.end()) {
        auto by_version = by_name->second.find(service.version);
        if (by_version != by_name->second.end()) {
          micro::Service removed = by_version->second.service;
          for (const auto& node : service.nodes) {
            auto it = by_version->second.nodes.find(node.id);
            if (it == by_version->second.nodes.end()) continue;
            removed.nodes.push_back(it->second.node);
            by_version->second.nodes.erase(it);
          }
          if (by_version->second.nodes.empty()) by_name->second.erase(by_version);
          if (by_name->second.empty()) services_.erase(by_name);
          if (!removed.nodes.empty())
            events.push_back({micro::RegistryEventType::remove, removed, unix_ms()});
        }
      }
    }
    deliver(events);
    done({});
  }

  void get_service(const std::string& name, micro::ServicesCallback done) override {
    std::vector<micro::Service> out;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = services_.find(name);
      if (it != services_.end())
        for (const auto& [version, entry] : it->second) out.push_back(entry.snapshot());
    }
    if (out.empty())
      return done(micro::Error::not_found("service '" + name + "' is not registered"), {});
    done({}, out);
  }

  void list_services(micro::ServicesCallback done) override {
    std::vector<micro::Service> out;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& [name, versions] : services_)
        for (const auto& [version, entry] : versions) out.push_back(entry.snapshot());
    }
    done({}, out);
  }

  uint64_t watch(const std::string& service, micro::RegistryEventCallback on_event) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t id = ++last_watch_id_;
    watchers_[id] = std::make_shared<Watcher>(Watcher{service, std::move(on_event)});
    return id;
  }

  void unwatch(uint64_t watch_id) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      watchers_.erase(watch_id);
    }
    // Wait for a delivery in progress on another thread, so no event follows our return.
    if (delivering_thread_.load() != std::this_thread::get_id())
      std::lock_guard<std::mutex> wait(delivery_mutex_);
  }

 private:
  struct NodeEntry {
    micro::Node node;
    Clock::time_point expiry;
  };
  struct Entry {
    micro::Service service;  // without nodes
    std::map<std::string, NodeEntry> nodes;
    micro::Service snapshot() const {
      micro::Service out = service;
      for (const auto& [id, n] : nodes) out.nodes.push_back(n.node);
      return out;
    }
  };
  struct Watcher {
    std::string service;  // empty: every service
    micro::RegistryEventCallback on_event;
  };

  // Calls each matching watcher for each event, one delivery at a time, outside the state lock
  // so a watcher may call back into the registry.
  void deliver(const std::vector<micro::RegistryEvent>& events) {
    if (events.empty()) return;
    std::lock_guard<std::mutex> delivery(delivery_mutex_);
    delivering_thread_ = std::this_thread::get_id();
    for (const auto& event : events) {
      std::vector<std::pair<uint64_t, std::shared_ptr<Watcher>>> targets;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& [id, w] : watchers_)
          if (w->service.empty() || w->service == event.service.name) targets.emplace_back(id, w);
      }
      for (const auto& [id, watcher] : targets) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (watchers_.count(id) == 0) continue;  // unwatched by an earlier callback
        }
        watcher->on_event(event);
      }
    }
    delivering_thread_ = std::thread::id{};
  }

  // Removes nodes whose TTL lapsed, waking exactly when the next one is due.
  void reap_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      auto next = Clock::time_point::max();
      std::vector<micro::RegistryEvent> events;
      const auto now = Clock::now();
      for (auto name_it = services_.begin(); name_it != services_.end();) {
        auto& versions = name_it->second;
        for (auto v_it = versions.begin(); v_it != versions.end();) {
          micro::Service expired = v_it->second.service;
          auto& nodes = v_it->second.nodes;
          for (auto n_it = nodes.begin(); n_it != nodes.end();) {
            if (n_it->second.expiry <= now) {
              expired.nodes.push_back(n_it->second.node);
              n_it = nodes.erase(n_it);
            } else {
              next = std::min(next, n_it->second.expiry);
              ++n_it;
            }
          }
          if (!expired.nodes.empty()) {
            log_.debug("TTL lapsed for ", expired.nodes.size(), " node(s) of ", expired.name);
            events.push_back({micro::RegistryEventType::remove, expired, unix_ms()});
          }
          v_it = nodes.empty() ? versions.erase(v_it) : std::next(v_it);
        }
        name_it = versions.empty() ? services_.erase(name_it) : std::next(name_it);
      }
      if (!events.empty()) {
        lock.unlock();
        deliver(events);
        lock.lock();
        continue;
      }
      if (next == Clock::time_point::max())
        wake_.wait(lock);
      else
        wake_.wait_until(lock, next);
    }
  }

  micro::Logger log_;
  const int64_t default_ttl_ms_;
  std::mutex mutex_;  // guards everything below but the delivery state
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, std::map<std::string, Entry>> services_;  // name -> version -> entry
  std::map<uint64_t, std::shared_ptr<Watcher>> watchers_;
  uint64_t last_watch_id_ = 0;
  std::mutex delivery_mutex_;
  std::atomic<std::thread::id> delivering_thread_{};
  std::thread reaper_;
};

}  // namespace

// The ABI tests build this same source with clang++ and libc++ under another name.
#ifndef REGISTRY_MEMORY_MODULE_NAME
#define REGISTRY_MEMORY_MODULE_NAME "registry-memory"
#endif

MICRO_MODULE(REGISTRY_MEMORY_MODULE_NAME, "1.0.0", "In-process registry for tests and examples",
             micro::plugin<MemoryRegistry>(REGISTRY_MEMORY_MODULE_NAME,
                                           "In-process registry with TTL expiry and watch"));
