// Builds a stack for a test from TOML tables, loading modules exactly as `micro run` would.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"

namespace micro::testing {

// The folder of the modules under test: `dir` if given, else $MICRO_TEST_MODULE_DIR.
inline std::string module_dir(const std::string& dir = {}) {
  if (!dir.empty()) return dir;
  const char* env = std::getenv("MICRO_TEST_MODULE_DIR");
  return env != nullptr ? env : "";
}

// Parses `tables` (everything after [service]) and builds the `kinds` from it.
inline micro::host::Stack::BuildResult build_stack(const std::string& tables,
                                                   const std::vector<micro_kind_t>& kinds,
                                                   const std::string& dir = {}) {
  const std::string toml = "[service]\nname = \"test\"\n" + tables + "\n";
  auto parsed = micro::host::parse_config(toml, "test.toml");
  micro::host::Stack::BuildResult out;
  for (const auto& e : parsed.errors) out.errors.push_back(e.to_string());
  if (!parsed.ok()) return out;
  micro::host::ModuleLoader loader({module_dir(dir)});
  return micro::host::Stack::build(parsed.config, loader, kinds);
}

// Every error of a build, a line each ("" when it built): what a refused config says.
inline std::string errors_of(const micro::host::Stack::BuildResult& built) {
  std::string all;
  for (const auto& e : built.errors) all += e + "\n";
  return all;
}

// build_stack, failing the current test with every error when it does not build.
inline std::unique_ptr<micro::host::Stack> require_stack(const std::string& tables,
                                                         const std::vector<micro_kind_t>& kinds,
                                                         const std::string& dir = {}) {
  auto built = build_stack(tables, kinds, dir);
  for (const auto& e : built.errors) ADD_FAILURE() << e;
  return std::move(built.stack);
}

}  // namespace micro::testing
