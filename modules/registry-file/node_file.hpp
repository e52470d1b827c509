// One node file: a node of one service version, as registry-file keeps it on disk, and its TOML
// text. The only place the module touches toml++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "micro/types.hpp"

namespace micro::registry_file {

// The contents of <path>/<service>/<version>/<node>.toml.
struct NodeFile {
  Service service;              // name, version, metadata, endpoints and exactly one node
  int64_t expires_unix_ms = 0;  // wall-clock Unix ms; 0: never expires

  bool expired(int64_t now_unix_ms) const {
    return expires_unix_ms != 0 && expires_unix_ms <= now_unix_ms;
  }
  // Same registration, ignoring when it expires (a TTL refresh is not a change).
  bool same_registration(const NodeFile& other) const { return service == other.service; }
};

// A bigger file is not a node file: it is skipped unread.
inline constexpr size_t kMaxNodeFileBytes = size_t{1} << 20;

// The TOML text of `file`: pure ASCII (other characters are escaped). Fails with 400 when the
// service cannot be stored faithfully (e.g. a string that is not valid UTF-8).
Result<std::string> encode_node_file(const NodeFile& file);

// Reads a node file's text; on failure returns nothing and says why in `why`.
std::optional<NodeFile> decode_node_file(std::string_view text, std::string* why);

}  // namespace micro::registry_file
