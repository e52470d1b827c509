// The contenders of bench/rpc. Every one runs in this process: its server on its own I/O
// thread(s), its client on others, talking over 127.0.0.1.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "harness.hpp"

namespace benchrpc {

// Unary echo calls with a 64-byte payload, `inflight` at a time.
class UnaryContender {
 public:
  virtual ~UnaryContender() = default;
  virtual Summary run(int inflight, Clock::duration warmup, Clock::duration measure) = 0;
};

// One stream: a writer sends 64-byte messages back to back while a reader counts the echoes.
class StreamContender {
 public:
  virtual ~StreamContender() = default;
  virtual StreamSummary run(Clock::duration warmup, Clock::duration measure) = 0;
};

// Anchor (a): gRPC C++ callback service, callback client on one channel.
std::unique_ptr<UnaryContender> make_grpc_echo(std::string& error);
// One Echo.Chat stream on make_grpc_echo's server and channel (`grpc_echo` is what it made).
std::unique_ptr<StreamContender> make_grpc_stream(const UnaryContender& grpc_echo);
// Anchor (b): Beast HTTP/1.1 keep-alive echo, one connection per slot.
std::unique_ptr<UnaryContender> make_beast_echo(std::string& error);
// Stream anchor: bare Asio, 4-byte big-endian length + payload per message.
std::unique_ptr<StreamContender> make_asio_stream_echo(std::string& error);

// Shared by the stream contenders: runs `send_one` on a writer thread until the window closes,
// then `close`; `recv_one` on this thread returns false at the end of the stream.
template <class Send, class Close, class Recv>
StreamSummary drive_stream(Clock::duration warmup, Clock::duration measure, Send send_one,
                           Close close, Recv recv_one) {
  StreamSummary out;
  const auto from = Clock::now() + warmup;
  const auto until = from + measure;
  std::string send_error;
  std::thread writer([&] {
    while (Clock::now() < until) {
      if (std::string e = send_one(); !e.empty()) {
        send_error = e;
        break;
      }
    }
    close();
  });
  std::string recv_error;
  while (true) {
    const int got = recv_one(recv_error);
    if (got <= 0) break;
    const auto now = Clock::now();
    if (now >= from && now < until) out.messages += static_cast<uint64_t>(got);
  }
  writer.join();
  out.seconds = std::chrono::duration<double>(measure).count();
  out.msgs_per_s = static_cast<double>(out.messages) / out.seconds;
  out.error = !send_error.empty() ? send_error : recv_error;
  return out;
}

}  // namespace benchrpc
