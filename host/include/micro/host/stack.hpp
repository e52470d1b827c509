// The stack: one instance per configured kind, created in dependency order from loaded modules
// and destroyed in reverse, each holding its library loaded until it is gone.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/module.h"

namespace micro::host {

class ModuleLogSink;

// One object made by a plugin's factory. Destroying it calls the vtable's destroy, then lets go
// of the library (which unloads once nothing else holds it).
class Instance {
 public:
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  micro_kind_t kind() const noexcept { return kind_; }
  const std::string& plugin_name() const noexcept { return plugin_name_; }
  const std::shared_ptr<LoadedModule>& module() const noexcept { return module_; }
  // The C handle: {vtable, self}; the vtable is the plugin's own (check struct_size before use).
  const void* vtable() const noexcept { return vtable_; }
  void* self() const noexcept { return self_; }
  template <class Handle>
  Handle handle() const noexcept {
    return Handle{static_cast<decltype(Handle{}.vtable)>(vtable_), self_};
  }

  // Creates an instance of `module`'s plugin of `kind`. `options` must already be validated
  // (validate_options); `deps` holds the instances the plugin asked for.
  static Result<std::unique_ptr<Instance>> create(std::shared_ptr<LoadedModule> module,
                                                  micro_kind_t kind, const ServiceInfo& service,
                                                  const toml::table& options,
                                                  const micro_dependencies_t& deps);

 private:
  Instance() = default;
  micro_kind_t kind_{};
  std::string plugin_name_;
  std::shared_ptr<LoadedModule> module_;
  std::unique_ptr<ModuleLogSink> log_;
  const void* vtable_ = nullptr;
  void* self_ = nullptr;
};

// Checks a kind's options against the declared specs of its plugins (several for codecs): an
// unknown key (declared by none), a wrong type, a missing required option. Errors carry the
// config file and line.
std::vector<ConfigError> validate_options(const Config& config, const KindConfig& kind,
                                          const std::vector<const micro_plugin_t*>& plugins);

class Stack {
 public:
  struct BuildResult {
    std::unique_ptr<Stack> stack;
    std::vector<std::string> errors;  // one line each; empty on success
    bool ok() const { return errors.empty(); }
  };

  // Loads the modules for the `wanted` kinds and for every kind they require (transitively),
  // checks every option of every module, then creates the instances in dependency order.
  // Nothing is created unless every check passes; with `create` false nothing is created at all
  // (what `micro config check` does).
  static BuildResult build(const Config& config, const ModuleLoader& loader,
                           const std::vector<micro_kind_t>& wanted, bool create = true);

  ~Stack();  // destroys instances in reverse creation order

  // The instance of `kind`, or nullptr when it is not part of this stack.
  const Instance* find(micro_kind_t kind) const noexcept;
  // Every instance, in creation order (codecs may be several).
  const std::vector<std::unique_ptr<Instance>>& instances() const noexcept { return instances_; }
  const Config& config() const noexcept { return config_; }

  micro_registry_t registry() const noexcept;
  micro_transport_t transport() const noexcept;
  micro_selector_t selector() const noexcept;
  micro_broker_t broker() const noexcept;
  micro_client_t client() const noexcept;
  micro_server_t server() const noexcept;
  micro_service_instance_t service() const noexcept;
  std::vector<micro_codec_t> codecs() const;

 private:
  Stack() = default;
  Config config_;
  // Declared before instances_, so libraries unload only after every instance is gone: another
  // module's thread may still be returning through a destroyed instance's code.
  std::vector<std::shared_ptr<LoadedModule>> modules_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

}  // namespace micro::host
