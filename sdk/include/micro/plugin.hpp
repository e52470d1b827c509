// The module author's side of the boundary: what a factory receives (CreateContext), how a
// plugin class becomes a micro_plugin_t (micro::plugin<T>), and MICRO_MODULE, the one line that
// exports the entry symbol.
//
// A plugin class derives from its kind's base (micro::RegistryPlugin, ...), has a constructor
// taking `const micro::CreateContext&`, and may declare
//   static std::vector<micro::OptionSpec> options();   // the TOML keys it accepts
//   static constexpr uint32_t required_kinds = MICRO_KIND_BIT(MICRO_KIND_REGISTRY) | ...;
//   static constexpr uint32_t optional_kinds = MICRO_KIND_BIT(MICRO_KIND_BROKER);  // if present
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "micro/callback.hpp"
#include "micro/log.hpp"
#include "micro/module.h"
#include "micro/types.hpp"

namespace micro {

// One option a plugin accepts (see micro_option_spec_t).
struct OptionSpec {
  std::string name;
  micro_option_type_t type;
  std::string help;
  std::string default_value;  // TOML value text; empty = no default
  bool required = false;
};

// The validated options a factory receives, copied out of the C arrays.
class Options {
 public:
  Options() = default;
  Options(const micro_option_value_t* const* values, size_t count) {
    for (size_t i = 0; i < count && values != nullptr; ++i) {
      if (values[i] == nullptr) continue;
      const micro_option_value_t v = read_struct(values[i]);
      Value value;
      value.type = static_cast<micro_option_type_t>(v.type);
      value.string_value = std::string(to_view(v.string_value));
      value.int_value = v.int_value;
      value.float_value = v.float_value;
      value.bool_value = v.bool_value != 0;
      for (size_t j = 0; j < v.list_count && v.list != nullptr; ++j)
        value.list.emplace_back(to_view(v.list[j]));
      value.map = from_c(v.map);
      values_.insert_or_assign(std::string(to_view(v.name)), std::move(value));
    }
  }

  bool has(std::string_view name) const { return values_.count(std::string(name)) != 0; }
  std::string get_string(std::string_view name, std::string fallback = {}) const {
    const Value* v = find(name, MICRO_OPTION_STRING);
    return v ? v->string_value : fallback;
  }
  int64_t get_int(std::string_view name, int64_t fallback = 0) const {
    const Value* v = find(name, MICRO_OPTION_INT);
    return v ? v->int_value : fallback;
  }
  double get_float(std::string_view name, double fallback = 0) const {
    const Value* v = find(name, MICRO_OPTION_FLOAT);
    return v ? v->float_value : fallback;
  }
  bool get_bool(std::string_view name, bool fallback = false) const {
    const Value* v = find(name, MICRO_OPTION_BOOL);
    return v ? v->bool_value : fallback;
  }
  std::vector<std::string> get_list(std::string_view name) const {
    const Value* v = find(name, MICRO_OPTION_STRING_LIST);
    return v ? v->list : std::vector<std::string>{};
  }
  Metadata get_map(std::string_view name) const {
    const Value* v = find(name, MICRO_OPTION_STRING_MAP);
    return v ? v->map : Metadata{};
  }

 private:
  struct Value {
    micro_option_type_t type{};
    std::string string_value;
    int64_t int_value = 0;
    double float_value = 0;
    bool bool_value = false;
    std::vector<std::string> list;
    Metadata map;
  };
  const Value* find(std::string_view name, micro_option_type_t type) const {
    auto it = values_.find(std::string(name));
    return it != values_.end() && it->second.type == type ? &it->second : nullptr;
  }
  std::map<std::string, Value> values_;
};

// The [service] table the stack is assembled for.
struct ServiceInfo {
  std::string name;
  std::string version;
  std::string address;
  Metadata metadata;
};

// What a plugin's constructor receives. Copies everything it can, so the plugin may keep it.
class CreateContext {
 public:
  explicit CreateContext(const micro_create_args_t* raw) {
    const micro_create_args_t args = read_struct(raw);
    host_ = args.host;
    logger_ = Logger(args.host);
    options_ = Options(args.options, args.option_count);
    const micro_service_info_t s = read_struct(args.service);
    service_ = {std::string(to_view(s.name)), std::string(to_view(s.version)),
                std::string(to_view(s.address)), from_c(s.metadata)};
    deps_ = read_struct(args.deps);
    if (deps_.codecs != nullptr) codecs_.assign(deps_.codecs, deps_.codecs + deps_.codec_count);
    deps_.codecs = codecs_.data();
  }
  CreateContext(const CreateContext&) = delete;
  CreateContext& operator=(const CreateContext&) = delete;

  const Logger& logger() const noexcept { return logger_; }
  const Options& options() const noexcept { return options_; }
  const ServiceInfo& service() const noexcept { return service_; }
  // The instances this plugin asked for; wrap them with micro::Registry etc.
  const micro_dependencies_t& deps() const noexcept { return deps_; }
  const micro_host_api_t* host() const noexcept { return host_; }

 private:
  const micro_host_api_t* host_ = nullptr;
  Logger logger_;
  Options options_;
  ServiceInfo service_;
  micro_dependencies_t deps_{};
  std::vector<micro_codec_t> codecs_;
};

// Shared by every kind's base class.
class PluginBase {
 public:
  virtual ~PluginBase() = default;
  static std::vector<OptionSpec> options() { return {}; }
  static constexpr uint32_t required_kinds = 0;
  static constexpr uint32_t optional_kinds = 0;
};

namespace detail {

// Static storage behind micro::plugin<T>(): the C plugin struct and the option specs it points to.
template <class T>
struct PluginStorage {
  using Base = typename T::KindBase;

  PluginStorage(const char* name, const char* description) : specs(T::options()) {
    for (const auto& s : specs) {
      c_specs.push_back({sizeof(micro_option_spec_t), s.name.c_str(),
                         static_cast<uint32_t>(s.type), s.required ? 1u : 0u,
                         s.default_value.empty() ? nullptr : s.default_value.c_str(),
                         s.help.c_str()});
    }
    for (const auto& s : c_specs) spec_ptrs.push_back(&s);
    plugin = {sizeof(micro_plugin_t), static_cast<uint32_t>(Base::kind), name, description,
              T::required_kinds, spec_ptrs.data(), spec_ptrs.size(), &create,
              Base::c_vtable(), T::optional_kinds};
  }

  static micro_error_t* create(const micro_create_args_t* args, void** out_self) noexcept {
    if (out_self == nullptr) return Error::bad_request("create: out_self is NULL").to_owned_c();
    std::unique_ptr<T> instance;
    Error error = guarded([&] {
      CreateContext context(args);
      instance = std::make_unique<T>(context);
    });
    if (!error.ok()) return error.to_owned_c();
    Base* base = instance.release();
    *out_self = base;  // the kind's adapter casts self back to Base*
    return nullptr;
  }

  std::vector<OptionSpec> specs;
  std::vector<micro_option_spec_t> c_specs;
  std::vector<const micro_option_spec_t*> spec_ptrs;
  micro_plugin_t plugin{};
};

}  // namespace detail

// The plugin descriptor for class T, built once and kept for the library's lifetime.
template <class T>
const micro_plugin_t* plugin(const char* name, const char* description) {
  static const detail::PluginStorage<T> storage(name, description);
  return &storage.plugin;
}

}  // namespace micro

// Exports the module's one entry symbol. Usage, at namespace scope in one .cpp of the module:
//   MICRO_MODULE("registry-memory", "1.0.0", "In-process registry",
//                micro::plugin<MemoryRegistry>("registry-memory", "In-process registry"));
// NAME must match the library file's name (registry-memory.so).
#define MICRO_MODULE(NAME, VERSION, DESCRIPTION, ...)                                          \
  extern "C" MICRO_EXPORT const micro_module_descriptor_t* micro_module_entry(void) noexcept { \
    try {                                                                                      \
      static const micro_plugin_t* const micro_plugins_[] = {__VA_ARGS__};                     \
      static const micro_module_descriptor_t micro_descriptor_ = {                             \
          MICRO_ABI_VERSION_MAJOR, MICRO_ABI_VERSION_MINOR, sizeof(micro_module_descriptor_t), \
          NAME,                    VERSION,                 DESCRIPTION,                       \
          micro_plugins_,          sizeof(micro_plugins_) / sizeof(micro_plugins_[0])};        \
      return &micro_descriptor_;                                                               \
    } catch (...) {                                                                            \
      return nullptr;                                                                          \
    }                                                                                          \
  }
