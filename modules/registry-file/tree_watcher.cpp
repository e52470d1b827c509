#include "tree_watcher.hpp"

#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "tree.hpp"

#if defined(__linux__)
#include <sys/inotify.h>
#endif

namespace micro::registry_file {

#if defined(__linux__)

std::unique_ptr<TreeWatcher> TreeWatcher::open(std::string root, std::string* why) {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    *why = "inotify_init1: " + std::error_code(errno, std::generic_category()).message();
    return nullptr;
  }
  return std::unique_ptr<TreeWatcher>(new TreeWatcher(fd, std::move(root)));
}

TreeWatcher::~TreeWatcher() { ::close(fd_); }

bool TreeWatcher::watch(const std::string& rel_dir, std::string* why) {
  // Files are replaced by rename (IN_MOVED_TO); IN_CLOSE_WRITE catches files written in place.
  constexpr uint32_t kMask = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE |
                             IN_DELETE_SELF | IN_ONLYDIR;
  const std::string path = rel_dir.empty() ? root_ : root_ + "/" + rel_dir;
  const int wd = ::inotify_add_watch(fd_, path.c_str(), kMask);
  if (wd >= 0) {
    dirs_[wd] = rel_dir;
    return true;
  }
  if (errno == ENOENT || errno == ENOTDIR) return true;
  *why = "inotify_add_watch " + path + ": " +
         std::error_code(errno, std::generic_category()).message();
  return false;
}

void TreeWatcher::read(Changes& changes) {
  alignas(struct inotify_event) char buffer[16384];
  for (;;) {
    const ssize_t n = ::read(fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EAGAIN: nothing more pending
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const struct inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(struct inotify_event) + event->len);
      if (event->mask & IN_Q_OVERFLOW) {
        changes.everything = true;
        continue;
      }
      auto dir = dirs_.find(event->wd);
      if (dir == dirs_.end()) continue;
      if (event->mask & IN_IGNORED) {  // the directory is gone
        if (dir->second.empty())
          changes.everything = true;
        else
          changes.dirs.insert(dir->second);
        dirs_.erase(dir);
        continue;
      }
      const std::string name = event->len > 0 ? std::string(event->name) : std::string();
      if (name.empty() || name[0] == '.') continue;  // hidden: temp files being written
      const std::string child = dir->second.empty() ? name : dir->second + "/" + name;
      const int depth = Tree::depth(dir->second);
      if (event->mask & IN_ISDIR) {
        if (depth < 2) changes.dirs.insert(child);
      } else if (depth == 2 && Tree::is_node_file_name(name)) {
        changes.files.insert(child);
      }
    }
  }
}

#else  // no inotify: the registry polls

std::unique_ptr<TreeWatcher> TreeWatcher::open(std::string, std::string* why) {
  *why = "inotify is Linux only";
  return nullptr;
}
TreeWatcher::~TreeWatcher() = default;
bool TreeWatcher::watch(const std::string&, std::string*) { return false; }
void TreeWatcher::read(Changes&) {}

#endif

}  // namespace micro::registry_file
