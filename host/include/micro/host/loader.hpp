// Finds module files and loads them with Boost.DLL, refusing any that is not safe to call.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "micro/error.hpp"
#include "micro/module.h"

namespace boost::dll {
class shared_library;
}

namespace micro::host {

// Every kind's vtable starts with these two members, so the host can destroy any instance.
struct VtableHead {
  size_t struct_size;
  void (*destroy)(void* self);
};

// A module library, loaded and checked. Shared by every instance made from it: the library is
// unloaded only when the last holder (an instance, or the loader's caller) lets go.
class LoadedModule {
 public:
  ~LoadedModule();
  const std::filesystem::path& path() const noexcept { return path_; }
  const micro_module_descriptor_t& descriptor() const noexcept { return descriptor_; }
  std::string name() const;
  std::string version() const;
  std::string description() const;
  // The plugins, each read up to the size both sides know.
  const std::vector<micro_plugin_t>& plugins() const noexcept { return plugins_; }
  // The plugin of `kind`; nullptr if the module provides none.
  const micro_plugin_t* find_plugin(micro_kind_t kind) const noexcept;

 private:
  friend class ModuleLoader;
  LoadedModule() = default;
  std::filesystem::path path_;
  std::unique_ptr<boost::dll::shared_library> library_;
  micro_module_descriptor_t descriptor_{};
  std::vector<micro_plugin_t> plugins_;
};

struct LoadResult {
  std::shared_ptr<LoadedModule> module;
  Error error;  // 400-class: the file is not a usable module; the detail says why and what to do
  bool ok() const { return error.ok(); }
};

class ModuleLoader {
 public:
  // Search order: `config_paths` (from [modules] path), then MICRO_MODULE_PATH (':'-separated),
  // then the modules folder beside the running program (build tree and install tree).
  explicit ModuleLoader(std::vector<std::string> config_paths = {});

  const std::vector<std::filesystem::path>& search_paths() const noexcept { return paths_; }

  // The file for module `name` (name + ".so"), or an empty path.
  std::filesystem::path find(const std::string& name) const;
  // Every module file in the search paths (first of each name wins).
  std::vector<std::filesystem::path> find_all() const;

  // Loads and checks a file: refuses a world-writable file or folder, a missing entry symbol, an
  // ABI major other than the host's, or a malformed descriptor, before calling anything but the
  // entry symbol.
  LoadResult load(const std::filesystem::path& file) const;
  // find + load, with an error naming the search paths when nothing is found.
  LoadResult load_by_name(const std::string& name) const;

 private:
  std::vector<std::filesystem::path> paths_;
};

// "1.0" for a major/minor pair.
std::string abi_version_string(uint32_t major, uint32_t minor);

}  // namespace micro::host
