#include "micro/host/loader.hpp"

#define BOOST_DLL_USE_STD_FS
#include <sys/stat.h>

#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#if defined(__linux__)
#include <link.h>  // ElfW: the ELF types of this process's word size
#endif

#include "micro/host/config.hpp"

namespace micro::host {

namespace fs = std::filesystem;

namespace {

#if defined(_WIN32)
constexpr const char* kModuleSuffix = ".dll";
#else
constexpr const char* kModuleSuffix = ".so";
#endif

// The members every ABI 1.x struct has had since 1.0: a reader needs at least these.
constexpr size_t kMinDescriptorSize =
    offsetof(micro_module_descriptor_t, plugin_count) + sizeof(size_t);
constexpr size_t kMinPluginSize = offsetof(micro_plugin_t, vtable) + sizeof(void*);

Error refuse(const fs::path& file, const std::string& why, const std::string& what_to_do) {
  return Error::bad_request("refusing module " + file.string() + ": " + why + "; " + what_to_do)
      .with_id("micro.host");
}

// A file or folder anyone may write to lets anyone run code in this process.
std::string world_writable(const fs::path& file) {
  for (const fs::path& p : {file, file.parent_path().empty() ? fs::path(".") : file.parent_path()}) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && (st.st_mode & S_IWOTH) != 0) return p.string();
  }
  return {};
}

#if defined(__linux__)
// dlopen maps a library's segments straight from its file, so a segment that runs past the end of
// a truncated file faults (SIGBUS) inside dlopen, killing the process. Checks the ELF headers
// first and returns why the file cannot be a complete library of this process's kind, or "".
std::string elf_problem(const fs::path& file) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(file, ec);
  if (ec) return "its size cannot be read (" + ec.message() + ")";
  std::ifstream in(file, std::ios::binary);
  ElfW(Ehdr) header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof header) ||
      std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0)
    return "it is not a shared library (no ELF header)";
  const unsigned char own_class = sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32;
  if (header.e_ident[EI_CLASS] != own_class)
    return "it is built for another word size (32- or 64-bit) than this host";
  if (header.e_type != ET_DYN) return "it is an ELF file but not a shared library";
  const std::string truncated = "it is truncated or corrupt (" + std::to_string(size) + " bytes; ";
  if (header.e_phentsize != sizeof(ElfW(Phdr)) || header.e_phnum == 0 ||
      header.e_phoff > size || (size - header.e_phoff) / sizeof(ElfW(Phdr)) < header.e_phnum)
    return truncated + "its program headers lie outside the file)";
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    ElfW(Phdr) segment{};
    if (!in.read(reinterpret_cast<char*>(&segment), sizeof segment))
      return truncated + "its program headers cannot be read)";
    if (segment.p_type != PT_LOAD && segment.p_type != PT_DYNAMIC) continue;
    if (segment.p_offset > size || size - segment.p_offset < segment.p_filesz)
      return truncated + "segment " + std::to_string(i) + " ends at byte " +
             std::to_string(segment.p_offset + segment.p_filesz) + ")";
  }
  return {};
}
#else
std::string elf_problem(const fs::path&) { return {}; }
#endif

std::string safe(const char* s) { return s == nullptr ? std::string() : std::string(s); }

}  // namespace

std::string abi_version_string(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

LoadedModule::~LoadedModule() {
  plugins_.clear();
  library_.reset();  // unloads, now that nothing made by it is left
}

std::string LoadedModule::name() const { return safe(descriptor_.name); }
std::string LoadedModule::version() const { return safe(descriptor_.version); }
std::string LoadedModule::description() const { return safe(descriptor_.description); }

const micro_plugin_t* LoadedModule::find_plugin(micro_kind_t kind) const noexcept {
  for (const auto& p : plugins_)
    if (p.kind == static_cast<uint32_t>(kind)) return &p;
  return nullptr;
}

ModuleLoader::ModuleLoader(std::vector<std::string> config_paths) {
  for (auto& p : config_paths) paths_.emplace_back(std::move(p));
  if (const char* env = std::getenv("MICRO_MODULE_PATH")) {
    std::stringstream list(env);
    std::string entry;
    while (std::getline(list, entry, ':'))
      if (!entry.empty()) paths_.emplace_back(entry);
  }
  // Beside the running program (<prefix>/bin/micro -> <prefix>/lib/micro/modules: the build tree
  // and the install tree share this layout), then the configured install directory.
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path prefix = exe.parent_path().parent_path();
    paths_.push_back(prefix / "lib" / "micro" / "modules");
  }
#ifdef MICRO_INSTALL_MODULE_DIR
  paths_.emplace_back(MICRO_INSTALL_MODULE_DIR);
#endif
  // Drop duplicates, keeping the first (highest-priority) occurrence.
  std::vector<fs::path> unique;
  std::set<std::string> seen;
  for (const auto& p : paths_) {
    const std::string key = fs::weakly_canonical(p, ec).string();
    if (seen.insert(ec ? p.string() : key).second) unique.push_back(p);
  }
  paths_ = std::move(unique);
}

fs::path ModuleLoader::find(const std::string& name) const {
  for (const auto& dir : paths_) {
    std::error_code ec;
    const fs::path candidate = dir / (name + kModuleSuffix);
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return {};
}

std::vector<fs::path> ModuleLoader::find_all() const {
  std::vector<fs::path> out;
  std::set<std::string> names;
  for (const auto& dir : paths_) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> here;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == kModuleSuffix && entry.is_regular_file(ec))
        here.push_back(entry.path());
    std::sort(here.begin(), here.end());
    for (const auto& p : here)
      if (names.insert(p.stem().string()).second) out.push_back(p);
  }
  return out;
}

LoadResult ModuleLoader::load_by_name(const std::string& name) const {
  const fs::path file = find(name);
  if (!file.empty()) return load(file);
  std::string searched;
  for (const auto& p : paths_) searched += (searched.empty() ? "" : ", ") + p.string();
  return {nullptr, Error::not_found("no module named '" + name + "' (" + name + kModuleSuffix +
                                    ") in the search path [" + searched +
                                    "]; build or install it, or add its folder to [modules] path "
                                    "or MICRO_MODULE_PATH")
                       .with_id("micro.host")};
}

LoadResult ModuleLoader::load(const fs::path& file) const {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    return {nullptr, refuse(file, "no such file", "check the path")};
  if (const std::string where = world_writable(file); !where.empty())
    return {nullptr, refuse(file, where + " is world-writable, so anyone could replace the code",
                            "run chmod o-w on it")};
  if (const std::string why = elf_problem(file); !why.empty())
    return {nullptr, refuse(file, why, "rebuild or reinstall it, or remove it from the module path")};

  auto library = std::make_unique<boost::dll::shared_library>();
  try {
    library->load(file, boost::dll::load_mode::rtld_local | boost::dll::load_mode::rtld_now);
  } catch (const std::exception& e) {
    return {nullptr, refuse(file, std::string("it is not a loadable library (") + e.what() + ")",
                            "rebuild it, or remove it from the module path")};
  }
  if (!library->has(MICRO_MODULE_ENTRY_SYMBOL))
    return {nullptr, refuse(file, "it exports no '" MICRO_MODULE_ENTRY_SYMBOL "' symbol, so it is "
                                  "not a micro module",
                            "build it with MICRO_MODULE(...) and micro_add_module(), or remove it "
                            "from the module path")};

  // The entry symbol is the only call made before the version check.
  auto entry = library->get<const micro_module_descriptor_t*()>(MICRO_MODULE_ENTRY_SYMBOL);
  const micro_module_descriptor_t* d = entry();
  const std::string host_abi = abi_version_string(MICRO_ABI_VERSION_MAJOR, MICRO_ABI_VERSION_MINOR);
  if (d == nullptr)
    return {nullptr, refuse(file, "its entry point returned no descriptor", "rebuild the module")};
  if (d->abi_major != MICRO_ABI_VERSION_MAJOR)
    return {nullptr,
            refuse(file,
                   "it was built for micro ABI " + abi_version_string(d->abi_major, d->abi_minor) +
                       " but this host speaks ABI " + host_abi + " (the major must match)",
                   "rebuild the module against the micro SDK " +
                       std::to_string(MICRO_ABI_VERSION_MAJOR) + ".x, or use a host of ABI " +
                       std::to_string(d->abi_major) + ".x")};
  if (d->struct_size < kMinDescriptorSize)
    return {nullptr, refuse(file, "its descriptor is " + std::to_string(d->struct_size) +
                                      " bytes, smaller than any ABI " + host_abi + " descriptor",
                            "rebuild the module")};

  auto module = std::shared_ptr<LoadedModule>(new LoadedModule());
  module->path_ = file;
  module->descriptor_ = read_struct(d);
  const auto& desc = module->descriptor_;
  if (desc.name == nullptr || *desc.name == '\0')
    return {nullptr, refuse(file, "its descriptor has no name", "rebuild the module")};
  if (file.stem().string() != desc.name)
    return {nullptr, refuse(file, std::string("it calls itself '") + desc.name +
                                      "' but the file is named " + file.filename().string(),
                            std::string("rename the file to ") + desc.name + kModuleSuffix)};
  if (desc.plugin_count == 0 || desc.plugins == nullptr)
    return {nullptr, refuse(file, "it provides no plugins", "rebuild the module")};
  if (desc.plugin_count > 64)
    return {nullptr, refuse(file, "its descriptor claims " + std::to_string(desc.plugin_count) +
                                      " plugins",
                            "rebuild the module")};
  for (size_t i = 0; i < desc.plugin_count; ++i) {
    const micro_plugin_t* p = desc.plugins[i];
    const std::string where = "plugin #" + std::to_string(i);
    if (p == nullptr || p->struct_size < kMinPluginSize)
      return {nullptr, refuse(file, where + " is missing or too small", "rebuild the module")};
    micro_plugin_t plugin = read_struct(p);
    const char* kind = micro_kind_name(plugin.kind);
    if (kind == nullptr)
      return {nullptr, refuse(file, where + " has unknown kind " + std::to_string(plugin.kind),
                              "rebuild it against this SDK")};
    if (plugin.name == nullptr || plugin.create == nullptr || plugin.vtable == nullptr)
      return {nullptr, refuse(file, where + " (" + kind + ") lacks a name, factory or vtable",
                              "rebuild the module")};
    const auto* head = static_cast<const VtableHead*>(plugin.vtable);
    if (head->struct_size < sizeof(VtableHead) || head->destroy == nullptr)
      return {nullptr, refuse(file, std::string("the ") + kind + " vtable of " + plugin.name +
                                        " lacks destroy",
                              "rebuild the module")};
    if (plugin.option_count > 0 && plugin.options == nullptr)
      return {nullptr, refuse(file, where + " declares options but gives none", "rebuild it")};
    module->plugins_.push_back(plugin);
  }
  module->library_ = std::move(library);
  return {module, Error{}};
}

}  // namespace micro::host
