// A real nats-server for tests: started on 127.0.0.1 with a free port, killed at the end. Plus
// helpers that build a broker-nats stack and make sure its subscriptions reached the server.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "micro/broker.hpp"
#include "micro/testing/ports.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace nats_test {

using namespace std::chrono_literals;

inline bool port_accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// nats-server (Debian's, /usr/sbin or PATH) on 127.0.0.1:port.
class NatsServer {
 public:
  explicit NatsServer(int port = 0) : port_(port != 0 ? port : micro::testing::listen_port()) {}
  ~NatsServer() { stop(); }
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  int port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

  // Starts the server and waits (up to 10 s) until it accepts connections.
  bool start() {
    const std::string port = std::to_string(port_);
    pid_ = fork();
    if (pid_ == 0) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      const char* argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port.c_str(), nullptr};
      execv("/usr/sbin/nats-server", const_cast<char* const*>(argv));
      execvp("nats-server", const_cast<char* const*>(argv));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (port_accepts(port_)) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;  // exited: not installed, or the port was taken
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // SIGKILL: the server goes away without a goodbye, as in a crash.
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

// A stack holding only the broker: broker-nats with `options` (TOML lines).
inline std::unique_ptr<micro::host::Stack> broker_stack(const std::string& options) {
  return micro::testing::require_stack("[broker]\nmodule = \"broker-nats\"\n" + options,
                                       {MICRO_KIND_BROKER});
}

inline std::string servers_option(const std::string& url) {
  return "servers = [\"" + url + "\"]\nreconnect_wait_ms = 20\nreconnect_wait_max_ms = 200\n";
}

// Returns once every SUB this broker sent before it has reached the server: the broker's
// commands go out in order on one connection, so its own message on a fresh topic coming back
// proves the earlier SUBs were processed.
inline bool sync(const micro::Broker& broker) {
  static std::atomic<int> counter{0};
  const std::string topic = "sync." + std::to_string(getpid()) + "." + std::to_string(++counter);
  micro::testing::Collector<int> got;
  auto sub = broker.subscribe(topic, [&](std::string_view, const micro::Message&) {
    got.push(1);
    return micro::Error{};
  });
  if (!sub.ok()) return false;
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (!broker.publish(topic, micro::Message{{}, "sync"}).ok()) {
      std::this_thread::sleep_for(100ms);
      continue;
    }
    if (got.wait_for([](const auto& v) { return !v.empty(); }, 200ms)) return true;
  }
  return false;
}

}  // namespace nats_test
