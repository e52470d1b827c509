// hello-registry: loads the registry module named in micro.toml through the host, watches it,
// registers two nodes of a service, looks them up, and deregisters one.
#include <iostream>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"
#include "micro/host/stack.hpp"
#include "micro/registry.hpp"

int main(int argc, char** argv) {
  const std::string file = argc > 1 ? argv[1] : "examples/hello-registry/micro.toml";
  auto parsed = micro::host::load_config(file);
  for (const auto& e : parsed.errors) std::cerr << e.to_string() << "\n";
  if (!parsed.ok()) return 2;
  micro::host::set_log_level(parsed.config.log_level);

  micro::host::ModuleLoader loader(parsed.config.module_paths);
  auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_REGISTRY});
  for (const auto& e : built.errors) std::cerr << e << "\n";
  if (!built.ok()) return 2;
  const auto* instance = built.stack->find(MICRO_KIND_REGISTRY);
  std::cout << "registry: " << instance->plugin_name() << " from "
            << instance->module()->path().string() << "\n";

  micro::Registry registry(built.stack->registry());
  auto watch = registry.watch("", [](const micro::RegistryEvent& e) {
    std::cout << "  event: " << micro::to_string(e.type) << " " << e.service.name << " ("
              << e.service.nodes.size() << " node(s))\n";
  });
  if (!watch.ok()) {
    std::cerr << "watch: " << watch.error.to_string() << "\n";
    return 1;
  }

  micro::Service greeter{"greeter", "1.0.0", {{"team", "core"}},
                         {{"Greeter.Hello", "greeter.Request", "greeter.Response", {}}},
                         {{"greeter-1", "127.0.0.1:9001", {}}, {"greeter-2", "127.0.0.1:9002", {}}}};
  if (auto e = registry.register_service(greeter); !e.ok()) {
    std::cerr << "register: " << e.to_string() << "\n";
    return 1;
  }
  auto found = registry.get_service("greeter");
  if (!found.ok()) {
    std::cerr << "get: " << found.error.to_string() << "\n";
    return 1;
  }
  for (const auto& s : found.value)
    for (const auto& n : s.nodes)
      std::cout << "found " << s.name << " " << s.version << " node " << n.id << " at "
                << n.address << "\n";

  micro::Service one = greeter;
  one.nodes = {greeter.nodes[0]};
  registry.deregister_service(one);
  std::cout << "after deregistering greeter-1: "
            << registry.get_service("greeter").value.at(0).nodes.size() << " node(s) left\n";
  std::cout << "missing service: " << registry.get_service("nobody").error.to_string() << "\n";
  return 0;
}
