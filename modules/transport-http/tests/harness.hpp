// What the transport-http tests share: a stack holding the module (loaded through the host, as
// users get it), a server that serves accepted sockets on transport threads and counts accepts,
// and a raw TCP client for what a well-behaved client would never send.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"
#include "micro/transport.hpp"

namespace micro::testing::http {

using namespace std::chrono_literals;

// A stack with transport-http and the given extra [transport] options.
struct TransportStack {
  explicit TransportStack(const std::string& options = "") {
    stack = require_stack("[transport]\nmodule = \"transport-http\"\n" + options,
                          {MICRO_KIND_TRANSPORT});
    if (stack != nullptr) transport = micro::Transport(stack->transport());
  }
  std::unique_ptr<micro::host::Stack> stack;
  micro::Transport transport;
};

// "127.0.0.1:1234" -> 1234
inline uint16_t port_of(std::string_view address) {
  return static_cast<uint16_t>(std::stoi(std::string(address.substr(address.rfind(':') + 1))));
}

// Serves accepted sockets on transport threads and owns them until it is destroyed (sockets are
// never destroyed from their own callbacks). Destroy it before the stack.
class TestServer {
 public:
  // Called on a transport thread for each accepted socket, which the server keeps.
  using Serve = std::function<void(micro::Socket& socket)>;

  TestServer(const micro::Transport& transport, Serve serve) : serve_(std::move(serve)) {
    auto listener =
        transport.listen("127.0.0.1:0", [this](const Error& error, micro::Socket socket) {
          if (!error.ok()) return;
          micro::Socket* kept = nullptr;
          {
            std::lock_guard<std::mutex> lock(mutex_);
            sockets_.push_back(std::make_unique<micro::Socket>(std::move(socket)));
            kept = sockets_.back().get();
          }
          accepts_.push(1);
          serve_(*kept);
        });
    EXPECT_TRUE(listener.ok()) << listener.error.to_string();
    listener_ = std::move(listener.value);
  }
  ~TestServer() {
    listener_.reset();
    std::lock_guard<std::mutex> lock(mutex_);
    sockets_.clear();
  }

  std::string address() const { return std::string(listener_.address()); }
  size_t accepts() const { return accepts_.snapshot().size(); }
  Collector<int>& accept_events() { return accepts_; }
  // Destroys the sockets accepted so far (from the test thread).
  void drop_sockets() {
    std::lock_guard<std::mutex> lock(mutex_);
    sockets_.clear();
  }

 private:
  Serve serve_;
  micro::Listener listener_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<micro::Socket>> sockets_;
  Collector<int> accepts_;
};

// The server side of unary calls: answers each request with `handler`, until the socket ends or
// fails; what ended it goes to `ended` (ok: the client closed).
using Handler = std::function<Message(const Message& request)>;
inline void serve_unary(micro::Socket& socket, Handler handler, Collector<Error>* ended) {
  socket.recv([&socket, handler, ended](const Error& error, std::optional<Message> request) {
    if (!error.ok() || !request) {
      if (ended != nullptr) ended->push(error);
      return;
    }
    socket.send(handler(*request), [&socket, handler, ended](const Error& sent) {
      if (!sent.ok()) {
        if (ended != nullptr) ended->push(sent);
        return;
      }
      serve_unary(socket, handler, ended);
    });
  });
}

inline Message echo(const Message& request) {
  Message response;
  response.header["Content-Type"] = "application/json";
  response.body = request.body;
  return response;
}

inline Message request(std::string path, std::string body) {
  Message m;
  m.header[":path"] = std::move(path);
  m.header["Content-Type"] = "application/json";
  m.body = std::move(body);
  return m;
}

// A plain blocking TCP client on 127.0.0.1, for bytes no HTTP client would send.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }

  // False once the peer has closed or reset.
  bool write(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Waits up to `timeout` for the peer to close (EOF or reset); what arrived meanwhile is kept.
  bool wait_closed(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
      received_.append(buf, static_cast<size_t>(n));
    }
  }
  const std::string& received() const { return received_; }

 private:
  int fd_;
  bool connected_ = false;
  std::string received_;
};

// Runs a shell command and returns what it printed (stdout and stderr).
inline std::string run_command(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

}  // namespace micro::testing::http
