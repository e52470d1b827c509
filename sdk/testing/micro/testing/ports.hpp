// Ports for servers that tests start (etcd, nats-server) and may restart on the same port.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <random>

namespace micro::testing {

// A loopback port nothing listens on, chosen below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range). A port handed out by binding port 0 comes from that range, so
// while its server is down (a restart) an outgoing connection can be given it as its own local
// port, or a reconnecting client's connect to it can self-connect (TCP simultaneous open with
// itself), and the server then cannot bind it again. Below the range neither can happen.
inline unsigned short listen_port() {
  int low = 32768, high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  const int top = low - 1, bottom = top > 20000 ? 10000 : 1024;
  std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> any(bottom, top);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = any(pick);
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (free) return static_cast<unsigned short>(port);
  }
  return 0;
}

}  // namespace micro::testing
