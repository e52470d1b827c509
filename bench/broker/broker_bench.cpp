// micro-bench-broker: publish -> deliver through a broker, one publisher and one subscriber,
// 64-byte messages: messages per second and p50/p99 latency (publish call to handler), against
// the anchor measured in the same run: a bare NATS client (two Asio connections to the same
// nats-server, pipelined PUBs on one, SUB on the other, no micro code at all).
//
//   micro-bench-broker [--count N] [--window W] [--reps R] [--seconds S] [--module-dir DIR]
//                      [--only LABEL]   (measure that module only, besides the anchor; to profile)
//
// Starts its own nats-server (127.0.0.1, a free port) and stops it. Every broker module in
// `broker_entries()` runs with the same loop; broker-http is added by itself when broker-http.so
// is in the module folder. Both sides keep at most W messages in flight (published, not yet
// delivered), so latency is that of a bounded pipeline rather than of an ever-growing queue.
// Each run stops after N messages or S seconds, whichever comes first.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "micro/broker.hpp"
#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"
#include "micro/host/stack.hpp"

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr size_t kPayload = 64;

struct Params {
  int count = 100000;
  int window = 1000;
  int reps = 3;
  int seconds = 20;
  std::string module_dir = MICRO_MODULE_OUTPUT_DIR;
  std::string only;  // a module label: measure that one only (the anchor still runs)
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// ---- nats-server -------------------------------------------------------------------------------

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class NatsServer {
 public:
  NatsServer() : port_(free_port()) {}
  ~NatsServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
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
    for (int i = 0; i < 1000; ++i) {
      asio::io_context io;
      tcp::socket s(io);
      boost::system::error_code ec;
      s.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)}, ec);
      if (!ec) return true;
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

// ---- one measured run --------------------------------------------------------------------------

// What both sides share: the in-flight window and the latencies the subscriber records.
class Run {
 public:
  explicit Run(const Params& p)
      : params_(p), deadline_(Clock::now() + std::chrono::seconds(p.seconds)) {
    latencies_.reserve(p.count);
  }

  // Subscriber side, one thread: the message stamped `sent_ns` arrived.
  void delivered(int64_t sent_ns) {
    const int64_t now = now_ns();
    latencies_.push_back(now - sent_ns);
    last_ns_ = now;
    delivered_.fetch_add(1, std::memory_order_release);
    if (waiting_.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> lock(mutex_);
      changed_.notify_all();
    }
  }
  // Publisher side: how many may be published now (0..window), waiting while the window is full.
  int room(int sent) {
    for (;;) {
      const int in_flight = sent - delivered_.load(std::memory_order_acquire);
      if (in_flight < params_.window) return params_.window - in_flight;
      if (Clock::now() > deadline_) return 0;
      std::unique_lock<std::mutex> lock(mutex_);
      waiting_.store(true, std::memory_order_release);
      changed_.wait_for(lock, 1ms, [&] {
        return sent - delivered_.load(std::memory_order_acquire) < params_.window;
      });
      waiting_.store(false, std::memory_order_release);
    }
  }
  bool wait_all(int count) {
    while (delivered_.load(std::memory_order_acquire) < count) {
      if (Clock::now() > deadline_) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }
  // The clock starts (the deadline counts from construction, setup included).
  void start() { first_ns_ = now_ns(); }
  bool over() const { return Clock::now() > deadline_; }
  int delivered_count() const { return delivered_.load(std::memory_order_acquire); }

  struct Result {
    int messages = 0;
    double per_second = 0;
    double p50_us = 0, p99_us = 0;
  };
  Result result() {
    Result r;
    r.messages = delivered_count();
    std::vector<int64_t> sorted(latencies_.begin(), latencies_.begin() + r.messages);
    std::sort(sorted.begin(), sorted.end());
    if (!sorted.empty()) {
      r.p50_us = sorted[sorted.size() / 2] / 1000.0;
      r.p99_us = sorted[std::min(sorted.size() - 1, sorted.size() * 99 / 100)] / 1000.0;
      r.per_second = r.messages / ((last_ns_ - first_ns_) / 1e9);
    }
    return r;
  }

 private:
  const Params params_;
  std::vector<int64_t> latencies_;
  std::atomic<int> delivered_{0};
  std::atomic<bool> waiting_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t first_ns_ = 0, last_ns_ = 0;
  const Clock::time_point deadline_;
};

void stamp(char* payload, int64_t ns) { std::memcpy(payload, &ns, sizeof(ns)); }
int64_t stamp_of(const char* payload) {
  int64_t ns;
  std::memcpy(&ns, payload, sizeof(ns));
  return ns;
}

// ---- the anchor: a bare NATS client ------------------------------------------------------------

// A blocking NATS connection: INFO read, CONNECT + PING written, PONG awaited.
struct BareConnection {
  asio::io_context io;
  tcp::socket socket{io};
  std::string input;

  explicit BareConnection(int port) {
    socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
    socket.set_option(tcp::no_delay(true));
    line();  // INFO
    asio::write(socket, asio::buffer(std::string(
                            "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n")));
  }
  void write(const std::string& bytes) { asio::write(socket, asio::buffer(bytes)); }
  void ping_pong() {
    write("PING\r\n");
    for (std::string l = line(); l != "PONG"; l = line())
      if (l.empty() && !socket.is_open()) return;
  }
  std::string line() {
    for (;;) {
      const size_t eol = input.find("\r\n");
      if (eol != std::string::npos) {
        std::string out = input.substr(0, eol);
        input.erase(0, eol + 2);
        return out;
      }
      if (!read_more()) return {};
    }
  }
  // False once the connection is closed (the run is over).
  bool read_more() {
    char buffer[256 * 1024];
    boost::system::error_code ec;
    const size_t n = socket.read_some(asio::buffer(buffer), ec);
    input.append(buffer, n);
    return !ec;
  }
};

Run::Result run_bare(int port, const Params& p) {
  Run run(p);
  BareConnection sub(port), pub(port);
  sub.write("SUB bench.bare 1\r\n");
  sub.ping_pong();  // the SUB is in place
  pub.ping_pong();
  std::thread reader([&] {
    // MSG bench.bare 1 64\r\n<64 bytes>\r\n, parsed as minimally as correctness allows.
    size_t pos = 0;
    while (run.delivered_count() < p.count && !run.over()) {
      const size_t eol = sub.input.find("\r\n", pos);
      if (eol == std::string::npos) {
        sub.input.erase(0, pos);
        pos = 0;
        if (!sub.read_more()) return;
        continue;
      }
      if (sub.input.compare(pos, 4, "MSG ") != 0) {  // PING or +OK
        if (sub.input.compare(pos, 4, "PING") == 0) sub.write("PONG\r\n");
        pos = eol + 2;
        continue;
      }
      const size_t size_at = sub.input.rfind(' ', eol) + 1;
      const size_t size = std::stoul(sub.input.substr(size_at, eol - size_at));
      while (sub.input.size() < eol + 2 + size + 2)
        if (!sub.read_more()) return;
      run.delivered(stamp_of(sub.input.data() + eol + 2));
      pos = eol + 2 + size + 2;
    }
  });
  run.start();
  std::string batch;
  char payload[kPayload];
  std::memset(payload, 'x', sizeof(payload));
  for (int sent = 0; sent < p.count;) {
    const int room = std::min({run.room(sent), p.count - sent, 256});
    if (room == 0) break;
    batch.clear();
    for (int i = 0; i < room; ++i) {
      stamp(payload, now_ns());
      batch += "PUB bench.bare 64\r\n";
      batch.append(payload, sizeof(payload));
      batch += "\r\n";
    }
    pub.write(batch);
    sent += room;
  }
  run.wait_all(p.count);
  const auto result = run.result();
  boost::system::error_code ignored;
  sub.socket.shutdown(tcp::socket::shutdown_both, ignored);
  reader.join();
  return result;
}

// ---- broker modules ----------------------------------------------------------------------------

// A broker to measure: its module name and the TOML (after [service]) of each of the two stacks.
struct BrokerEntry {
  std::string label;
  std::function<std::string(int nats_port, const std::string& scratch_dir)> tables;
};

std::vector<BrokerEntry> broker_entries(const Params& p) {
  std::vector<BrokerEntry> entries = {
      {"broker-nats",
       [](int port, const std::string&) {
         return "[broker]\nmodule = \"broker-nats\"\nservers = [\"nats://127.0.0.1:" +
                std::to_string(port) + "\"]\n";
       }},
  };
  if (std::filesystem::exists(p.module_dir + "/broker-http.so"))
    entries.push_back({"broker-http", [](int, const std::string& dir) {
                         return "[broker]\nmodule = \"broker-http\"\n"
                                "[registry]\nmodule = \"registry-file\"\npath = \"" +
                                dir + "\"\n";
                       }});
  return entries;
}

std::unique_ptr<micro::host::Stack> build(const std::string& tables, const Params& p) {
  const std::string toml = "[service]\nname = \"bench-broker\"\n" + tables;
  auto parsed = micro::host::parse_config(toml, "bench-broker.toml");
  for (const auto& e : parsed.errors) std::fprintf(stderr, "  %s\n", e.to_string().c_str());
  if (!parsed.ok()) return nullptr;
  micro::host::ModuleLoader loader({p.module_dir});
  auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_BROKER});
  for (const auto& e : built.errors) std::fprintf(stderr, "  %s\n", e.c_str());
  return std::move(built.stack);
}

// Returns false (having said why) when the broker cannot run.
bool run_module(const BrokerEntry& entry, int port, const Params& p, Run::Result& out) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("micro-bench-broker-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  auto sub_stack = build(entry.tables(port, dir), p);
  auto pub_stack = build(entry.tables(port, dir), p);
  if (!sub_stack || !pub_stack) return false;
  micro::Broker subscriber(sub_stack->broker()), publisher(pub_stack->broker());
  (void)subscriber.connect();
  (void)publisher.connect();

  const std::string topic = "bench." + entry.label;
  Run run(p);
  std::atomic<bool> measuring{false};
  std::atomic<int> warm{0};
  auto sub = subscriber.subscribe(topic, [&](std::string_view, const micro::Message& m) {
    if (!measuring.load(std::memory_order_acquire) || m.body.size() != kPayload) {
      ++warm;
      return micro::Error{};
    }
    run.delivered(stamp_of(m.body.data()));
    return micro::Error{};
  });
  if (!sub.ok()) {
    std::fprintf(stderr, "  %s: subscribe failed: %s\n", entry.label.c_str(),
                 sub.error.to_string().c_str());
    return false;
  }
  // Until one warm-up message arrives, the subscription may not be in place yet.
  const auto warm_until = Clock::now() + 10s;
  while (warm.load() == 0 && Clock::now() < warm_until) {
    (void)publisher.publish(topic, micro::Message{{}, "warm-up"});
    std::this_thread::sleep_for(20ms);
  }
  if (warm.load() == 0) {
    std::fprintf(stderr, "  %s: no warm-up message arrived in 10 s\n", entry.label.c_str());
    return false;
  }
  std::this_thread::sleep_for(50ms);  // late warm-ups drain
  measuring.store(true, std::memory_order_release);

  std::atomic<int> failed{0};
  micro::Message message{{}, std::string(kPayload, 'x')};
  run.start();
  for (int sent = 0; sent < p.count;) {
    int room = std::min(run.room(sent), p.count - sent);
    if (room == 0) break;
    for (; room > 0; --room, ++sent) {
      stamp(message.body.data(), now_ns());
      publisher.publish(topic, message, [&failed](const micro::Error& e) {
        if (!e.ok()) ++failed;
      });
    }
  }
  run.wait_all(p.count);
  out = run.result();
  sub.value.stop();
  if (failed.load() != 0)
    std::fprintf(stderr, "  %s: %d publishes failed\n", entry.label.c_str(), failed.load());
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Params p;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--count") p.count = std::stoi(argv[i + 1]);
    else if (flag == "--window") p.window = std::stoi(argv[i + 1]);
    else if (flag == "--reps") p.reps = std::stoi(argv[i + 1]);
    else if (flag == "--seconds") p.seconds = std::stoi(argv[i + 1]);
    else if (flag == "--module-dir") p.module_dir = argv[i + 1];
    else if (flag == "--only") p.only = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  micro::host::set_log_level("warn");
  NatsServer server;
  if (!server.start()) {
    std::fprintf(stderr, "nats-server did not start (scripts/install-deps installs it)\n");
    return 1;
  }
  auto entries = broker_entries(p);
  if (!p.only.empty())
    entries.erase(std::remove_if(entries.begin(), entries.end(),
                                 [&](const BrokerEntry& e) { return e.label != p.only; }),
                  entries.end());
  std::printf("1 publisher -> 1 subscriber through nats-server on 127.0.0.1:%d; %zu-byte messages, "
              "%d per run (or %d s), at most %d in flight, %d repetitions\n",
              server.port(), kPayload, p.count, p.seconds, p.window, p.reps);
  std::printf("%-14s %4s %10s %12s %10s %10s\n", "", "rep", "delivered", "msgs/s", "p50 us",
              "p99 us");

  struct Series {
    std::string label;
    std::vector<double> rate, p50, p99;
  };
  std::vector<Series> series(entries.size() + 1);
  series[0].label = "bare NATS";
  for (size_t e = 0; e < entries.size(); ++e) series[e + 1].label = entries[e].label;
  auto record = [&](Series& s, int rep, const Run::Result& r) {
    std::printf("%-14s %4d %10d %12.0f %10.1f %10.1f\n", s.label.c_str(), rep, r.messages,
                r.per_second, r.p50_us, r.p99_us);
    std::fflush(stdout);
    s.rate.push_back(r.per_second);
    s.p50.push_back(r.p50_us);
    s.p99.push_back(r.p99_us);
  };
  for (int rep = 1; rep <= p.reps; ++rep) {
    record(series[0], rep, run_bare(server.port(), p));
    for (size_t e = 0; e < entries.size(); ++e) {
      Run::Result r;
      if (run_module(entries[e], server.port(), p, r)) record(series[e + 1], rep, r);
    }
  }

  // Two ratios: of the medians, and the median of each repetition's ratio (a module run and the
  // bare run just before it share the machine's mood).
  std::printf("\nmedian over %d repetitions:\n%-14s %12s %10s %10s %12s %14s\n", p.reps, "",
              "msgs/s", "p50 us", "p99 us", "rate / bare", "per-rep ratio");
  const double anchor = median(series[0].rate);
  for (const auto& s : series) {
    if (s.rate.empty()) continue;
    std::vector<double> ratios;
    for (size_t i = 0; i < s.rate.size() && i < series[0].rate.size(); ++i)
      if (series[0].rate[i] > 0) ratios.push_back(s.rate[i] / series[0].rate[i]);
    std::printf("%-14s %12.0f %10.1f %10.1f %12.2f %14.2f\n", s.label.c_str(), median(s.rate),
                median(s.p50), median(s.p99), anchor > 0 ? median(s.rate) / anchor : 0,
                median(ratios));
  }
  std::printf("(target from the issue: broker-http >= 0.50 x bare NATS)\n");
  return 0;
}
