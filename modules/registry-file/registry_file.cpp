// registry-file: a registry that the processes of one machine share through a directory, with no
// server. Each node of each service version is one TOML file; get and list read the tree; one
// module thread turns changes to the tree (inotify, or polling) and TTL expiry into watch events.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "micro/registry.hpp"
#include "node_file.hpp"
#include "tracker.hpp"
#include "tree.hpp"
#include "tree_watcher.hpp"

namespace micro::registry_file {
namespace {

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The thread sleeps at most this long, so a jump of the wall clock delays expiry no longer.
constexpr int64_t kMaxSleepMs = 10'000;
// Longer TTLs are cut to this (a century), so that expiry times stay far from overflow.
constexpr uint64_t kMaxTtlMs = 100ull * 365 * 24 * 3600 * 1000;

struct Settings {
  std::string path;
  bool default_path = false;  // path not set: a private folder of this user
  int64_t ttl_ms = 0;
  int64_t poll_ms = 200;
  int64_t grace_ms = 10'000;
  bool inotify = true;

  static std::vector<OptionSpec> specs() {
    return {
        {"path", MICRO_OPTION_STRING,
         "the shared folder (default: $XDG_RUNTIME_DIR/micro-registry, else "
         "/tmp/micro-registry-<uid>)",
         ""},
        {"ttl_ms", MICRO_OPTION_INT, "TTL for registrations that set none (0: never expire)", "0"},
        {"poll_ms", MICRO_OPTION_INT,
         "how often to scan the folder when inotify is off or unavailable", "200"},
        {"grace_ms", MICRO_OPTION_INT,
         "how long an expired node file stays before a reader deletes it", "10000"},
        {"inotify", MICRO_OPTION_BOOL, "watch the folder with inotify (false: scan every poll_ms)",
         "true"},
    };
  }

  static Settings from(const Options& options) {
    Settings s;
    s.path = options.get_string("path");
    if (s.path.empty()) {
      s.default_path = true;
      const char* runtime = std::getenv("XDG_RUNTIME_DIR");
      s.path = runtime != nullptr && runtime[0] == '/'
                   ? std::string(runtime) + "/micro-registry"
                   : "/tmp/micro-registry-" + std::to_string(::geteuid());
    }
    std::error_code ec;
    const auto absolute = std::filesystem::absolute(s.path, ec);
    if (!ec) s.path = absolute.lexically_normal().string();
    while (s.path.size() > 1 && s.path.back() == '/') s.path.pop_back();
    s.ttl_ms = options.get_int("ttl_ms", s.ttl_ms);
    s.poll_ms = options.get_int("poll_ms", s.poll_ms);
    s.grace_ms = options.get_int("grace_ms", s.grace_ms);
    s.inotify = options.get_bool("inotify", s.inotify);
    auto refuse = [](const std::string& what) {
      throw Exception(Error::bad_request("registry-file: " + what));
    };
    if (s.ttl_ms < 0) refuse("ttl_ms must be >= 0, not " + std::to_string(s.ttl_ms));
    if (s.poll_ms < 10 || s.poll_ms > 60'000)
      refuse("poll_ms must be within 10..60000, not " + std::to_string(s.poll_ms));
    if (s.grace_ms < 0) refuse("grace_ms must be >= 0, not " + std::to_string(s.grace_ms));
    return s;
  }
};

class FileRegistry final : public RegistryPlugin {
 public:
  static std::vector<OptionSpec> options() { return Settings::specs(); }

  explicit FileRegistry(const CreateContext& ctx)
      : log_(ctx.logger()), settings_(Settings::from(ctx.options())), tree_(settings_.path) {
    if (Error e = tree_.create_root(settings_.default_path); !e.ok()) throw Exception(e);
    std::unique_ptr<TreeWatcher> watcher;
    if (settings_.inotify) {
      std::string why;
      watcher = TreeWatcher::open(tree_.root(), &why);
      if (!watcher)
        log_.info("registry-file: ", why, "; scanning ", tree_.root(), " every ", settings_.poll_ms,
                  " ms instead");
    }
    tracker_ = std::make_unique<Tracker>(
        tree_, log_,
        Tracker::Settings{settings_.default_path, settings_.grace_ms, settings_.poll_ms},
        std::move(watcher));
    tracker_->rescan("", unix_ms());
    tracker_->clear_events();  // what is there already is the starting point, not news
    log_.debug("registry-file: sharing ", tree_.root(),
               tracker_->watcher()
                   ? " (inotify)"
                   : " (polling every " + std::to_string(settings_.poll_ms) + " ms)");
    if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0)
      throw Exception(Error::internal("registry-file: pipe2 failed"));
    thread_ = std::thread([this] { run(); });
  }

  ~FileRegistry() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake();
    thread_.join();
    ::close(wake_pipe_[0]);
    ::close(wake_pipe_[1]);
  }

  void register_service(const Service& service, const RegisterOptions& options,
                        Done done) override {
    if (service.name.empty()) return done(Error::bad_request("service has no name"));
    if (service.nodes.empty())
      return done(Error::bad_request("service '" + service.name +
                                     "' has no nodes; registry-file stores one file per node"));
    const int64_t now = unix_ms();
    const uint64_t ttl = options.ttl_ms != 0 ? options.ttl_ms : uint64_t(settings_.ttl_ms);
    const int64_t expires = ttl == 0 ? 0 : now + int64_t(std::min<uint64_t>(ttl, kMaxTtlMs));
    std::vector<std::pair<NodeFile, std::string>> files;  // with their text
    for (const auto& node : service.nodes) {
      NodeFile file{service, expires};
      file.service.nodes = {node};
      auto text = encode_node_file(file);
      if (!text.ok()) return done(text.error);
      files.emplace_back(std::move(file), std::move(text.value));
    }
    Error error;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [file, text] : files) {
        const std::string rel = Tree::node_path(file.service, file.service.nodes[0]);
        auto written = tree_.write(rel, text);
        if (!written.ok()) {
          error = written.error;
          break;
        }
        LoadedFile loaded{LoadedFile::State::live, std::move(file), written.value, {}};
        tracker_->apply(rel, std::move(loaded), now);
      }
    }
    wake();
    log_.debug("registry-file: registered ", service.name, " ", service.version, " (",
               service.nodes.size(), " nodes, ttl ", ttl, " ms)");
    done(error);
  }

  void deregister_service(const Service& service, Done done) override {
    Error error;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const auto& node : service.nodes) {
        const std::string rel = Tree::node_path(service, node);
        if (Error e = tree_.remove(rel); !e.ok()) error = e;
        tracker_->apply(rel, LoadedFile{}, unix_ms());
      }
    }
    wake();
    done(error);
  }

  void get_service(const std::string& name, ServicesCallback done) override {
    Versions versions;
    const int64_t now = unix_ms();
    for (const auto& version_dir : tree_.subdirs(Tree::service_dir(name)))
      collect(version_dir, &name, now, versions);
    if (versions.empty())
      return done(Error::not_found("service '" + name + "' is not registered in " + tree_.root()),
                  {});
    done({}, finish(versions));
  }

  void list_services(ServicesCallback done) override {
    Versions versions;
    const int64_t now = unix_ms();
    for (const auto& service_dir : tree_.subdirs(""))
      for (const auto& version_dir : tree_.subdirs(service_dir))
        collect(version_dir, nullptr, now, versions);
    done({}, finish(versions));
  }

  uint64_t watch(const std::string& service, RegistryEventCallback on_event) override {
    uint64_t after = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      after = tracker_->last_seq();  // events already queued happened before this watch began
    }
    std::lock_guard<std::mutex> lock(watch_mutex_);
    const uint64_t id = ++last_watch_id_;
    watchers_[id] = std::make_shared<Watcher>(Watcher{service, std::move(on_event), after});
    return id;
  }

  void unwatch(uint64_t watch_id) override {
    {
      std::lock_guard<std::mutex> lock(watch_mutex_);
      watchers_.erase(watch_id);
    }
    // Wait out a delivery in progress, so that no event follows our return; from a callback
    // (the module thread) that delivery is the caller itself.
    if (std::this_thread::get_id() != thread_.get_id())
      std::lock_guard<std::mutex> wait(delivery_mutex_);
  }

 private:
  struct Watcher {
    std::string service;  // empty: every service
    RegistryEventCallback on_event;
    uint64_t after_seq;  // only events queued later are this watch's
  };
  struct Version {
    Service service;  // from the node file written last
    int64_t newest = std::numeric_limits<int64_t>::min();
    std::vector<Node> nodes;
  };
  using Versions = std::map<std::pair<std::string, std::string>, Version>;  // (name, version)

  // ---- reading for get and list (any thread, no lock: files are replaced whole) -------------

  void collect(const std::string& version_dir, const std::string* name, int64_t now,
               Versions& versions) const {
    for (const auto& rel : tree_.node_files(version_dir)) {
      LoadedFile loaded = tree_.load(rel, now);
      switch (loaded.state) {
        case LoadedFile::State::missing:
          break;
        case LoadedFile::State::invalid:
          log_.debug("registry-file: skipping ", tree_.absolute(rel), ": ", loaded.why);
          break;
        case LoadedFile::State::expired:
          if (loaded.file.expires_unix_ms <= now - settings_.grace_ms &&
              tree_.reap(rel, now, settings_.grace_ms))
            log_.debug("registry-file: deleted ", tree_.absolute(rel), ", expired at ",
                       loaded.file.expires_unix_ms);
          break;
        case LoadedFile::State::live: {
          Service& s = loaded.file.service;
          if (name != nullptr && s.name != *name) break;  // a hashed dir name's other service
          Version& v = versions[{s.name, s.version}];
          v.nodes.push_back(std::move(s.nodes[0]));
          if (loaded.stamp.mtime_ns >= v.newest) {
            v.newest = loaded.stamp.mtime_ns;
            s.nodes.clear();
            v.service = std::move(s);
          }
          break;
        }
      }
    }
  }

  static std::vector<Service> finish(Versions& versions) {
    std::vector<Service> out;
    for (auto& [key, v] : versions) {
      std::sort(v.nodes.begin(), v.nodes.end(),
                [](const Node& a, const Node& b) { return a.id < b.id; });
      v.service.nodes = std::move(v.nodes);
      out.push_back(std::move(v.service));
    }
    return out;
  }

  // ---- the thread ----------------------------------------------------------------------------

  void wake() {
    const char byte = 1;
    (void)!::write(wake_pipe_[1], &byte, 1);  // full pipe: a wake-up is pending anyway
  }

  void run() {
    using Steady = std::chrono::steady_clock;
    const auto poll_interval = std::chrono::milliseconds(settings_.poll_ms);
    auto next_scan = Steady::now() + poll_interval;
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      // Only this thread's rescan() may drop the watcher, so the pointer holds until then.
      TreeWatcher* watcher = tracker_->watcher();
      int64_t sleep_ms = std::clamp<int64_t>(tracker_->next_due() - unix_ms(), 0, kMaxSleepMs);
      if (watcher == nullptr)
        sleep_ms = std::clamp<int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(next_scan - Steady::now())
                .count(),
            0, sleep_ms);
      lock.unlock();

      pollfd fds[2] = {{wake_pipe_[0], POLLIN, 0}, {watcher ? watcher->fd() : -1, POLLIN, 0}};
      (void)::poll(fds, 2, static_cast<int>(sleep_ms));
      char drain[64];
      while (::read(wake_pipe_[0], drain, sizeof drain) > 0) {
      }
      TreeWatcher::Changes changes;
      if (watcher != nullptr) watcher->read(changes);

      lock.lock();
      if (stopping_) break;
      const int64_t now = unix_ms();
      if (watcher == nullptr && Steady::now() >= next_scan) {
        changes.everything = true;
        next_scan = Steady::now() + poll_interval;
      }
      if (changes.everything) {
        tracker_->rescan("", now);
      } else {
        for (const auto& dir : changes.dirs) tracker_->rescan(dir, now);
        for (const auto& file : changes.files) tracker_->refresh(file, now);
      }
      tracker_->expire(now);
      const std::vector<QueuedEvent> batch = tracker_->take_events();
      lock.unlock();
      deliver(batch);
      lock.lock();
    }
  }

  // Calls each watch's callback for each event in order, one call at a time.
  void deliver(const std::vector<QueuedEvent>& batch) {
    for (const auto& pending : batch) {
      std::vector<std::pair<uint64_t, std::shared_ptr<Watcher>>> targets;
      {
        std::lock_guard<std::mutex> lock(watch_mutex_);
        for (const auto& [id, w] : watchers_)
          if (pending.seq > w->after_seq &&
              (w->service.empty() || w->service == pending.event.service.name))
            targets.emplace_back(id, w);
      }
      for (const auto& [id, watcher] : targets) {
        std::lock_guard<std::mutex> delivering(delivery_mutex_);
        {
          std::lock_guard<std::mutex> lock(watch_mutex_);
          if (watchers_.count(id) == 0) continue;  // unwatched meanwhile
        }
        try {
          watcher->on_event(pending.event);
        } catch (...) {  // the SDK's adapter already catches; this thread must survive anyway
          log_.warn("registry-file: a watch callback threw");
        }
      }
    }
  }

  Logger log_;
  const Settings settings_;
  const Tree tree_;

  std::mutex mutex_;  // guards the two below, and orders this process's writes
  bool stopping_ = false;
  std::unique_ptr<Tracker> tracker_;

  std::mutex watch_mutex_;  // guards watchers_
  std::map<uint64_t, std::shared_ptr<Watcher>> watchers_;
  uint64_t last_watch_id_ = 0;
  std::mutex delivery_mutex_;  // held while a callback runs

  int wake_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace
}  // namespace micro::registry_file

MICRO_MODULE("registry-file", "1.0.0", "Registry shared through a directory by local processes",
             micro::plugin<micro::registry_file::FileRegistry>(
                 "registry-file",
                 "Registry in a shared directory: one TOML file per node, "
                 "inotify watch, TTL expiry"));
