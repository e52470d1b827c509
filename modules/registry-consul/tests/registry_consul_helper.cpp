// A second process for registry_consul_test: registers one node through registry-consul (loaded
// by the host as `micro run` would load it) without a TTL, so the module itself keeps the check
// passing; says "registered" on stdout, then holds the registration until its stdin closes,
// deregisters and exits. Killed instead, it stops passing the check, as a crashed service.
//
//   registry_consul_helper MODULE_DIR CONSUL_ADDRESS SERVICE NODE_ID [EXTRA_TOML_LINE...]
#include <unistd.h>

#include <cstdio>
#include <string>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"
#include "micro/registry.hpp"

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "registry_consul_helper: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5)
    return fail("usage: registry_consul_helper MODULE_DIR ADDRESS SERVICE NODE_ID [TOML_LINE...]");
  const std::string module_dir = argv[1], address = argv[2], name = argv[3], node_id = argv[4];
  std::string toml =
      "[service]\nname = \"helper\"\n[registry]\nmodule = \"registry-consul\"\n"
      "address = \"" +
      address + "\"\n";
  for (int i = 5; i < argc; ++i) toml += std::string(argv[i]) + "\n";
  auto parsed = micro::host::parse_config(toml, "helper.toml");
  if (!parsed.ok()) return fail(parsed.errors.front().to_string());
  micro::host::ModuleLoader loader({module_dir});
  auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_REGISTRY});
  if (!built.ok()) return fail(built.errors.front());
  micro::Registry registry(built.stack->registry());

  micro::Service service;
  service.name = name;
  service.version = "1.0.0";
  service.nodes = {{node_id, "127.0.0.1:7000", {{"pid", std::to_string(::getpid())}}}};
  if (auto e = registry.register_service(service); !e.ok()) return fail(e.to_string());
  std::printf("registered\n");
  std::fflush(stdout);

  char buffer[64];
  while (::read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
  }
  if (auto e = registry.deregister_service(service); !e.ok()) return fail(e.to_string());
  return 0;
}
