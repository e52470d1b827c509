#include "tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace micro::registry_file {
namespace {

constexpr size_t kMaxEscapedName = 200;               // leaves room for ".toml" within NAME_MAX
constexpr int64_t kStaleTempFileNs = 60'000'000'000;  // a writer takes microseconds, not a minute
constexpr const char* kWriteTemp = ".tmp-";
constexpr const char* kReapTemp = ".reap-";

// Closes a descriptor when it goes out of scope.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { close(); }
  int get() const noexcept { return fd_; }
  int close() noexcept {
    const int rc = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

std::string errno_text(int error) {
  return std::error_code(error, std::generic_category()).message();
}

FileStamp stamp_of(const struct stat& st) {
  return FileStamp{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                   static_cast<int64_t>(st.st_size),
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::string parent_of(const std::string& rel) {
  const size_t slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::string join(const std::string& rel_dir, std::string_view name) {
  return rel_dir.empty() ? std::string(name) : rel_dir + "/" + std::string(name);
}

// Reads and decodes the node file at an absolute path.
LoadedFile load_path(const std::string& path, int64_t now_unix_ms) {
  LoadedFile out;
  // O_NONBLOCK: a FIFO someone named *.toml must not hang the reader.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return out;
    out.state = LoadedFile::State::invalid;
    out.why = "cannot open: " + errno_text(errno);
    return out;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    out.state = LoadedFile::State::invalid;
    out.why = "cannot stat: " + errno_text(errno);
    return out;
  }
  out.stamp = stamp_of(st);
  out.state = LoadedFile::State::invalid;
  if (!S_ISREG(st.st_mode)) {
    out.why = "not a regular file";
    return out;
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxNodeFileBytes) {
    out.why = std::to_string(st.st_size) + " bytes, over the " + std::to_string(kMaxNodeFileBytes) +
              "-byte limit for a node file";
    return out;
  }
  std::string text(static_cast<size_t>(st.st_size) + 1, '\0');  // +1: notice a file still growing
  size_t used = 0;
  while (used < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      out.why = "cannot read: " + errno_text(errno);
      return out;
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  if (used > static_cast<size_t>(st.st_size)) {
    out.why = "changed while being read (written in place?)";
    return out;
  }
  text.resize(used);
  auto file = decode_node_file(text, &out.why);
  if (!file) return out;
  out.file = std::move(*file);
  out.state = out.file.expired(now_unix_ms) ? LoadedFile::State::expired : LoadedFile::State::live;
  return out;
}

}  // namespace

std::string escape_name(std::string_view name) {
  if (name.empty()) return "%";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  size_t cut = std::string::npos;  // where to cut if the result is too long: between two bytes
  for (size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == '-' || (c == '.' && i != 0);
    const size_t before = out.size();
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    if (out.size() > kMaxEscapedName - 17 && cut == std::string::npos) cut = before;
  }
  if (out.size() <= kMaxEscapedName) return out;
  // Too long for a file name: keep a readable start, and a hash of the whole name to tell names
  // with the same start apart ('~' never appears in an escaped name otherwise).
  const uint64_t hash = fnv1a(name);
  out.resize(cut);
  out += '~';
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(hash >> shift) & 15];
  return out;
}

int Tree::depth(std::string_view rel) {
  if (rel.empty()) return 0;
  int slashes = 0;
  for (char c : rel) slashes += c == '/';
  return slashes + 1;
}

bool Tree::is_node_file_name(std::string_view name) {
  constexpr std::string_view kSuffix = ".toml";
  return name.size() > kSuffix.size() && name[0] != '.' &&
         name.substr(name.size() - kSuffix.size()) == kSuffix;
}

Error Tree::create_root(bool private_root) const {
  std::error_code ec;
  const std::filesystem::path root(root_);
  if (private_root) {
    std::filesystem::create_directories(root.parent_path(), ec);
    if (::mkdir(root_.c_str(), 0700) != 0 && errno != EEXIST)
      return Error::unavailable("registry-file: cannot create " + root_ + ": " + errno_text(errno) +
                                "; set [registry] path to a writable folder");
    struct stat st {};
    if (::lstat(root_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
      return Error::unavailable("registry-file: " + root_ +
                                " is not a directory of this user (uid " +
                                std::to_string(::geteuid()) +
                                "); remove it, or set [registry] path to a folder of your own");
    return {};
  }
  std::filesystem::create_directories(root, ec);
  if (!std::filesystem::is_directory(root, ec))
    return Error::unavailable("registry-file: cannot create the folder " + root_ + ": " +
                              (ec ? ec.message() : "a file of that name is in the way") +
                              "; set [registry] path to a writable folder");
  if (::access(root_.c_str(), R_OK | W_OK | X_OK) != 0)
    return Error::unavailable("registry-file: cannot write in " + root_ + ": " + errno_text(errno) +
                              "; set [registry] path to a writable folder");
  return {};
}

Error Tree::make_dirs(const std::string& rel_dir) const {
  // Every level from the root down (the root too: someone may have removed the whole tree).
  std::vector<std::string> levels = {""};
  if (!rel_dir.empty()) {
    for (size_t slash = rel_dir.find('/'); slash != std::string::npos;
         slash = rel_dir.find('/', slash + 1))
      levels.push_back(rel_dir.substr(0, slash));
    levels.push_back(rel_dir);
  }
  for (const auto& level : levels) {
    const std::string path = absolute(level);
    if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST)
      return Error::unavailable("registry-file: cannot create the folder " + path + ": " +
                                errno_text(errno));
  }
  return {};
}

std::string Tree::temp_name(const std::string& rel_dir, const char* kind) const {
  static std::atomic<uint64_t> counter{0};
  return absolute(rel_dir) + "/" + kind + std::to_string(::getpid()) + "-" +
         std::to_string(++counter);
}

Result<FileStamp> Tree::write(const std::string& rel, std::string_view text) const {
  Result<FileStamp> out;
  const std::string dir = parent_of(rel);
  const std::string path = absolute(rel);
  auto failed = [&](const std::string& what, int error) {
    out.error =
        Error::unavailable("registry-file: cannot " + what + " " + path + ": " + errno_text(error));
    return out;
  };
  // Another process may remove the (empty) directories between our mkdir and our open: retry.
  for (int attempt = 0;; ++attempt) {
    if (Error e = make_dirs(dir); !e.ok()) {
      out.error = e;
      return out;
    }
    const std::string temp = temp_name(dir, kWriteTemp);
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      if ((errno == ENOENT || errno == EEXIST) && attempt < 8) continue;
      return failed("create a temp file for", errno);
    }
    for (size_t done = 0; done < text.size();) {
      const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int error = errno;
        ::unlink(temp.c_str());
        return failed("write", error);
      }
      done += static_cast<size_t>(n);
    }
    struct stat st {};
    const bool stat_ok = ::fstat(fd.get(), &st) == 0;
    if (fd.close() != 0 || !stat_ok) {
      const int error = errno;
      ::unlink(temp.c_str());
      return failed("write", error);
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      const int error = errno;
      ::unlink(temp.c_str());
      return failed("rename a temp file to", error);
    }
    out.value = stamp_of(st);
    return out;
  }
}

void Tree::remove_empty_dirs(const std::string& rel_file) const {
  // rmdir fails on a directory that is not empty, or that a writer has just put a file in.
  for (std::string dir = parent_of(rel_file); !dir.empty(); dir = parent_of(dir))
    if (::rmdir(absolute(dir).c_str()) != 0) return;
}

Error Tree::remove(const std::string& rel) const {
  const std::string path = absolute(rel);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return Error::unavailable("registry-file: cannot delete " + path + ": " + errno_text(errno));
  remove_empty_dirs(rel);
  return {};
}

LoadedFile Tree::load(const std::string& rel, int64_t now_unix_ms) const {
  return load_path(absolute(rel), now_unix_ms);
}

std::optional<FileStamp> Tree::stamp(const std::string& rel) const {
  struct stat st {};
  if (::stat(absolute(rel).c_str(), &st) != 0) return std::nullopt;
  return stamp_of(st);
}

bool Tree::reap(const std::string& rel, int64_t now_unix_ms, int64_t grace_ms) const {
  auto reapable = [&](const LoadedFile& f) {
    return f.state == LoadedFile::State::expired &&
           f.file.expires_unix_ms <= now_unix_ms - grace_ms;
  };
  if (!reapable(load(rel, now_unix_ms))) return false;
  // Between that check and the unlink, the owner may renew the file: take it aside first, so
  // what is checked is what is deleted.
  const std::string path = absolute(rel);
  const std::string aside = temp_name(parent_of(rel), kReapTemp);
  if (::rename(path.c_str(), aside.c_str()) != 0) return false;  // another reader was faster
  const bool expired = reapable(load_path(aside, now_unix_ms));
  // Renewed meanwhile: put it back, unless a newer one is already in place (link never replaces).
  if (!expired) (void)::link(aside.c_str(), path.c_str());
  ::unlink(aside.c_str());
  if (expired) remove_empty_dirs(rel);
  return expired;
}

std::vector<std::string> Tree::subdirs(const std::string& rel_dir) const {
  std::vector<std::string> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(absolute(rel_dir), ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name[0] != '.' && it->is_directory(type_ec)) out.push_back(join(rel_dir, name));
  }
  return out;
}

std::vector<std::string> Tree::node_files(const std::string& rel_version_dir) const {
  std::vector<std::string> out;
  std::error_code ec;
  const auto now = std::filesystem::file_time_type::clock::now();
  for (std::filesystem::directory_iterator it(absolute(rel_version_dir), ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_node_file_name(name)) {
      out.push_back(join(rel_version_dir, name));
    } else if (starts_with(name, kWriteTemp) || starts_with(name, kReapTemp)) {
      std::error_code time_ec;
      const auto written = it->last_write_time(time_ec);
      if (!time_ec && now - written > std::chrono::nanoseconds(kStaleTempFileNs))
        std::filesystem::remove(it->path(), time_ec);
    }
  }
  return out;
}

}  // namespace micro::registry_file
