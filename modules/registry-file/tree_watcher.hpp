// Tells which parts of the registry tree changed, through inotify (Linux): one watch per
// directory of the tree. Used by one thread only.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

namespace micro::registry_file {

class TreeWatcher {
 public:
  // What changed since the last read (paths relative to the root, as in Tree).
  struct Changes {
    std::set<std::string> files;  // node files created, replaced, written or deleted
    std::set<std::string> dirs;   // service or version dirs created or removed: rescan them
    bool everything = false;      // events were lost (queue overflow, root gone): rescan all
  };

  // An inotify instance for the tree at `root`; nullptr, saying why, where there is none.
  static std::unique_ptr<TreeWatcher> open(std::string root, std::string* why);
  ~TreeWatcher();
  TreeWatcher(const TreeWatcher&) = delete;
  TreeWatcher& operator=(const TreeWatcher&) = delete;

  // Readable when events are pending.
  int fd() const noexcept { return fd_; }
  // Watches a directory of the tree ("": the root); watching one twice is harmless. A directory
  // that is gone is fine (its parent reported that). False, saying why, when the kernel refuses
  // (out of watches): the caller polls instead.
  bool watch(const std::string& rel_dir, std::string* why);
  // Reads every pending event, never blocking, and adds what they say to `changes`.
  void read(Changes& changes);

 private:
  TreeWatcher(int fd, std::string root) : fd_(fd), root_(std::move(root)) {}

  int fd_;
  std::string root_;
  std::map<int, std::string> dirs_;  // watch descriptor -> relative dir
};

}  // namespace micro::registry_file
