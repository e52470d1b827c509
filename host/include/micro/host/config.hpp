// The TOML configuration: parsed and shape-checked here, before any module is loaded. Module
// options are checked against each plugin's declared specs by the stack (stack.hpp), still before
// anything is created.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "micro/abi.h"
#include "micro/plugin.hpp"

namespace micro::host {

// One mistake in a config file, printed as "file:line: key: what is wrong".
struct ConfigError {
  std::string file;
  int line = 0;  // 0 when unknown
  std::string key;  // dotted: "registry.ttl_ms"
  std::string message;
  std::string to_string() const;
};

// The module named for one kind, and the rest of that kind's table (its options).
struct KindConfig {
  micro_kind_t kind{};
  std::vector<std::string> modules;  // one, except for codecs
  bool is_default = true;            // no table (or no `module` key) in the file
  toml::table options;               // every key but `module`, with source positions
  int line = 0;                      // where the table starts; 0 for defaults
};

struct Config {
  std::string file = "<defaults>";  // the file it came from
  ServiceInfo service;              // [service]; version "latest", address "127.0.0.1:0"
  std::vector<std::string> module_paths;  // [modules] path, relative ones resolved against the file
  std::map<micro_kind_t, KindConfig> kinds;  // every kind, defaults filled in
  std::string log_level = "info";           // [log] level
  bool has_handler() const { return kinds.count(MICRO_KIND_HANDLER) != 0; }
};

// The table name of each kind ("registry", ...), and back.
const char* kind_name(micro_kind_t kind) noexcept;
std::optional<micro_kind_t> kind_from_name(std::string_view name) noexcept;
// The eight kinds plus handler, in the order a stack is built.
const std::vector<micro_kind_t>& all_kinds() noexcept;
// The module a kind uses when the config names none (codecs: both JSON and protobuf).
std::vector<std::string> default_modules(micro_kind_t kind);

// The zero-config defaults, for the service `name`.
Config default_config(std::string service_name = "micro");

struct ConfigResult {
  Config config;
  std::vector<ConfigError> errors;  // empty: the config is usable
  bool ok() const { return errors.empty(); }
};

// Parses TOML text; `file` names it in errors and resolves relative module paths.
ConfigResult parse_config(std::string_view text, const std::string& file);
// Reads and parses a file (errors name the file when it is missing or unreadable).
ConfigResult load_config(const std::string& file);

}  // namespace micro::host
