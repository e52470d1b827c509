// The Consul API double as a program, for process tests (`micro list` against it) and by hand:
//   consul_double [--port N] [--token T] [--datacenter DC]
// Prints "consul-double listening on 127.0.0.1:PORT" on its first line, then serves until
// SIGINT or SIGTERM.
#include <signal.h>

#include <cstring>
#include <iostream>
#include <string>

#include "consul_double.hpp"

int main(int argc, char** argv) {
  micro::consul::testing::ConsulDouble::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--port" && has_value) {
      options.port = static_cast<uint16_t>(std::stoi(argv[++i]));
    } else if (arg == "--token" && has_value) {
      options.token = argv[++i];
    } else if (arg == "--datacenter" && has_value) {
      options.datacenter = argv[++i];
    } else {
      std::cerr << "usage: consul_double [--port N] [--token T] [--datacenter DC]\n";
      return 2;
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before the double's thread starts
  micro::consul::testing::ConsulDouble consul(options);
  std::cout << "consul-double listening on " << consul.address() << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  return 0;
}
