// The loader against modules that break the rules: each is refused with a message that names the
// file, says what is wrong and what to do, and the process lives on. Also: a module one minor
// older (a vtable one member shorter) and a module from another compiler and standard library
// (clang++ with libc++) load and work.
#include "micro/host/loader.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "micro/host/stack.hpp"
#include "micro/registry.hpp"
#include "micro/testing/registry_conformance.hpp"

namespace {

namespace fs = std::filesystem;
using micro::host::ModuleLoader;

std::string env_dir(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}
// The test-only modules' folder: $MICRO_TEST_FIXTURE_DIR, else the one this build made.
std::string fixture_dir_name() {
  const std::string dir = env_dir("MICRO_TEST_FIXTURE_DIR");
  return dir.empty() ? MICRO_TEST_FIXTURE_DIR_DEFAULT : dir;
}
fs::path fixture_dir() { return fixture_dir_name(); }
fs::path module_dir() { return env_dir("MICRO_TEST_MODULE_DIR"); }

// A private (0700) folder of its own, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "micro-abi-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  // A copy of the built registry-memory module, named `name`.
  fs::path copy_of_registry_memory(const std::string& name) const {
    const fs::path to = path_ / name;
    fs::copy_file(module_dir() / "registry-memory.so", to);
    return to;
  }

 private:
  fs::path path_;
};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Every refusal is a 400 from the host naming the file.
void expect_refused(const micro::host::LoadResult& result, const fs::path& file) {
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.module, nullptr);
  EXPECT_EQ(result.error.code(), 400) << result.error.to_string();
  EXPECT_EQ(result.error.id(), "micro.host");
  EXPECT_TRUE(contains(result.error.detail(), "refusing module " + file.string()))
      << result.error.detail();
}

std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[512];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

TEST(Loader, RefusesAModuleOfAnotherAbiMajorBeforeCallingIt) {
  // Every function of that module aborts: reaching this test's end proves none was called.
  const fs::path file = fixture_dir() / "abi-major-mismatch.so";
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  const std::string& detail = result.error.detail();
  const std::string module_abi = std::to_string(MICRO_ABI_VERSION_MAJOR + 1) + ".0";
  const std::string host_abi =
      micro::host::abi_version_string(MICRO_ABI_VERSION_MAJOR, MICRO_ABI_VERSION_MINOR);
  EXPECT_TRUE(contains(detail, "built for micro ABI " + module_abi)) << detail;
  EXPECT_TRUE(contains(detail, "this host speaks ABI " + host_abi)) << detail;
  EXPECT_TRUE(contains(detail, "the major must match")) << detail;
  EXPECT_TRUE(contains(detail, "rebuild the module against the micro SDK " +
                                   std::to_string(MICRO_ABI_VERSION_MAJOR) + ".x"))
      << detail;
  EXPECT_TRUE(contains(
      detail, "or use a host of ABI " + std::to_string(MICRO_ABI_VERSION_MAJOR + 1) + ".x"))
      << detail;
}

TEST(Loader, RefusesAPluginOfAKindThisHostDoesNotKnow) {
  const fs::path file = fixture_dir() / "unknown-kind.so";
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  EXPECT_TRUE(contains(result.error.detail(), "plugin #0 has unknown kind 42"))
      << result.error.detail();
}

TEST(Loader, RefusesALibraryThatExportsNoEntrySymbol) {
  const fs::path file = fixture_dir() / "no-entry.so";
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  const std::string& detail = result.error.detail();
  EXPECT_TRUE(contains(detail, "exports no 'micro_module_entry'")) << detail;
  EXPECT_TRUE(contains(detail, "not a micro module")) << detail;
  EXPECT_TRUE(contains(detail, "build it with MICRO_MODULE(...) and micro_add_module()")) << detail;
}

TEST(Loader, TurnsAThrowingFactoryIntoA500NamingTheCauseAndTheModule) {
  const fs::path file = fixture_dir() / "factory-throws.so";
  const auto loaded = ModuleLoader().load(file);
  ASSERT_TRUE(loaded.ok()) << loaded.error.to_string();
  EXPECT_EQ(loaded.module->name(), "factory-throws");

  micro_dependencies_t deps{};
  deps.struct_size = sizeof deps;
  for (int attempt = 0; attempt < 2; ++attempt) {  // the process and the module live on
    auto created =
        micro::host::Instance::create(loaded.module, MICRO_KIND_REGISTRY, {}, toml::table{}, deps);
    EXPECT_FALSE(created.ok());
    EXPECT_EQ(created.value, nullptr);
    EXPECT_EQ(created.error.code(), 500) << created.error.to_string();
    const std::string& detail = created.error.detail();
    EXPECT_TRUE(contains(detail, "boom")) << detail;
    EXPECT_TRUE(contains(detail, "module factory-throws")) << detail;
    EXPECT_TRUE(contains(detail, file.string())) << detail;
    EXPECT_TRUE(contains(detail, "failed to create its registry")) << detail;
  }
}

TEST(Loader, LoadsAModuleWhoseVtableIsOneMemberShorterAndCallsOnlyWhatItHas) {
  const fs::path file = fixture_dir() / "short-vtable.so";
  const auto loaded = ModuleLoader().load(file);
  ASSERT_TRUE(loaded.ok()) << loaded.error.to_string();
  const micro_plugin_t* plugin = loaded.module->find_plugin(MICRO_KIND_REGISTRY);
  ASSERT_NE(plugin, nullptr);
  EXPECT_EQ(static_cast<const micro_registry_vtable_t*>(plugin->vtable)->struct_size,
            offsetof(micro_registry_vtable_t, unwatch));

  micro_dependencies_t deps{};
  deps.struct_size = sizeof deps;
  auto created =
      micro::host::Instance::create(loaded.module, MICRO_KIND_REGISTRY, {}, toml::table{}, deps);
  ASSERT_TRUE(created.ok()) << created.error.to_string();
  const micro::Registry registry(created.value->handle<micro_registry_t>());

  micro::Service service;
  service.name = "greeter";
  service.version = "1.0.0";
  service.nodes = {{"greeter-1", "127.0.0.1:9001", {}}, {"greeter-2", "127.0.0.1:9002", {}}};
  ASSERT_TRUE(registry.register_service(service).ok());

  auto got = registry.get_service("greeter");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0].name, "greeter");
  EXPECT_EQ(got.value[0].version, "1.0.0");
  ASSERT_EQ(got.value[0].nodes.size(), 2u);
  for (const auto& node : service.nodes) {
    const auto& nodes = got.value[0].nodes;
    EXPECT_NE(std::find(nodes.begin(), nodes.end(), node), nodes.end()) << node.id;
  }
  auto listed = registry.list_services();
  ASSERT_TRUE(listed.ok()) << listed.error.to_string();
  ASSERT_EQ(listed.value.size(), 1u);
  EXPECT_EQ(listed.value[0].name, "greeter");

  // No unwatch, so no watch: reported, not crashed into (the module's watch would say 500).
  auto watch = registry.watch("greeter", [](const micro::RegistryEvent&) {});
  EXPECT_EQ(watch.error.code(), 501) << watch.error.to_string();
  EXPECT_TRUE(contains(watch.error.detail(), "does not implement watch")) << watch.error.detail();
  EXPECT_FALSE(watch.value.active());

  ASSERT_TRUE(registry.deregister_service(service).ok());
  auto gone = registry.get_service("greeter");
  EXPECT_EQ(gone.error.code(), 404) << gone.error.to_string();
  EXPECT_TRUE(contains(gone.error.detail(), "'greeter'")) << gone.error.detail();
}

TEST(Loader, LoadsAnIntactCopyInAPrivateFolder) {
  // The control for the refusals below: copying alone does not make a module unloadable.
  TempDir dir;
  const fs::path file = dir.copy_of_registry_memory("registry-memory.so");
  const auto result = ModuleLoader().load(file);
  ASSERT_TRUE(result.ok()) << result.error.to_string();
  EXPECT_EQ(result.module->name(), "registry-memory");
}

TEST(Loader, RefusesATruncatedModuleWithoutCrashing) {
  // dlopen maps segments straight from the file; one past the end of the file would fault.
  TempDir dir;
  const fs::path file = dir.copy_of_registry_memory("registry-memory.so");
  fs::resize_file(file, 4096);
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  const std::string& detail = result.error.detail();
  EXPECT_TRUE(contains(detail, "truncated or corrupt")) << detail;
  EXPECT_TRUE(contains(detail, "4096 bytes")) << detail;
  EXPECT_TRUE(contains(detail, "rebuild or reinstall it")) << detail;
}

TEST(Loader, RefusesATextFileNamedLikeAModule) {
  TempDir dir;
  const fs::path file = dir.path() / "x.so";
  std::ofstream(file) << "this is not a library\n";
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  EXPECT_TRUE(contains(result.error.detail(), "not a shared library")) << result.error.detail();
}

TEST(Loader, RefusesAnEmptyFileNamedLikeAModule) {
  TempDir dir;
  const fs::path file = dir.path() / "empty.so";
  std::ofstream{file};
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  EXPECT_TRUE(contains(result.error.detail(), "not a shared library")) << result.error.detail();
}

TEST(Loader, RefusesAModuleInAWorldWritableFolder) {
  TempDir dir;
  const fs::path file = dir.copy_of_registry_memory("registry-memory.so");
  ASSERT_EQ(::chmod(dir.path().c_str(), 0777), 0);
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  const std::string& detail = result.error.detail();
  EXPECT_TRUE(contains(detail, ": " + dir.path().string() + " is world-writable")) << detail;
  EXPECT_TRUE(contains(detail, "chmod o-w")) << detail;
}

TEST(Loader, RefusesAWorldWritableModuleFile) {
  TempDir dir;
  const fs::path file = dir.copy_of_registry_memory("registry-memory.so");
  ASSERT_EQ(::chmod(file.c_str(), 0666), 0);
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  const std::string& detail = result.error.detail();
  EXPECT_TRUE(contains(detail, ": " + file.string() + " is world-writable")) << detail;
  EXPECT_TRUE(contains(detail, "chmod o-w")) << detail;
}

TEST(Loader, RefusesAModuleWhoseFileNameIsNotItsName) {
  TempDir dir;
  const fs::path file = dir.copy_of_registry_memory("registry-renamed.so");
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  const std::string& detail = result.error.detail();
  EXPECT_TRUE(contains(detail, "it calls itself 'registry-memory'")) << detail;
  EXPECT_TRUE(contains(detail, "the file is named registry-renamed.so")) << detail;
  EXPECT_TRUE(contains(detail, "rename the file to registry-memory.so")) << detail;
}

TEST(Loader, ReportsAMissingFile) {
  TempDir dir;
  const fs::path file = dir.path() / "nowhere.so";
  const auto result = ModuleLoader().load(file);
  expect_refused(result, file);
  EXPECT_TRUE(contains(result.error.detail(), "no such file")) << result.error.detail();
}

TEST(Loader, NamesTheSearchPathWhenAModuleIsNotFound) {
  const ModuleLoader loader({fixture_dir().string()});
  const auto result = loader.load_by_name("registry-nonexistent");
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.error.code(), 404) << result.error.to_string();
  const std::string& detail = result.error.detail();
  EXPECT_TRUE(contains(detail, "no module named 'registry-nonexistent'")) << detail;
  EXPECT_TRUE(contains(detail, "[" + fixture_dir().string())) << detail;
  EXPECT_TRUE(contains(detail, "MICRO_MODULE_PATH")) << detail;
}

// ---- a module from clang++ and libc++, in this g++/libstdc++ host ---------------------------

TEST(LibcxxModule, IsLinkedAgainstLibcxxNotLibstdcxx) {
  const fs::path file = fixture_dir() / "registry-memory-libcxx.so";
  ASSERT_TRUE(fs::exists(file)) << file << " was not built (is clang++ with libc++ installed?)";
  const std::string deps = run("ldd '" + file.string() + "'");
  EXPECT_TRUE(contains(deps, "libc++.so")) << deps;
  EXPECT_TRUE(contains(deps, "libc++abi.so")) << deps;
  EXPECT_FALSE(contains(deps, "libstdc++")) << deps;
  EXPECT_FALSE(contains(deps, "not found")) << deps;
  // And this test program itself uses libstdc++: the two really differ.
  EXPECT_TRUE(contains(run("ldd /proc/" + std::to_string(::getpid()) + "/exe"), "libstdc++"));
}

}  // namespace

// The same conformance suite registry-memory passes, against the libc++ build of its source.
namespace micro::testing {
INSTANTIATE_TEST_SUITE_P(Libcxx, RegistryConformance,
                         ::testing::Values(RegistryUnderTest{"registry-memory-libcxx", "",
                                                             std::chrono::seconds(2),
                                                             fixture_dir_name()}));
}  // namespace micro::testing
