// Reads the TOML configuration into a Config, collecting every mistake (file, line, dotted key and
// what to do) instead of stopping at the first. Module options are kept, with their source
// positions, for the stack to check against each plugin's declared specs.
#include "micro/host/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <system_error>
#include <utility>

namespace micro::host {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kLogLevels = {"trace", "debug",    "info", "warn",
                                             "error", "critical", "off"};

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// Tables that are not kinds, then the kinds in build order: what the top level may hold.
std::vector<std::string> known_tables() {
  std::vector<std::string> names = {"service", "modules", "log"};
  for (micro_kind_t kind : all_kinds())
    if (kind != MICRO_KIND_SERVICE) names.push_back(kind_name(kind));
  return names;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate a typo most likely meant: at most two edits away (one for short words).
std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates) {
  const size_t limit = word.size() <= 4 ? 1 : 2;
  std::optional<std::string> best;
  size_t best_distance = limit + 1;
  for (const auto& candidate : candidates) {
    const size_t d = edit_distance(word, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  return best;
}

// Same wording as the stack's option checks: "expected a string, got an integer".
const char* type_of(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date or time";
  }
}

int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

// A table's line: its own, or its key's when toml++ made it implicitly (`[registry.tls]` alone).
int line_of(const toml::key& key, const toml::node& node) {
  const int line = line_of(node);
  return line != 0 ? line : static_cast<int>(key.source().begin.line);
}

// One pass over a parsed document. Errors are collected; the Config is filled as far as it can be.
class Reader {
 public:
  Reader(const std::string& file, Config& config, std::vector<ConfigError>& errors)
      : file_(file), config_(config), errors_(errors) {}

  void read(toml::table& root) {
    const std::vector<std::string> tables = known_tables();
    bool saw_service = false;
    for (auto&& [key, node] : root) {
      const std::string name(key.str());
      const int line = line_of(key, node);
      const bool known = std::find(tables.begin(), tables.end(), name) != tables.end();
      toml::table* table = node.as_table();
      if (!known) {
        unknown_top_level(name, line, node.is_table());
        continue;
      }
      if (name == "service") saw_service = true;
      if (table == nullptr) {
        fail(line, name,
             std::string("expected a table, got ") + type_of(node) + "; write [" + name +
                 "] on its own line and put its keys below it");
        continue;
      }
      if (name == "service") {
        read_service(*table, line);
      } else if (name == "modules") {
        read_modules(*table);
      } else if (name == "log") {
        read_log(*table);
      } else {
        read_kind(*kind_from_name(name), *table, line);
      }
    }
    if (!saw_service)
      fail(0, "service",
           "missing table [service]: every config needs one, with name = \"...\" (the only "
           "required key)");
  }

 private:
  void fail(int line, std::string key, std::string message) {
    errors_.push_back({file_, line, std::move(key), std::move(message)});
  }

  void wrong_type(const toml::node& node, const std::string& key, const char* expected,
                  const std::string& hint = "") {
    fail(line_of(node), key, std::string("expected ") + expected + ", got " + type_of(node) + hint);
  }

  void unknown_top_level(const std::string& name, int line, bool is_table) {
    const std::vector<std::string> tables = known_tables();
    const auto guess = closest(name, tables);
    const std::string known = "(known tables: " + join(tables) + ")";
    if (is_table) {
      fail(line, name,
           "unknown table [" + name + "]" + (guess ? "; did you mean [" + *guess + "]? " : " ") +
               known);
    } else {
      // Keys before the first [table] header sit at the top level, outside every table.
      const std::map<std::string, std::string> home = {
          {"name", "service"},     {"version", "service"}, {"address", "service"},
          {"metadata", "service"}, {"path", "modules"},    {"level", "log"}};
      auto it = home.find(name);
      fail(line, name,
           it != home.end()
               ? "a key outside any table; move it below [" + it->second + "]"
               : "a key outside any table; keys belong in a table such as [service] " + known);
    }
  }

  // A string value, or nothing (with an error if it is there but is not a string).
  std::optional<std::string> string_at(const toml::table& table, std::string_view key,
                                       const std::string& dotted) {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    if (const auto* s = node->as_string()) return s->get();
    wrong_type(*node, dotted, "a string");
    return std::nullopt;
  }

  void read_service(toml::table& table, int line) {
    ServiceInfo& service = config_.service;
    if (const toml::node* name = table.get("name"); name == nullptr) {
      fail(line, "service.name",
           "missing: every service needs a name; add name = \"greeter\" (your service's name)");
    } else if (auto value = string_at(table, "name", "service.name")) {
      if (value->empty())
        fail(line_of(*name), "service.name",
             "is empty; give the service a name, e.g. name = \"greeter\"");
      service.name = *value;
    }
    if (auto version = string_at(table, "version", "service.version")) service.version = *version;
    if (auto address = string_at(table, "address", "service.address")) service.address = *address;
    if (const toml::node* metadata = table.get("metadata")) read_metadata(*metadata);

    KindConfig& kind = config_.kinds[MICRO_KIND_SERVICE];
    read_kind_table(MICRO_KIND_SERVICE, table, line, kind);
    for (const char* own : {"name", "version", "address", "metadata"}) kind.options.erase(own);
  }

  void read_metadata(const toml::node& node) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      wrong_type(node, "service.metadata", "a table of strings",
                 " (write metadata = { team = \"core\" })");
      return;
    }
    for (auto&& [key, value] : *table) {
      const std::string name(key.str());
      if (const auto* s = value.as_string())
        config_.service.metadata[name] = s->get();
      else
        wrong_type(value, "service.metadata." + name, "a string");
    }
  }

  void read_modules(const toml::table& table) {
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      if (name != "path") {
        unknown_key("modules", name, line_of(key, node), {"path"});
        continue;
      }
      const toml::array* paths = node.as_array();
      if (paths == nullptr) {
        wrong_type(
            node, "modules.path", "an array of strings",
            node.is_string() ? " (write path = [" + quoted(node.as_string()->get()) + "])" : "");
        continue;
      }
      const fs::path base = fs::path(file_).parent_path();
      for (size_t i = 0; i < paths->size(); ++i) {
        const toml::node& entry = *paths->get(i);
        const std::string dotted = "modules.path[" + std::to_string(i) + "]";
        const auto* s = entry.as_string();
        if (s == nullptr) {
          wrong_type(entry, dotted, "a string");
        } else if (s->get().empty()) {
          fail(line_of(entry), dotted, "is empty; remove it or name a directory");
        } else {
          config_.module_paths.push_back(resolve(base, s->get()));
        }
      }
    }
  }

  // Relative to the config file's directory, then made absolute so a later chdir cannot move it.
  static std::string resolve(const fs::path& base, const std::string& entry) {
    fs::path p(entry);
    if (p.is_relative()) p = base / p;
    std::error_code ec;
    fs::path absolute = fs::absolute(p, ec);
    fs::path normal = (ec ? p : absolute).lexically_normal();
    if (!normal.has_filename() && normal.has_relative_path()) normal = normal.parent_path();
    return normal.string();
  }

  void read_log(const toml::table& table) {
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      if (name != "level") {
        unknown_key("log", name, line_of(key, node), {"level"});
        continue;
      }
      const auto* level = node.as_string();
      if (level == nullptr) {
        wrong_type(node, "log.level", "a string");
      } else if (std::find(kLogLevels.begin(), kLogLevels.end(), level->get()) ==
                 kLogLevels.end()) {
        fail(line_of(node), "log.level",
             "unknown level " + quoted(level->get()) + "; use one of " + join(kLogLevels));
      } else {
        config_.log_level = level->get();
      }
    }
  }

  void unknown_key(const std::string& table, const std::string& name, int line,
                   const std::vector<std::string>& accepted) {
    const auto guess = closest(name, accepted);
    fail(line, table + "." + name,
         "unknown key in [" + table + "]" + (guess ? "; did you mean " + *guess + "?" : "") +
             " ([" + table + "] takes only: " + join(accepted) + ")");
  }

  void read_kind(micro_kind_t kind, toml::table& table, int line) {
    if (kind != MICRO_KIND_HANDLER) {
      read_kind_table(kind, table, line, config_.kinds[kind]);
      return;
    }
    // The handler has no default: it joins the stack only when its table names a module.
    KindConfig handler;
    const bool has_module_key = table.contains("module");
    read_kind_table(kind, table, line, handler);
    if (!handler.is_default) {
      config_.kinds[kind] = std::move(handler);
    } else if (!has_module_key) {
      fail(line, "handler.module",
           "missing: [handler] must name the handler module, e.g. module = "
           "\"handler-greeter\" (or remove [handler])");
    }
  }

  // Fills `kind` from its table: the module it names (defaults stay when it names none or names
  // one wrongly) and every other key as options. Moves the table's contents out: toml++ keeps
  // source positions on moves but drops them on copies.
  void read_kind_table(micro_kind_t kind_id, toml::table& table, int line, KindConfig& kind) {
    const std::string name = kind_name(kind_id);
    kind.kind = kind_id;
    kind.line = line;
    if (const toml::node* module = table.get("module")) {
      std::vector<std::string> modules = read_module(kind_id, *module, name + ".module");
      if (!modules.empty()) {
        kind.modules = std::move(modules);
        kind.is_default = false;
      }
    }
    kind.options = std::move(table);
    kind.options.erase("module");
  }

  // The module names in a kind's `module` value; empty (after reporting why) when unusable.
  std::vector<std::string> read_module(micro_kind_t kind, const toml::node& node,
                                       const std::string& dotted) {
    const std::string example = example_module(kind);
    if (const auto* s = node.as_string()) {
      if (s->get().empty()) {
        fail(line_of(node), dotted, "is empty; name a module, e.g. module = " + quoted(example));
        return {};
      }
      return {s->get()};
    }
    const toml::array* list = node.as_array();
    if (kind != MICRO_KIND_CODEC || list == nullptr) {
      wrong_type(node, dotted,
                 kind == MICRO_KIND_CODEC ? "a string or an array of strings" : "a string");
      return {};
    }
    if (list->empty()) {
      fail(line_of(node), dotted,
           "is empty; name at least one codec module, e.g. module = [\"codec-json\", "
           "\"codec-proto\"]");
      return {};
    }
    std::vector<std::string> modules;
    bool usable = true;
    for (size_t i = 0; i < list->size(); ++i) {
      const toml::node& entry = *list->get(i);
      const std::string item = dotted + "[" + std::to_string(i) + "]";
      const auto* s = entry.as_string();
      if (s == nullptr) {
        wrong_type(entry, item, "a string");
        usable = false;
      } else if (s->get().empty()) {
        fail(line_of(entry), item, "is empty; name a module, e.g. " + quoted(example));
        usable = false;
      } else if (std::find(modules.begin(), modules.end(), s->get()) != modules.end()) {
        fail(line_of(entry), item, s->get() + " is listed twice; remove one");
        usable = false;
      } else {
        modules.push_back(s->get());
      }
    }
    return usable ? modules : std::vector<std::string>{};
  }

  static std::string example_module(micro_kind_t kind) {
    const std::vector<std::string> defaults = default_modules(kind);
    return defaults.empty() ? "handler-greeter" : defaults.front();
  }

  const std::string& file_;
  Config& config_;
  std::vector<ConfigError>& errors_;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// The whole file, or the OS's reason it cannot be read.
bool read_file(const std::string& file, std::string& text, std::string& reason) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(file.c_str(), "rb"));
  if (!f) {
    reason = std::generic_category().message(errno);
    return false;
  }
  char buffer[8192];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, f.get())) > 0) text.append(buffer, n);
  if (std::ferror(f.get())) {
    reason = std::generic_category().message(errno);
    return false;
  }
  return true;
}

}  // namespace

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  return out + message;
}

const char* kind_name(micro_kind_t kind) noexcept {
  const char* name = micro_kind_name(static_cast<uint32_t>(kind));
  return name != nullptr ? name : "unknown";
}

std::optional<micro_kind_t> kind_from_name(std::string_view name) noexcept {
  for (micro_kind_t kind : all_kinds())
    if (name == kind_name(kind)) return kind;
  return std::nullopt;
}

const std::vector<micro_kind_t>& all_kinds() noexcept {
  // Each kind after every kind its first modules depend on.
  static const std::vector<micro_kind_t> kinds = {
      MICRO_KIND_REGISTRY, MICRO_KIND_TRANSPORT, MICRO_KIND_CODEC,
      MICRO_KIND_BROKER,   MICRO_KIND_SELECTOR,  MICRO_KIND_CLIENT,
      MICRO_KIND_SERVER,   MICRO_KIND_SERVICE,   MICRO_KIND_HANDLER};
  return kinds;
}

std::vector<std::string> default_modules(micro_kind_t kind) {
  switch (kind) {
    case MICRO_KIND_CODEC:
      return {"codec-json", "codec-proto"};
    case MICRO_KIND_TRANSPORT:
      return {"transport-http"};
    case MICRO_KIND_REGISTRY:
      return {"registry-mdns"};
    case MICRO_KIND_SELECTOR:
      return {"selector-default"};
    case MICRO_KIND_BROKER:
      return {"broker-http"};
    case MICRO_KIND_CLIENT:
      return {"client-rpc"};
    case MICRO_KIND_SERVER:
      return {"server-rpc"};
    case MICRO_KIND_SERVICE:
      return {"service-default"};
    case MICRO_KIND_HANDLER:
      break;
  }
  return {};
}

Config default_config(std::string service_name) {
  Config config;
  config.service.name = std::move(service_name);
  config.service.version = "latest";
  config.service.address = "127.0.0.1:0";
  for (micro_kind_t kind : all_kinds()) {
    std::vector<std::string> modules = default_modules(kind);
    if (modules.empty()) continue;  // the handler: none unless the file names one
    KindConfig& kc = config.kinds[kind];
    kc.kind = kind;
    kc.modules = std::move(modules);
  }
  return config;
}

ConfigResult parse_config(std::string_view text, const std::string& file) {
  ConfigResult result;
  result.config = default_config("");
  result.config.file = file;
  toml::table root;
  auto syntax_error = [&](const toml::parse_error& e) {
    result.errors.push_back({file, static_cast<int>(e.source().begin.line), "",
                             "TOML syntax error at column " +
                                 std::to_string(e.source().begin.column) + ": " +
                                 std::string(e.description())});
  };
#if TOML_EXCEPTIONS
  try {
    root = toml::parse(text, std::string_view(file));
  } catch (const toml::parse_error& e) {
    syntax_error(e);
    return result;
  }
#else
  toml::parse_result parsed = toml::parse(text, std::string_view(file));
  if (!parsed) {
    syntax_error(parsed.error());
    return result;
  }
  root = std::move(parsed).table();
#endif
  Reader(file, result.config, result.errors).read(root);
  // toml++ tables are ordered by key; report in the order a reader meets them in the file.
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  return result;
}

ConfigResult load_config(const std::string& file) {
  std::string text;
  std::string reason;
  if (!read_file(file, text, reason)) {
    ConfigResult result;
    result.config = default_config("");
    result.config.file = file;
    result.errors.push_back({file, 0, "", "cannot read the config file: " + reason});
    return result;
  }
  return parse_config(text, file);
}

}  // namespace micro::host
