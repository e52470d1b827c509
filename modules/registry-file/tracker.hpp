// What one registry instance last saw of every node file, and the watch events each change
// means. Not thread-safe: the registry holds its lock around every call.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "micro/log.hpp"
#include "micro/registry.hpp"
#include "tree.hpp"
#include "tree_watcher.hpp"

namespace micro::registry_file {

// An event waiting for delivery; `seq` orders it against the start of a watch.
struct QueuedEvent {
  uint64_t seq = 0;
  RegistryEvent event;
};

class Tracker {
 public:
  struct Settings {
    bool private_root = false;  // how to recreate the root if someone removed it (Tree)
    int64_t grace_ms = 0;       // expired files are deleted this long after expiry
    int64_t poll_ms = 0;        // said in the log line when inotify gives up
  };

  // `watcher` may be null (the caller polls). Keeps a reference to `tree`.
  Tracker(const Tree& tree, const Logger& log, Settings settings,
          std::unique_ptr<TreeWatcher> watcher);

  // Records what a node file now holds and queues the event that means: create (the first live
  // node of a service version), update (another node, or a changed one) or delete. A renewal
  // that only extends the TTL is not an event, as in go-micro.
  void apply(const std::string& rel, LoadedFile loaded, int64_t now);
  // Reads a node file again, if its stamp changed since it was last read.
  void refresh(const std::string& rel, int64_t now);
  // Walks `rel_dir` ("": everything) down to its node files, watching every folder before
  // listing it (so nothing created in between is missed), and refreshes every node file found
  // or known there.
  void rescan(const std::string& rel_dir, int64_t now);
  // Deletes (an event) the nodes whose TTL lapsed, and the files expired for grace_ms.
  void expire(int64_t now);
  // When expire() next has work (Unix ms); INT64_MAX: never.
  int64_t next_due() const;

  // The inotify watcher; null once polling (it gives up when the kernel refuses a watch).
  TreeWatcher* watcher() const noexcept { return watcher_.get(); }
  // The events queued so far, oldest first; empties the queue.
  std::vector<QueuedEvent> take_events() { return std::exchange(queue_, {}); }
  // The sequence number of the last event queued.
  uint64_t last_seq() const noexcept { return seq_; }
  // Drops queued events (what the first scan finds is the starting point, not news).
  void clear_events() { queue_.clear(); }

 private:
  // What was last read from a node file.
  struct Known {
    FileStamp stamp;
    std::optional<NodeFile> live;  // set while it holds a registration that has not expired
  };
  using VersionKey = std::pair<std::string, std::string>;  // (name, version)

  void queue(RegistryEventType type, const NodeFile& file, int64_t now);
  void add_live(const NodeFile& file) { ++live_nodes_[version_key(file)]; }
  void forget_live(const NodeFile& file);
  void walk(const std::string& rel_dir, std::set<std::string>& found);
  static VersionKey version_key(const NodeFile& file) {
    return {file.service.name, file.service.version};
  }

  const Tree& tree_;
  Logger log_;
  const Settings settings_;
  std::unique_ptr<TreeWatcher> watcher_;
  std::map<std::string, Known> known_;       // node file (relative path) -> what it held
  std::map<VersionKey, size_t> live_nodes_;  // live nodes per service version
  std::map<std::string, int64_t> reap_at_;   // expired node file -> when to delete it
  std::vector<QueuedEvent> queue_;
  uint64_t seq_ = 0;
};

}  // namespace micro::registry_file
