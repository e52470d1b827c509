// A second process for registry_file_test: registers one node through registry-file, loaded by
// the host as `micro run` would load it, says "registered" on stdout, then holds the
// registration until its stdin closes, deregisters and exits. Killed instead, it leaves the node
// file behind (and its TTL lapses).
//
//   registry_file_helper MODULE_DIR PATH SERVICE NODE_ID TTL_MS
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"
#include "micro/registry.hpp"

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "registry_file_helper: %s\n", what.c_str());
  return 1;
}

// A TOML basic string.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) return fail("usage: registry_file_helper MODULE_DIR PATH SERVICE NODE_ID TTL_MS");
  const std::string module_dir = argv[1], path = argv[2], name = argv[3], node_id = argv[4];
  const uint64_t ttl_ms = std::strtoull(argv[5], nullptr, 10);

  const std::string toml =
      "[service]\nname = \"helper\"\n[registry]\nmodule = \"registry-file\"\n"
      "path = " +
      quoted(path) + "\n";
  auto parsed = micro::host::parse_config(toml, "helper.toml");
  if (!parsed.ok()) return fail(parsed.errors.front().to_string());
  micro::host::ModuleLoader loader({module_dir});
  auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_REGISTRY});
  if (!built.ok()) return fail(built.errors.front());
  micro::Registry registry(built.stack->registry());

  micro::Service service;
  service.name = name;
  service.version = "1.0.0";
  service.metadata = {{"owner", "helper"}};
  service.nodes = {{node_id, "127.0.0.1:7000", {{"pid", std::to_string(::getpid())}}}};
  if (auto e = registry.register_service(service, micro::RegisterOptions{ttl_ms}); !e.ok())
    return fail(e.to_string());
  std::printf("registered\n");
  std::fflush(stdout);

  char buffer[64];
  while (::read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }
  if (auto e = registry.deregister_service(service); !e.ok()) return fail(e.to_string());
  return 0;
}
