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

  TestServer(const micro::Transport& transport, Serve serve,
             const std::string& address = "127.0.0.1:0")
      : serve_(std::move(serve)) {
    auto listener =
        transport.listen(address, [this](const Error& error, micro::Socket socket) {
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

// C callers send from their completions (on the connection's strand, where a transport may take
// the C list as it is): a handler answers a request with a descending list that repeats a key, and
// the caller sends its next request from the response's callback as an ascending list. Each
// arrives as the Message its list makes (the last of a repeated key wins), over `protocol` (as
// micro-transport-protocol says; plaintext HTTP/1.1 says nothing: "").
inline void c_header_lists_sent_from_completions_arrive_as_their_maps(
    micro::Transport& server_transport, micro::Transport& client_transport,
    const std::string& protocol) {
  Collector<Message> requests;
  // The first request is answered from a C list; the next with its echo (on HTTP/1.1 it comes on
  // the same socket, on HTTP/2 as a stream, and so a socket, of its own).
  TestServer server(server_transport, [&](micro::Socket& socket) {
    socket.recv([&socket, &requests](const Error& error, std::optional<Message> request) {
      if (!error.ok() || !request) return;
      requests.push(*request);
      if (request->header[":path"] == "/Echo.Again") {
        socket.send(echo(*request), [](const Error&) {});
        return;
      }
      // Descending, with a repeated key: not sendable as it is.
      const micro_kv_t items[] = {{micro::to_c("x-b"), micro::to_c("2")},
                                  {micro::to_c("x-a"), micro::to_c("1")},
                                  {micro::to_c("x-a"), micro::to_c("3")}};
      const micro_message_t reply{sizeof(micro_message_t), {items, 3},
                                  micro::to_c_bytes("first")};
      socket.send_c(reply, [](void*, const micro_error_t*) {}, nullptr);
      serve_unary(  // then the next request, answered from a Message
          socket,
          [&requests](const Message& next) {
            requests.push(next);
            return echo(next);
          },
          nullptr);
    });
  });
  auto dialed = client_transport.dial(server.address());
  ASSERT_TRUE(dialed.ok()) << dialed.error.to_string();
  micro::Socket socket = std::move(dialed.value);
  ASSERT_TRUE(socket.send(request("/Echo.Call", "one")).ok());

  struct Seen {
    micro::Socket* socket;
    Collector<Message> replies;
    Collector<Error> errors;
  } seen{&socket, {}, {}};
  static constexpr auto on_reply = +[](void* ctx, const micro_error_t* error,
                                       const micro_message_t* message) {
    auto* s = static_cast<Seen*>(ctx);
    if (error != nullptr || message == nullptr) return s->errors.push(Error::from_c(error));
    s->replies.push(micro::from_c(message));
  };
  static constexpr auto on_first = +[](void* ctx, const micro_error_t* error,
                                       const micro_message_t* message) {
    auto* s = static_cast<Seen*>(ctx);
    on_reply(ctx, error, message);
    if (error != nullptr || message == nullptr) return;
    // From this connection's completion: the next request, from an ascending C list.
    const micro_kv_t items[] = {{micro::to_c(":path"), micro::to_c("/Echo.Again")},
                                {micro::to_c("content-type"), micro::to_c("text/plain")},
                                {micro::to_c("x-c"), micro::to_c("4")}};
    const micro_message_t next{sizeof(micro_message_t), {items, 3}, micro::to_c_bytes("two")};
    s->socket->send_c(
        next,
        [](void* ctx, const micro_error_t* error) {
          auto* s = static_cast<Seen*>(ctx);
          if (error != nullptr) return s->errors.push(Error::from_c(error));
          s->socket->recv_c(on_reply, ctx);
        },
        ctx);
  };
  socket.recv_c(on_first, &seen);
  ASSERT_TRUE(seen.replies.wait_for([](auto& r) { return r.size() == 2; }, 5s))
      << (seen.errors.snapshot().empty() ? "" : seen.errors.snapshot()[0].to_string());
  const auto replies = seen.replies.snapshot();
  EXPECT_EQ(replies[0].header.at("x-a"), "3");
  EXPECT_EQ(replies[0].header.at("x-b"), "2");
  EXPECT_EQ(replies[0].header.at(":status"), "200");
  EXPECT_EQ(replies[0].body, "first");
  if (!protocol.empty()) {
    EXPECT_EQ(replies[0].header.at("micro-transport-protocol"), protocol);
  }
  EXPECT_EQ(replies[1].body, "two");
  const auto got = requests.snapshot();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].body, "one");
  EXPECT_EQ(got[1].header.at(":path"), "/Echo.Again");
  EXPECT_EQ(got[1].header.at("content-type"), "text/plain");
  EXPECT_EQ(got[1].header.at("x-c"), "4");
  EXPECT_EQ(got[1].body, "two");
  if (!protocol.empty()) {
    EXPECT_EQ(got[1].header.at("micro-transport-protocol"), protocol);
  }
  EXPECT_TRUE(seen.errors.snapshot().empty());
}

}  // namespace micro::testing::http
