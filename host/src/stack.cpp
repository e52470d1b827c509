#include "micro/host/stack.hpp"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "micro/host/logging.hpp"

namespace micro::host {

namespace {

const char* type_name(uint32_t type) {
  switch (type) {
    case MICRO_OPTION_STRING: return "a string";
    case MICRO_OPTION_INT: return "an integer";
    case MICRO_OPTION_FLOAT: return "a number";
    case MICRO_OPTION_BOOL: return "a boolean";
    case MICRO_OPTION_STRING_LIST: return "an array of strings";
    case MICRO_OPTION_STRING_MAP: return "a table of strings";
    default: return "an unknown type";
  }
}

const char* node_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date or time";
  }
}

bool matches(const toml::node& node, uint32_t type) {
  switch (type) {
    case MICRO_OPTION_STRING: return node.is_string();
    case MICRO_OPTION_INT: return node.is_integer();
    case MICRO_OPTION_FLOAT: return node.is_floating_point() || node.is_integer();
    case MICRO_OPTION_BOOL: return node.is_boolean();
    case MICRO_OPTION_STRING_LIST: {
      const toml::array* a = node.as_array();
      return a != nullptr && std::all_of(a->begin(), a->end(), [](const toml::node& n) {
               return n.is_string();
             });
    }
    case MICRO_OPTION_STRING_MAP: {
      const toml::table* t = node.as_table();
      if (t == nullptr) return false;
      for (const auto& [k, v] : *t)
        if (!v.is_string()) return false;
      return true;
    }
    default: return false;
  }
}

int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

// Storage behind the micro_option_value_t array a factory receives.
struct OptionValues {
  std::deque<std::string> strings;  // a deque: growing it moves no string, so views stay valid
  std::vector<std::vector<micro_str_t>> lists;
  std::vector<std::vector<micro_kv_t>> maps;
  std::vector<micro_option_value_t> values;
  std::vector<const micro_option_value_t*> pointers;
};

micro_str_t keep(OptionValues& store, std::string s) {
  store.strings.push_back(std::move(s));
  return to_c(store.strings.back());
}

// Converts the plugin's options from TOML (or its declared defaults) into C values.
Error convert_options(const micro_plugin_t& plugin, const toml::table& table, OptionValues& out) {
  out.lists.reserve(plugin.option_count);
  out.maps.reserve(plugin.option_count);
  out.values.reserve(plugin.option_count);

  for (size_t i = 0; i < plugin.option_count; ++i) {
    const micro_option_spec_t spec = read_struct(plugin.options[i]);
    if (spec.name == nullptr) continue;
    toml::table parsed_default;
    const toml::node* node = table.get(spec.name);
    if (node == nullptr && spec.default_value != nullptr) {
      try {
        parsed_default = toml::parse(std::string("v = ") + spec.default_value);
      } catch (const std::exception& e) {
        return Error::internal(std::string("module ") + plugin.name + " declares default '" +
                               spec.default_value + "' for option " + spec.name +
                               " that is not TOML: " + e.what());
      }
      node = parsed_default.get("v");
    }
    if (node == nullptr) continue;
    if (!matches(*node, spec.type))
      return Error::internal(std::string("module ") + plugin.name + " declares default for " +
                             spec.name + " that is not " + type_name(spec.type));
    micro_option_value_t v{};
    v.struct_size = sizeof(micro_option_value_t);
    v.name = keep(out, spec.name);
    v.type = spec.type;
    switch (spec.type) {
      case MICRO_OPTION_STRING: v.string_value = keep(out, std::string(*node->value<std::string>())); break;
      case MICRO_OPTION_INT: v.int_value = *node->value<int64_t>(); break;
      case MICRO_OPTION_FLOAT: v.float_value = *node->value<double>(); break;
      case MICRO_OPTION_BOOL: v.bool_value = *node->value<bool>() ? 1 : 0; break;
      case MICRO_OPTION_STRING_LIST: {
        auto& list = out.lists.emplace_back();
        for (const auto& item : *node->as_array())
          list.push_back(keep(out, std::string(*item.value<std::string>())));
        v.list = list.data();
        v.list_count = list.size();
        break;
      }
      case MICRO_OPTION_STRING_MAP: {
        auto& map = out.maps.emplace_back();
        for (const auto& [key, value] : *node->as_table())
          map.push_back({keep(out, std::string(key.str())),
                         keep(out, std::string(*value.value<std::string>()))});
        v.map = {map.data(), map.size()};
        break;
      }
    }
    out.values.push_back(v);
  }
  for (const auto& v : out.values) out.pointers.push_back(&v);
  return {};
}

std::string plugin_list(const LoadedModule& module) {
  std::string out;
  for (const auto& p : module.plugins())
    out += (out.empty() ? "" : ", ") + std::string(p.name) + " (" +
           kind_name(static_cast<micro_kind_t>(p.kind)) + ")";
  return out;
}

}  // namespace

Instance::~Instance() {
  // The loader checked that destroy is set.
  if (self_ != nullptr) static_cast<const VtableHead*>(vtable_)->destroy(self_);
  self_ = nullptr;
  log_.reset();
  module_.reset();  // may unload the library: last, after the instance is gone
}

Result<std::unique_ptr<Instance>> Instance::create(std::shared_ptr<LoadedModule> module,
                                                   micro_kind_t kind, const ServiceInfo& service,
                                                   const toml::table& options,
                                                   const micro_dependencies_t& deps) {
  Result<std::unique_ptr<Instance>> out;
  const micro_plugin_t* plugin = module->find_plugin(kind);
  if (plugin == nullptr) {
    out.error = Error::bad_request("module " + module->name() + " provides no " +
                                   kind_name(kind) + " (it provides " + plugin_list(*module) +
                                   ")");
    return out;
  }
  OptionValues values;
  out.error = convert_options(*plugin, options, values);
  if (!out.error.ok()) return out;

  std::unique_ptr<Instance> instance(new Instance());
  instance->kind_ = kind;
  instance->plugin_name_ = plugin->name;
  instance->module_ = module;
  instance->log_ = std::make_unique<ModuleLogSink>(plugin->name);
  instance->vtable_ = plugin->vtable;

  MetadataView metadata(service.metadata);
  micro_service_info_t info{sizeof(micro_service_info_t), to_c(service.name),
                            to_c(service.version), to_c(service.address), metadata.c()};
  micro_create_args_t args{sizeof(micro_create_args_t), instance->log_->api(), &info,
                           values.pointers.data(), values.pointers.size(), &deps};
  void* self = nullptr;
  out.error = take_error(plugin->create(&args, &self));
  if (out.error.ok() && self == nullptr)
    out.error = Error::internal("factory succeeded but returned no instance");
  if (!out.error.ok()) {
    out.error = Error(out.error.code(),
                      "module " + module->name() + " (" + module->path().string() +
                          ") failed to create its " + kind_name(kind) + ": " +
                          out.error.detail(),
                      out.error.id().empty() ? plugin->name : out.error.id());
    return out;
  }
  instance->self_ = self;
  out.value = std::move(instance);
  return out;
}

std::vector<ConfigError> validate_options(const Config& config, const KindConfig& kind,
                                          const std::vector<const micro_plugin_t*>& plugins) {
  std::vector<ConfigError> errors;
  const std::string table = kind_name(kind.kind);
  std::map<std::string, micro_option_spec_t> specs;
  std::string accepted;
  for (const micro_plugin_t* plugin : plugins) {
    for (size_t i = 0; i < plugin->option_count; ++i) {
      const micro_option_spec_t spec = read_struct(plugin->options[i]);
      if (spec.name == nullptr) continue;
      if (specs.emplace(spec.name, spec).second)
        accepted += (accepted.empty() ? "" : ", ") + std::string(spec.name);
    }
  }
  std::string module_names;
  for (const auto& m : kind.modules) module_names += (module_names.empty() ? "" : ", ") + m;

  for (const auto& [key, node] : kind.options) {
    const std::string name(key.str());
    auto spec = specs.find(name);
    if (spec == specs.end()) {
      errors.push_back({config.file, line_of(node), table + "." + name,
                        "unknown option for " + module_names +
                            (accepted.empty() ? " (it takes no options)"
                                              : " (it accepts: " + accepted + ")")});
    } else if (!matches(node, spec->second.type)) {
      errors.push_back({config.file, line_of(node), table + "." + name,
                        std::string("expected ") + type_name(spec->second.type) + ", got " +
                            node_type_name(node)});
    }
  }
  for (const auto& [name, spec] : specs) {
    if (spec.required != 0 && !kind.options.contains(name))
      errors.push_back({config.file, kind.line, table + "." + name,
                        "missing required option of " + module_names +
                            (spec.help ? std::string(": ") + spec.help : std::string())});
  }
  std::stable_sort(errors.begin(), errors.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  return errors;
}

Stack::BuildResult Stack::build(const Config& config, const ModuleLoader& loader,
                                const std::vector<micro_kind_t>& wanted, bool create) {
  BuildResult result;
  std::map<std::string, std::shared_ptr<LoadedModule>> modules;  // by name, loaded once
  std::map<micro_kind_t, std::vector<std::shared_ptr<LoadedModule>>> chosen;
  std::vector<micro_kind_t> order;
  std::set<micro_kind_t> visiting, failed;
  std::vector<std::string> missing_defaults;  // reported together: usually "not built yet"
  // "file:line: <kind>.module: ...": a mistake in the module a kind's table names (the line is
  // the table's; a kind the file leaves at its default has none).
  auto module_error = [&](micro_kind_t kind, const KindConfig& kc, const std::string& message) {
    return ConfigError{config.file, kc.is_default ? 0 : kc.line,
                       std::string(kind_name(kind)) + ".module", message}
        .to_string();
  };

  // An optional dependency is used when the config names its module, or its default is there.
  auto available = [&](micro_kind_t kind) {
    auto kc = config.kinds.find(kind);
    if (kc == config.kinds.end() || kc->second.modules.empty()) return false;
    if (!kc->second.is_default) return true;
    for (const auto& name : kc->second.modules)
      if (loader.find(name).empty()) return false;
    return true;
  };
  // Depth-first over required_kinds: a kind is ordered after everything it needs.
  std::function<void(micro_kind_t, const std::string&)> resolve = [&](micro_kind_t kind,
                                                                      const std::string& why) {
    if (chosen.count(kind) || failed.count(kind)) return;
    if (visiting.count(kind)) {
      result.errors.push_back(std::string("dependency cycle: ") + kind_name(kind) +
                              " requires itself (through " + why + ")");
      failed.insert(kind);
      return;
    }
    auto kc = config.kinds.find(kind);
    if (kc == config.kinds.end() || kc->second.modules.empty()) {
      result.errors.push_back(std::string("no ") + kind_name(kind) + " module is configured" +
                              (why.empty() ? "" : " (" + why + " needs one)") + ": name one in [" +
                              kind_name(kind) + "] module = \"...\"");
      failed.insert(kind);
      return;
    }
    visiting.insert(kind);
    std::vector<std::shared_ptr<LoadedModule>> loaded;
    std::vector<const micro_plugin_t*> plugins;
    uint32_t required = 0, optional = 0;
    for (const auto& name : kc->second.modules) {
      auto& module = modules[name];
      if (!module) {
        LoadResult r = loader.load_by_name(name);
        if (!r.ok()) {
          if (kc->second.is_default && r.error.code() == MICRO_CODE_NOT_FOUND)
            missing_defaults.push_back(name + " (" + kind_name(kind) + ")");
          else
            result.errors.push_back(module_error(kind, kc->second, r.error.detail()));
          continue;
        }
        module = r.module;
      }
      const micro_plugin_t* plugin = module->find_plugin(kind);
      if (plugin == nullptr) {
        result.errors.push_back(module_error(kind, kc->second,
                                             name + " provides no " + kind_name(kind) +
                                                 " (it provides " + plugin_list(*module) + ")"));
        continue;
      }
      loaded.push_back(module);
      plugins.push_back(plugin);
      required |= plugin->required_kinds;
      optional |= plugin->optional_kinds;
    }
    if (loaded.size() != kc->second.modules.size()) {
      visiting.erase(kind);
      failed.insert(kind);
      return;
    }
    for (const auto& e : validate_options(config, kc->second, plugins))
      result.errors.push_back(e.to_string());
    for (micro_kind_t dep : all_kinds()) {
      const std::string why = std::string(plugins.front()->name) + " (" + kind_name(kind) + ")";
      if (required & MICRO_KIND_BIT(dep)) {
        resolve(dep, why);
      } else if ((optional & MICRO_KIND_BIT(dep)) && available(dep)) {
        resolve(dep, why);
      }
    }
    visiting.erase(kind);
    chosen[kind] = std::move(loaded);
    order.push_back(kind);
  };
  for (micro_kind_t kind : wanted) resolve(kind, "");
  if (!missing_defaults.empty()) {
    std::string names, searched;
    for (const auto& n : missing_defaults) names += (names.empty() ? "" : ", ") + n;
    for (const auto& p : loader.search_paths())
      searched += (searched.empty() ? "" : ", ") + p.string();
    result.errors.push_back("default modules not found: " + names + "; searched [" + searched +
                            "]. Build or install them, or name other modules in the config "
                            "(e.g. [registry] module = \"registry-memory\")");
  }
  if (!result.ok() || !create) return result;

  std::unique_ptr<Stack> stack(new Stack());
  stack->config_ = config;
  for (micro_kind_t kind : order) {
    const KindConfig& kc = config.kinds.at(kind);
    for (const auto& module : chosen[kind]) {
      stack->modules_.push_back(module);
      const micro_plugin_t* plugin = module->find_plugin(kind);
      // Hand over only what the plugin asked for.
      micro_dependencies_t deps{};
      deps.struct_size = sizeof(micro_dependencies_t);
      const uint32_t req = plugin->required_kinds | plugin->optional_kinds;
      std::vector<micro_codec_t> codecs;
      if (req & MICRO_KIND_BIT(MICRO_KIND_REGISTRY)) deps.registry = stack->registry();
      if (req & MICRO_KIND_BIT(MICRO_KIND_TRANSPORT)) deps.transport = stack->transport();
      if (req & MICRO_KIND_BIT(MICRO_KIND_SELECTOR)) deps.selector = stack->selector();
      if (req & MICRO_KIND_BIT(MICRO_KIND_BROKER)) deps.broker = stack->broker();
      if (req & MICRO_KIND_BIT(MICRO_KIND_CLIENT)) deps.client = stack->client();
      if (req & MICRO_KIND_BIT(MICRO_KIND_SERVER)) deps.server = stack->server();
      if (req & MICRO_KIND_BIT(MICRO_KIND_SERVICE)) deps.service = stack->service();
      if (req & MICRO_KIND_BIT(MICRO_KIND_CODEC)) codecs = stack->codecs();
      deps.codecs = codecs.data();
      deps.codec_count = codecs.size();

      auto created = Instance::create(module, kind, config.service, kc.options, deps);
      if (!created.ok()) {
        result.errors.push_back(std::string(kind_name(kind)) + ": " + created.error.detail());
        return result;  // `stack` destroys what was made, in reverse
      }
      host_logger()->debug("created {} ({}) from {}", plugin->name, kind_name(kind),
                           module->path().string());
      stack->instances_.push_back(std::move(created.value));
    }
  }
  result.stack = std::move(stack);
  return result;
}

Stack::~Stack() {
  while (!instances_.empty()) instances_.pop_back();  // reverse creation order
}

const Instance* Stack::find(micro_kind_t kind) const noexcept {
  for (const auto& i : instances_)
    if (i->kind() == kind) return i.get();
  return nullptr;
}

namespace {
template <class Handle>
Handle handle_of(const Stack& stack, micro_kind_t kind) {
  const Instance* i = stack.find(kind);
  return i == nullptr ? Handle{} : i->handle<Handle>();
}
}  // namespace

micro_registry_t Stack::registry() const noexcept {
  return handle_of<micro_registry_t>(*this, MICRO_KIND_REGISTRY);
}
micro_transport_t Stack::transport() const noexcept {
  return handle_of<micro_transport_t>(*this, MICRO_KIND_TRANSPORT);
}
micro_selector_t Stack::selector() const noexcept {
  return handle_of<micro_selector_t>(*this, MICRO_KIND_SELECTOR);
}
micro_broker_t Stack::broker() const noexcept {
  return handle_of<micro_broker_t>(*this, MICRO_KIND_BROKER);
}
micro_client_t Stack::client() const noexcept {
  return handle_of<micro_client_t>(*this, MICRO_KIND_CLIENT);
}
micro_server_t Stack::server() const noexcept {
  return handle_of<micro_server_t>(*this, MICRO_KIND_SERVER);
}
micro_service_instance_t Stack::service() const noexcept {
  return handle_of<micro_service_instance_t>(*this, MICRO_KIND_SERVICE);
}
std::vector<micro_codec_t> Stack::codecs() const {
  std::vector<micro_codec_t> out;
  for (const auto& i : instances_)
    if (i->kind() == MICRO_KIND_CODEC) out.push_back(i->handle<micro_codec_t>());
  return out;
}

}  // namespace micro::host
