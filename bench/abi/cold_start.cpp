// Host cold start, one scenario per process (run it under hyperfine: a process has its dynamic
// loader state to itself only once). Prints what it measured from inside, in one line.
//
//   micro-bench-cold-start noop          exit at once: the price of starting this program
//   micro-bench-cold-start stack [DIR]   ModuleLoader + Stack::build of codec = [codec-json,
//                                        codec-proto], registry = registry-memory: a ready stack
//   micro-bench-cold-start load FILE     ModuleLoader::load of one module file (load + checks)
//   micro-bench-cold-start load-all [DIR]  ModuleLoader::load of every *.so in DIR, one by one
//
// DIR defaults to the build's module folder.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "micro/codec.hpp"
#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

int fail(const std::string& what) {
  std::fprintf(stderr, "micro-bench-cold-start: %s\n", what.c_str());
  return 1;
}

int build_stack(const std::string& dir) {
  const auto start = Clock::now();
  const std::string toml = "[service]\nname = \"cold-start\"\n[modules]\npath = [\"" + dir +
                           "\"]\n[codec]\nmodule = [\"codec-json\", \"codec-proto\"]\n"
                           "[registry]\nmodule = \"registry-memory\"\n";
  auto parsed = micro::host::parse_config(toml, "cold-start.toml");
  if (!parsed.ok()) return fail(parsed.errors.front().to_string());
  micro::host::ModuleLoader loader(parsed.config.module_paths);
  auto built =
      micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_CODEC, MICRO_KIND_REGISTRY});
  if (!built.ok()) return fail(built.errors.front());
  const auto codecs = built.stack->codecs();
  if (codecs.size() != 2 || built.stack->registry().self == nullptr)
    return fail("the stack lacks a codec or the registry");
  for (const auto& handle : codecs)
    if (micro::Codec(handle).content_types().empty()) return fail("a codec has no content type");
  const double ready = ms_since(start);
  std::printf("stack ready: %.3f ms (%zu instances)\n", ready, built.stack->instances().size());
  return 0;
}

int load(const std::vector<fs::path>& files) {
  const micro::host::ModuleLoader loader;
  std::vector<micro::host::LoadResult> kept;  // unloading is not part of the measurement
  for (const auto& file : files) {
    const auto start = Clock::now();
    auto loaded = loader.load(file);
    const double took = ms_since(start);
    if (!loaded.ok()) return fail(loaded.error.to_string());
    std::printf("load %s: %.3f ms\n", file.filename().c_str(), took);
    kept.push_back(std::move(loaded));
  }
  return 0;
}

std::vector<fs::path> module_files(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".so") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const std::string arg = argc > 2 ? argv[2] : MICRO_MODULE_OUTPUT_DIR;
  if (mode == "noop") return 0;
  if (mode == "stack") return build_stack(arg);
  if (mode == "load" && argc > 2) return load({fs::path(arg)});
  if (mode == "load-all") return load(module_files(arg));
  return fail("usage: micro-bench-cold-start noop | stack [DIR] | load FILE | load-all [DIR]");
}
