// greeter-server: the same greeter as a plain program. It links micro-host, builds the stack the
// config names, registers the handler in code and runs until SIGINT or SIGTERM.
#include <csignal>
#include <iostream>

#include "greeter_logic.hpp"
#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"
#include "micro/host/stack.hpp"
#include "micro/module.hpp"

int main(int argc, char** argv) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts: only sigwait sees them

  const std::string file = argc > 1 ? argv[1] : "examples/greeter/micro.toml";
  auto parsed = micro::host::load_config(file);
  for (const auto& e : parsed.errors) std::cerr << e.to_string() << "\n";
  if (!parsed.ok()) return 2;
  micro::host::set_log_level(parsed.config.log_level);
  parsed.config.kinds.erase(MICRO_KIND_HANDLER);  // this program is the handler

  micro::host::ModuleLoader loader(parsed.config.module_paths);
  auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_SERVICE});
  for (const auto& e : built.errors) std::cerr << e << "\n";
  if (!built.ok()) return 2;

  micro::Server server(built.stack->server());
  if (auto e = greeter::RegisterGreeterHandler(server, std::make_shared<greeter::Greeter>());
      !e.ok()) {
    std::cerr << e.to_string() << "\n";
    return 1;
  }
  micro::ServiceHandle service(built.stack->service());
  if (auto e = service.start(); !e.ok()) {
    std::cerr << "start: " << e.to_string() << "\n";
    return 1;
  }
  std::cout << "greeter serving on " << server.address() << std::endl;
  int signal = 0;
  sigwait(&stop, &signal);
  if (auto e = service.stop(); !e.ok()) std::cerr << "stop: " << e.to_string() << "\n";
  return 0;
}
