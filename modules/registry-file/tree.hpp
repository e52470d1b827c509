// The registry's directory tree, <root>/<service>/<version>/<node>.toml, and the file operations
// on it. Every operation is safe while other processes work on the same tree: files are replaced
// whole by rename, never edited; readers skip names starting with '.' (files being written).
// Paths below are relative to the root ("svc/1.0.0/node-1.toml"; "" is the root itself).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "micro/types.hpp"
#include "node_file.hpp"

namespace micro::registry_file {

// A file name for a service name, version or node id: every byte outside [A-Za-z0-9._-], and a
// leading '.', as %XX; "%" for the empty string; past 200 bytes, a cut plus "~" and a hash.
std::string escape_name(std::string_view name);

// Identifies one content of a file: a file replaced (rename) or rewritten gets another stamp.
struct FileStamp {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

// A node file as found on disk.
struct LoadedFile {
  enum class State { missing, invalid, expired, live };
  State state = State::missing;
  NodeFile file;    // expired, live
  FileStamp stamp;  // invalid, expired, live
  std::string why;  // invalid: what is wrong with it
};

class Tree {
 public:
  explicit Tree(std::string root) : root_(std::move(root)) {}

  const std::string& root() const noexcept { return root_; }
  std::string absolute(const std::string& rel) const {
    return rel.empty() ? root_ : root_ + "/" + rel;
  }

  static std::string service_dir(std::string_view service) { return escape_name(service); }
  static std::string node_path(const Service& service, const Node& node) {
    return escape_name(service.name) + "/" + escape_name(service.version) + "/" +
           escape_name(node.id) + ".toml";
  }
  // 0 for the root, 1 for a service dir, 2 for a version dir, 3 for a node file.
  static int depth(std::string_view rel);
  // "<escaped id>.toml", not hidden.
  static bool is_node_file_name(std::string_view name);

  // Creates the root (and its parents). A private root (the default path, in a shared /tmp) is
  // made 0700 and must belong to this user.
  Error create_root(bool private_root) const;

  // Replaces the file at `rel` with `text` atomically (a temp file beside it, then rename),
  // creating its directories. Returns the new file's stamp.
  Result<FileStamp> write(const std::string& rel, std::string_view text) const;
  // Deletes a node file (absent is fine), then its version and service dirs if now empty.
  Error remove(const std::string& rel) const;
  // Reads and decodes a node file (at most kMaxNodeFileBytes).
  LoadedFile load(const std::string& rel, int64_t now_unix_ms) const;
  // The stamp of the file at `rel`; nothing when absent.
  std::optional<FileStamp> stamp(const std::string& rel) const;
  // Deletes a node file that expired `grace_ms` or more ago. Safe against a writer renewing it at
  // the same moment: the file is taken aside, checked again, and put back if it was renewed.
  bool reap(const std::string& rel, int64_t now_unix_ms, int64_t grace_ms) const;

  // The directories in `rel_dir`, as relative paths.
  std::vector<std::string> subdirs(const std::string& rel_dir) const;
  // The node files in a version dir, as relative paths. Deletes temp files that crashed writers
  // left behind.
  std::vector<std::string> node_files(const std::string& rel_version_dir) const;

 private:
  Error make_dirs(const std::string& rel_dir) const;
  void remove_empty_dirs(const std::string& rel_file) const;
  std::string temp_name(const std::string& rel_dir, const char* kind) const;

  std::string root_;  // absolute
};

}  // namespace micro::registry_file
