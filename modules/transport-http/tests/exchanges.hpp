// Exchanges the TLS and HTTP/2 tests (tls_test.cpp, h2c_test.cpp) share: a recording echo
// server, a one-call client, a stream echo server, and what a message says of its protocol.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "harness.hpp"

namespace micro::testing::http {

inline micro::DialOptions stream_options() {
  micro::DialOptions o;
  o.stream = true;
  return o;
}

inline Message frame(std::string body) { return Message{{}, std::move(body)}; }

// What the server saw of each request: its head, and the address it came from.
struct Seen {
  Message head;
  std::string remote;
};

// Answers unary calls with an echo, recording each request.
inline TestServer::Serve recording_echo(Collector<Seen>& seen) {
  return [&seen](micro::Socket& s) {
    const std::string remote(s.remote_address());
    serve_unary(
        s,
        [&seen, remote](const Message& request) {
          seen.push({request, remote});
          return echo(request);
        },
        nullptr);
  };
}

inline micro::Result<Message> call(const micro::Transport& transport, const std::string& address,
                            const std::string& body) {
  auto dialed = transport.dial(address);
  if (!dialed.ok()) return {dialed.error, {}};
  if (Error sent = dialed.value.send(request("/Greeter.Hello", body)); !sent.ok())
    return {sent, {}};
  auto reply = dialed.value.recv();
  if (!reply.ok()) return {reply.error, {}};
  if (!reply.value) return {Error(500, "no reply"), {}};
  return {{}, *reply.value};
}

// Server side of a bidi stream: answers the head, echoes every frame, ends when the client does;
// records how each stream (by :path) ended.
struct StreamEcho {
  Collector<Message> heads;
  Collector<std::pair<std::string, Error>> ended;

  TestServer::Serve serve() {
    return [this](micro::Socket& s) {
      s.recv([this, &s](const Error& e, std::optional<Message> head) {
        if (!e.ok() || !head) return;
        heads.push(*head);
        Message reply;
        reply.header["Content-Type"] = "application/json";
        s.send(reply, [this, &s, path = head->header[":path"]](const Error& sent) {
          if (sent.ok()) echo_frames(s, path);
        });
      });
    };
  }
  void echo_frames(micro::Socket& s, std::string path) {
    s.recv([this, &s, path](const Error& e, std::optional<Message> m) {
      if (!e.ok() || !m) {
        ended.push({path, e});
        if (e.ok()) s.close_send([](const Error&) {});
        return;
      }
      s.send(frame(std::move(m->body)), [this, &s, path](const Error& sent) {
        if (sent.ok()) echo_frames(s, path);
      });
    });
  }
};

inline std::string protocol_of(const Message& m) {
  auto it = m.header.find("micro-transport-protocol");
  return it == m.header.end() ? "(none)" : it->second;
}

}  // namespace micro::testing::http
