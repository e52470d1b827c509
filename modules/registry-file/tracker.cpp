#include "tracker.hpp"

#include <algorithm>
#include <limits>

namespace micro::registry_file {

Tracker::Tracker(const Tree& tree, const Logger& log, Settings settings,
                 std::unique_ptr<TreeWatcher> watcher)
    : tree_(tree), log_(log), settings_(settings), watcher_(std::move(watcher)) {}

void Tracker::queue(RegistryEventType type, const NodeFile& file, int64_t now) {
  queue_.push_back({++seq_, RegistryEvent{type, file.service, now}});
}

void Tracker::forget_live(const NodeFile& file) {
  auto it = live_nodes_.find(version_key(file));
  if (it != live_nodes_.end() && --it->second == 0) live_nodes_.erase(it);
}

void Tracker::apply(const std::string& rel, LoadedFile loaded, int64_t now) {
  auto it = known_.find(rel);
  const NodeFile* before = it != known_.end() && it->second.live ? &*it->second.live : nullptr;
  if (loaded.state == LoadedFile::State::live) {
    if (before == nullptr) {
      const bool first = live_nodes_.count(version_key(loaded.file)) == 0;
      queue(first ? RegistryEventType::create : RegistryEventType::update, loaded.file, now);
    } else {
      if (!before->same_registration(loaded.file))
        queue(RegistryEventType::update, loaded.file, now);
      forget_live(*before);
    }
    add_live(loaded.file);
    reap_at_.erase(rel);
    known_[rel] = Known{loaded.stamp, std::move(loaded.file)};
    return;
  }
  if (before != nullptr) {
    queue(RegistryEventType::remove, *before, now);
    forget_live(*before);
  }
  switch (loaded.state) {
    case LoadedFile::State::missing:
      known_.erase(rel);
      reap_at_.erase(rel);
      return;
    case LoadedFile::State::invalid:
      log_.debug("registry-file: skipping ", tree_.absolute(rel), ": ", loaded.why);
      break;
    case LoadedFile::State::expired:
      reap_at_[rel] = loaded.file.expires_unix_ms + settings_.grace_ms;
      break;
    case LoadedFile::State::live:
      break;
  }
  known_[rel] = Known{loaded.stamp, std::nullopt};
}

void Tracker::refresh(const std::string& rel, int64_t now) {
  const auto stamp = tree_.stamp(rel);
  auto it = known_.find(rel);
  if (stamp && it != known_.end() && it->second.stamp == *stamp) return;
  apply(rel, stamp ? tree_.load(rel, now) : LoadedFile{}, now);
}

void Tracker::rescan(const std::string& rel_dir, int64_t now) {
  if (rel_dir.empty()) (void)tree_.create_root(settings_.private_root);
  std::set<std::string> found;
  walk(rel_dir, found);
  for (const auto& rel : found) refresh(rel, now);
  const std::string prefix = rel_dir.empty() ? "" : rel_dir + "/";
  std::vector<std::string> vanished;
  for (auto it = known_.lower_bound(prefix);
       it != known_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    if (found.count(it->first) == 0) vanished.push_back(it->first);
  for (const auto& rel : vanished) refresh(rel, now);
}

void Tracker::walk(const std::string& rel_dir, std::set<std::string>& found) {
  if (watcher_) {
    std::string why;
    if (!watcher_->watch(rel_dir, &why)) {
      log_.info("registry-file: ", why, "; scanning ", tree_.root(), " every ", settings_.poll_ms,
                " ms instead");
      watcher_.reset();
    }
  }
  if (Tree::depth(rel_dir) < 2) {
    for (const auto& sub : tree_.subdirs(rel_dir)) walk(sub, found);
  } else {
    for (auto& rel : tree_.node_files(rel_dir)) found.insert(std::move(rel));
  }
}

void Tracker::expire(int64_t now) {
  for (auto& [rel, known] : known_) {
    if (!known.live || !known.live->expired(now)) continue;
    log_.debug("registry-file: TTL lapsed for node ", known.live->service.nodes[0].id, " of ",
               known.live->service.name);
    queue(RegistryEventType::remove, *known.live, now);
    forget_live(*known.live);
    reap_at_[rel] = known.live->expires_unix_ms + settings_.grace_ms;
    known.live.reset();
  }
  std::vector<std::string> due;
  for (const auto& [rel, when] : reap_at_)
    if (when <= now) due.push_back(rel);
  for (const auto& rel : due) {
    reap_at_.erase(rel);
    if (tree_.reap(rel, now, settings_.grace_ms))
      log_.debug("registry-file: deleted ", tree_.absolute(rel), " (expired)");
    refresh(rel, now);  // renewed meanwhile, or gone
  }
}

int64_t Tracker::next_due() const {
  int64_t next = std::numeric_limits<int64_t>::max();
  for (const auto& [rel, known] : known_)
    if (known.live && known.live->expires_unix_ms != 0)
      next = std::min(next, known.live->expires_unix_ms);
  for (const auto& [rel, when] : reap_at_) next = std::min(next, when);
  return next;
}

}  // namespace micro::registry_file
