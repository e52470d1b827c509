// bench/rpc: the micro stack (client-rpc -> selector-default -> transport-http -> server-rpc ->
// a typed handler; registry-memory; codec-proto and codec-json) against gRPC, a bare Beast
// HTTP/1.1 echo and, for streams, a bare Asio length-prefixed echo. One run does everything and
// prints qps, p50, p99 and the ratios the issue sets targets for. Results: bench/README.md.
//
//   micro-bench-rpc [--measure SECONDS] [--warmup SECONDS] [--only NAME] [--inflight N]
//
// --only runs the rows whose contender name contains NAME ("micro proto", "stream", ...), and
// --inflight only that count, without the ratios: for profiling one path.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <thread>

#include "contenders.hpp"
#include "echo.micro.h"
#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"
#include "micro/host/stack.hpp"
#include "micro/module.hpp"

namespace benchrpc {
namespace {

class Handler final : public EchoHandler {
 public:
  micro::Error Call(const Payload& request, Payload& response) override {
    response.set_data(request.data());
    return {};
  }
  micro::Error Chat(micro::ServerReaderWriter<Payload, Payload>& stream) override {
    while (true) {
      auto next = stream.recv();
      if (!next.ok()) return next.error;
      if (!next.value) return {};
      if (micro::Error e = stream.send(*next.value); !e.ok()) return e;
    }
  }
};

// The micro stack in this process, laid out as a deployment is: a server stack (service
// "bench": server-rpc + its own transport-http) and a client stack (client-rpc, selector-default,
// its own transport-http), meeting through registry-file in a scratch folder. Each transport runs
// one I/O thread, as the Beast anchor's server and client each do. The rows run it on the default
// carrier (plaintext HTTP/1.1, or what MICRO_BENCH_TRANSPORT says), and MicroH2cProto on plaintext
// HTTP/2.
class Micro {
 public:
  // MICRO_BENCH_TRANSPORT: more [transport] lines (TOML), e.g. TLS files and http2, to measure
  // other carriers with the same rows; `threads = N` there replaces the bench's 1.
  static std::string transport_extra() {
    const char* extra = std::getenv("MICRO_BENCH_TRANSPORT");
    return extra != nullptr ? std::string(extra) + "\n" : std::string();
  }

  // `transport`: the [transport] lines of both stacks (beyond threads = 1).
  bool start(const std::string& transport, std::string& error) {
    char scratch[] = "/tmp/micro-bench-rpc-XXXXXX";
    if (mkdtemp(scratch) == nullptr) {
      error = "mkdtemp failed";
      return false;
    }
    dir_ = scratch;
    const std::string common = "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ +
                               "\"\n[transport]\n" +
                               (transport.find("threads") == std::string::npos ? "threads = 1\n"
                                                                                : "") +
                               transport +
                               "[log]\nlevel = \"warn\"\n";
    if (!build("[service]\nname = \"bench\"\n" + common, {MICRO_KIND_SERVICE}, server_stack_,
               error))
      return false;
    if (!build("[service]\nname = \"bench-client\"\n" + common, {MICRO_KIND_CLIENT}, client_stack_, error)) return false;
    server_ = micro::Server(server_stack_->server());
    client_ = micro::Client(client_stack_->client());
    if (auto e = RegisterEchoHandler(server_, std::make_shared<Handler>()); !e.ok()) {
      error = e.to_string();
      return false;
    }
    service_ = micro::ServiceHandle(server_stack_->service());
    if (auto e = service_.start(); !e.ok()) {
      error = e.to_string();
      return false;
    }
    return true;
  }
  ~Micro() {
    if (service_.valid()) (void)service_.stop();
    client_ = micro::Client();
    client_stack_.reset();
    service_ = micro::ServiceHandle();
    server_ = micro::Server();
    server_stack_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  const micro::Client& client() const { return client_; }

 private:
  static bool build(const std::string& toml, const std::vector<micro_kind_t>& wanted,
                    std::unique_ptr<micro::host::Stack>& out, std::string& error) {
    auto parsed = micro::host::parse_config(toml, "bench.toml");
    for (const auto& e : parsed.errors) error += e.to_string() + "\n";
    if (!parsed.ok()) return false;
    micro::host::set_log_level(parsed.config.log_level);
    micro::host::ModuleLoader loader({MICRO_MODULE_OUTPUT_DIR});
    auto built = micro::host::Stack::build(parsed.config, loader, wanted);
    for (const auto& e : built.errors) error += e + "\n";
    if (!built.ok()) return false;
    out = std::move(built.stack);
    return true;
  }

  std::string dir_;
  std::unique_ptr<micro::host::Stack> server_stack_;
  std::unique_ptr<micro::host::Stack> client_stack_;
  micro::Server server_;  // holds the handlers it was given: alive while the service runs
  micro::Client client_;
  micro::ServiceHandle service_;
};

// Typed calls through the generated client: protobuf on the wire.
class MicroProto final : public UnaryContender {
 public:
  MicroProto(const Micro& m, const char* name) : client_(m.client(), "bench"), name_(name) {
    request_.set_data(payload64());
  }
  Summary run(int inflight, Clock::duration warmup, Clock::duration measure) override {
    Loop loop(inflight, warmup, measure);
    std::function<void(int)> issue = [&](int slot) {
      client_.Call(request_, {}, [&, slot](const micro::Error& e, Payload response) {
        if (!e.ok()) return loop.failed(slot, e.to_string());
        if (response.data().size() != 64) return loop.failed(slot, "wrong echo");
        if (loop.finished(slot)) issue(slot);
      });
    };
    return loop.drive(issue, name_);
  }

 private:
  EchoClient client_;
  const char* name_;
  Payload request_;
};

// MicroProto over plaintext HTTP/2 (h2c = true; two connections, the default), the wire gRPC
// uses. Its stacks run only for its own rows, so their idle threads are no part of
// the other rows.
class MicroH2cProto final : public UnaryContender {
 public:
  Summary run(int inflight, Clock::duration warmup, Clock::duration measure) override {
    Micro micro;
    std::string error;
    if (!micro.start("h2c = true\n", error)) {
      Summary failed;
      failed.errors = 1;
      failed.first_error = "micro h2c stack: " + error;
      return failed;
    }
    return MicroProto(micro, "micro h2c (proto)").run(inflight, warmup, measure);
  }
};

// The same endpoint called with a JSON body, as a curl user or another language would: the
// server transcodes through codec-json to the typed handler and back.
class MicroJson final : public UnaryContender {
 public:
  explicit MicroJson(const Micro& m) : client_(m.client()) {
    request_.service = "bench";
    request_.endpoint = "Echo.Call";
    request_.content_type = "application/json";
    request_.accept = "application/json";
    request_.body = R"({"data":")" + payload64() + R"("})";
  }
  Summary run(int inflight, Clock::duration warmup, Clock::duration measure) override {
    Loop loop(inflight, warmup, measure);
    std::function<void(int)> issue = [&](int slot) {
      client_.call(request_, {}, [&, slot](const micro::Error& e, micro::Message response) {
        if (!e.ok()) return loop.failed(slot, e.to_string());
        if (response.body != request_.body) return loop.failed(slot, "wrong echo: " + response.body);
        if (loop.finished(slot)) issue(slot);
      });
    };
    return loop.drive(issue, "micro (json)");
  }

 private:
  micro::Client client_;
  micro::Request request_;
};

// One bidirectional stream through the generated client (Echo.Chat).
class MicroStream final : public StreamContender {
 public:
  explicit MicroStream(const Micro& m) : client_(m.client(), "bench") {}
  StreamSummary run(Clock::duration warmup, Clock::duration measure) override {
    auto chat = client_.Chat();
    Payload p;
    p.set_data(payload64());
    return drive_stream(
        warmup, measure,
        [&]() -> std::string {
          micro::Error e = chat.send(p);
          return e.ok() ? std::string() : e.to_string();
        },
        [&] { (void)chat.close_send(); },
        [&](std::string& error) -> int {
          auto next = chat.recv();
          if (!next.ok()) {
            error = next.error.to_string();
            return 0;
          }
          if (!next.value) return 0;
          if (next.value->data().size() != 64) {
            error = "wrong echo";
            return 0;
          }
          return 1;
        });
  }

 private:
  EchoClient client_;
};

const char* string_arg(int argc, char** argv, const char* flag, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
  return fallback;
}
double seconds_arg(int argc, char** argv, const char* flag, double fallback) {
  const char* s = string_arg(argc, argv, flag, nullptr);
  return s != nullptr ? std::atof(s) : fallback;
}

Clock::duration secs(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

std::string verdict(bool met) { return met ? "met" : "NOT met"; }

}  // namespace
}  // namespace benchrpc

int main(int argc, char** argv) {
  using namespace benchrpc;
  const Clock::duration warmup = secs(seconds_arg(argc, argv, "--warmup", 0.5));
  const Clock::duration measure = secs(seconds_arg(argc, argv, "--measure", 3.0));
  const std::string only = string_arg(argc, argv, "--only", "");
  const int only_inflight = std::atoi(string_arg(argc, argv, "--inflight", "0"));
  const bool all = only.empty() && only_inflight == 0;
  auto wanted = [&](const std::string& name, int inflight) {
    return (only.empty() || name.find(only) != std::string::npos) &&
           (only_inflight == 0 || inflight == only_inflight);
  };

  std::string error;
  Micro micro;
  if (!micro.start(Micro::transport_extra(), error)) {
    std::cerr << "micro stack: " << error << "\n";
    return 1;
  }
  auto grpc = make_grpc_echo(error);
  if (!grpc) {
    std::cerr << "grpc: " << error << "\n";
    return 1;
  }
  auto beast = make_beast_echo(error);
  if (!beast) {
    std::cerr << "beast: " << error << "\n";
    return 1;
  }
  auto grpc_stream = make_grpc_stream(*grpc);
  auto asio_stream = make_asio_stream_echo(error);
  if (!asio_stream) {
    std::cerr << "asio: " << error << "\n";
    return 1;
  }
  MicroProto micro_proto(micro, "micro (proto)");
  MicroH2cProto micro_h2c_proto;
  MicroJson micro_json(micro);
  MicroStream micro_stream(micro);

  std::printf("64-byte payload; warm-up %.1f s, measured %.1f s per row; closed loop\n",
              std::chrono::duration<double>(warmup).count(),
              std::chrono::duration<double>(measure).count());
  std::printf("%-28s %8s %12s %10s %10s %9s %12s %7s\n", "contender", "inflight", "qps",
              "p50 us", "p99 us", "calls", "cpu us/call", "errors");
  const std::pair<const char*, UnaryContender*> unary[] = {
      {"micro proto", &micro_proto},
      {"micro json", &micro_json},
      {"micro h2c proto", &micro_h2c_proto},
      {"grpc callback", grpc.get()},
      {"beast http/1.1", beast.get()},
  };
  std::map<std::pair<std::string, int>, Summary> results;
  bool failed = false;
  // Each in-flight count runs every contender back to back, so a noisy moment on a shared
  // machine hits neighbours in the table rather than one contender's every row.
  for (int inflight : {1, 32}) {
    for (const auto& [name, contender] : unary) {
      if (!wanted(name, inflight)) continue;
      const double cpu_before = process_cpu_us();
      Summary s = contender->run(inflight, warmup, measure);
      if (s.all_calls > 0)
        s.cpu_us_per_call = (process_cpu_us() - cpu_before) / static_cast<double>(s.all_calls);
      std::printf("%-28s %8d %12.0f %10.1f %10.1f %9llu %12.1f %7llu%s%s\n", name, inflight,
                  s.qps, s.p50_us, s.p99_us, static_cast<unsigned long long>(s.calls),
                  s.cpu_us_per_call,
                  static_cast<unsigned long long>(s.errors),
                  s.errors ? "  first: " : "", s.first_error.c_str());
      std::fflush(stdout);
      failed = failed || s.errors != 0 || s.calls == 0;
      results[{name, inflight}] = s;
    }
  }
  std::printf("\n%-28s %14s %8s\n", "one bidi stream", "messages/s", "cpu us");
  std::printf("  (cpu us/msg: process CPU over the run / messages counted in the window)\n");
  // One stream row: runs `contender` when `filter` is wanted, prints it as `label`.
  const auto stream_row = [&](const char* filter, const char* label, StreamContender& contender) {
    StreamSummary out;
    if (!wanted(filter, 1)) return out;
    const double before = process_cpu_us();
    out = contender.run(warmup, measure);
    std::printf("%-28s %14.0f %8.2f%s%s\n", label, out.msgs_per_s,
                out.messages ? (process_cpu_us() - before) / static_cast<double>(out.messages)
                             : 0.0,
                out.error.empty() ? "" : "  error: ", out.error.c_str());
    std::fflush(stdout);
    failed = failed || out.messages == 0;
    return out;
  };
  const StreamSummary ms = stream_row("micro stream", "micro stream (proto)", micro_stream);
  const StreamSummary gs = stream_row("grpc stream", "grpc stream (callback svc)", *grpc_stream);
  const StreamSummary as = stream_row("asio stream", "asio stream (length-prefixed)", *asio_stream);
  if (!all) return failed ? 1 : 0;

  auto r = [&](const char* n, int i) { return results[{n, i}]; };
  const double vs_grpc_32 = r("micro proto", 32).qps / r("grpc callback", 32).qps;
  const double vs_beast_32 = r("micro proto", 32).qps / r("beast http/1.1", 32).qps;
  const double p50_vs_beast_1 = r("micro proto", 1).p50_us / r("beast http/1.1", 1).p50_us;
  const double stream_vs_asio = ms.msgs_per_s / as.msgs_per_s;
  std::printf("\nratios (micro proto unless named)                        value   target\n");
  std::printf("  qps at 32 in flight / grpc                            %7.2f   >= 2.00  %s\n",
              vs_grpc_32, verdict(vs_grpc_32 >= 2.0).c_str());
  std::printf("  qps at 32 in flight / beast                           %7.2f   >= 0.70  %s\n",
              vs_beast_32, verdict(vs_beast_32 >= 0.7).c_str());
  std::printf("  p50 at 1 in flight / beast p50                        %7.2f   <= 1.25  %s\n",
              p50_vs_beast_1, verdict(p50_vs_beast_1 <= 1.25).c_str());
  std::printf("  stream messages/s / asio                              %7.2f   >= 0.80  %s\n",
              stream_vs_asio, verdict(stream_vs_asio >= 0.8).c_str());
  std::printf("  stream messages/s / grpc stream                       %7.2f\n",
              ms.msgs_per_s / gs.msgs_per_s);
  std::printf("  (json) qps at 32 in flight / grpc                     %7.2f\n",
              r("micro json", 32).qps / r("grpc callback", 32).qps);
  std::printf("  (json) qps at 32 in flight / beast                    %7.2f\n",
              r("micro json", 32).qps / r("beast http/1.1", 32).qps);
  std::printf("  (json) p50 at 1 in flight / beast p50                 %7.2f\n",
              r("micro json", 1).p50_us / r("beast http/1.1", 1).p50_us);
  const double h2c_vs_grpc_32 = r("micro h2c proto", 32).qps / r("grpc callback", 32).qps;
  const double h2c_vs_beast_32 = r("micro h2c proto", 32).qps / r("beast http/1.1", 32).qps;
  std::printf("  (h2c) qps at 32 in flight / grpc                      %7.2f   >= 2.00  %s\n",
              h2c_vs_grpc_32, verdict(h2c_vs_grpc_32 >= 2.0).c_str());
  std::printf("  (h2c) qps at 32 in flight / beast                     %7.2f   >= 0.70  %s\n",
              h2c_vs_beast_32, verdict(h2c_vs_beast_32 >= 0.7).c_str());
  std::printf("  (h2c) p50 at 1 in flight / beast p50                  %7.2f\n",
              r("micro h2c proto", 1).p50_us / r("beast http/1.1", 1).p50_us);
  std::printf("  qps at 1 in flight / grpc                             %7.2f\n",
              r("micro proto", 1).qps / r("grpc callback", 1).qps);
  std::printf("cpu per call, micro / anchor (lower is better; robust on a busy machine)\n");
  for (const char* name : {"micro proto", "micro h2c proto"})
    for (int i : {1, 32})
      std::printf("  %-16s %2d in flight: / grpc %5.2f   / beast %5.2f\n", name, i,
                  r(name, i).cpu_us_per_call / r("grpc callback", i).cpu_us_per_call,
                  r(name, i).cpu_us_per_call / r("beast http/1.1", i).cpu_us_per_call);
  return failed ? 1 : 0;
}
