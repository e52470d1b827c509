// micro-bench-mdns [N]: latency of registry-mdns as a watcher in another registry instance (its
// own socket, so every event crosses the kernel's multicast loopback) sees it, N times each
// (default 50), with the median, p10, p90 and max in ms:
//   register   -> create event        deregister -> delete event (goodbye)
//   stop (module destroyed with a node registered) -> delete event (goodbye on clean stop)
// The anchor, measured in the same run: one bare UDP datagram sent to 224.0.0.251 and received
// by a thread blocked on another socket joined to the group; and registry-memory's register ->
// event in-process (no network).
// Run it inside a private network namespace: scripts/netns-run build/release/bin/micro-bench-mdns
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"
#include "micro/registry.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::unique_ptr<micro::host::Stack> stack(const std::string& registry_table) {
  const std::string toml = "[service]\nname = \"bench\"\n[modules]\npath = [\"" +
                           std::string(MICRO_MODULE_OUTPUT_DIR) + "\"]\n[registry]\n" +
                           registry_table;
  auto parsed = micro::host::parse_config(toml, "bench.toml");
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", parsed.errors.front().to_string().c_str());
    std::exit(1);
  }
  micro::host::ModuleLoader loader(parsed.config.module_paths);
  auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_REGISTRY});
  if (!built.ok()) {
    std::fprintf(stderr, "%s\n", built.errors.front().c_str());
    std::exit(1);
  }
  return std::move(built.stack);
}

// Waits for the watcher's next event about `node` of `type`.
class Events {
 public:
  void push(const micro::RegistryEvent& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& n : e.service.nodes) seen_.push_back({e.type, n.id, Clock::now()});
    cv_.notify_all();
  }
  std::optional<Clock::time_point> wait(micro::RegistryEventType type, const std::string& node) {
    std::unique_lock<std::mutex> lock(mutex_);
    std::optional<Clock::time_point> at;
    cv_.wait_for(lock, std::chrono::seconds(5), [&] {
      for (const auto& s : seen_)
        if (s.type == type && s.node == node) at = s.at;
      return at.has_value();
    });
    return at;
  }

 private:
  struct Seen {
    micro::RegistryEventType type;
    std::string node;
    Clock::time_point at;
  };
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
};

void report(const char* what, std::vector<double> v, double anchor) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[size_t(q * double(v.size() - 1) + 0.5)]; };
  std::printf("  %-40s %8.3f %8.3f %8.3f %8.3f", what, at(0.5), at(0.1), at(0.9), v.back());
  if (anchor > 0) std::printf("  %8.2f", at(0.5) / anchor);
  std::printf("\n");
}

double multicast_one_way(int n, std::vector<double>* out) {
  const int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
  int one = 1;
  setsockopt(rx, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(rx, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(5353);
  if (bind(rx, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::perror("bind");
  ip_mreq join{};
  join.imr_multiaddr.s_addr = inet_addr("224.0.0.251");
  setsockopt(rx, IPPROTO_IP, IP_ADD_MEMBERSHIP, &join, sizeof join);
  addr.sin_addr.s_addr = inet_addr("224.0.0.251");
  // Received on another thread, blocked in recv(): a wake-up, as the registry's io thread has.
  std::vector<Clock::time_point> received;
  std::thread receiver([&] {
    char in[600];
    for (int i = 0; i < n; ++i) {
      recv(rx, in, sizeof in, 0);
      received.push_back(Clock::now());
    }
  });
  char buffer[600] = {};
  std::vector<Clock::time_point> sent;
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the receiver block again
    sent.push_back(Clock::now());
    sendto(tx, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  receiver.join();
  for (int i = 0; i < n; ++i) out->push_back(ms(received[size_t(i)] - sent[size_t(i)]));
  close(rx);
  close(tx);
  auto v = *out;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

micro::Service node_of(const std::string& id) {
  micro::Service s;
  s.name = "bench";
  s.version = "1.0.0";
  s.metadata = {{"team", "core"}};
  s.endpoints = {{"Bench.Call", "bench.Request", "bench.Response", {}}};
  s.nodes = {{id, "127.0.0.1:9000", {{"server", "rpc"}}}};
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  std::vector<double> raw, reg, dereg, stop, memory;
  const double anchor = multicast_one_way(n, &raw);

  {  // registry-memory, in-process: the registry API's own cost
    auto s = stack("module = \"registry-memory\"\n");
    micro::Registry r(s->registry());
    Events events;
    auto w = r.watch("bench", [&](const micro::RegistryEvent& e) { events.push(e); });
    for (int i = 0; i < n; ++i) {
      const auto node = node_of("memory-" + std::to_string(i));
      const auto start = Clock::now();
      r.register_service(node);
      if (auto at = events.wait(micro::RegistryEventType::create, node.nodes[0].id))
        memory.push_back(ms(*at - start));
      r.deregister_service(node);
    }
  }

  const std::string mdns = "module = \"registry-mdns\"\nquery_timeout_ms = 200\n";
  auto watcher_stack = stack(mdns);
  micro::Registry watcher(watcher_stack->registry());
  Events events;
  auto w = watcher.watch("bench", [&](const micro::RegistryEvent& e) { events.push(e); });
  auto announcer_stack = stack(mdns);
  micro::Registry announcer(announcer_stack->registry());
  int lost = 0;
  for (int i = 0; i < n; ++i) {
    const auto node = node_of("node-" + std::to_string(i));
    const auto& id = node.nodes[0].id;
    auto start = Clock::now();
    announcer.register_service(node);
    if (auto at = events.wait(micro::RegistryEventType::create, id))
      reg.push_back(ms(*at - start));
    else
      ++lost;
    start = Clock::now();
    announcer.deregister_service(node);
    if (auto at = events.wait(micro::RegistryEventType::remove, id))
      dereg.push_back(ms(*at - start));
    else
      ++lost;
  }
  for (int i = 0; i < n; ++i) {
    auto short_lived = stack(mdns);
    micro::Registry r(short_lived->registry());
    const auto node = node_of("stopped-" + std::to_string(i));
    r.register_service(node);
    if (!events.wait(micro::RegistryEventType::create, node.nodes[0].id)) ++lost;
    const auto start = Clock::now();
    short_lived.reset();  // module destroyed: goodbye for what is still registered
    if (auto at = events.wait(micro::RegistryEventType::remove, node.nodes[0].id))
      stop.push_back(ms(*at - start));
    else
      ++lost;
  }

  std::printf("registry-mdns latency, %d runs each, ms (ratio: median / bare multicast median)\n",
              n);
  std::printf("  %-40s %8s %8s %8s %8s  %8s\n", "", "median", "p10", "p90", "max", "ratio");
  report("bare multicast datagram to another thread", raw, anchor);
  report("registry-memory register -> event", memory, anchor);
  report("mdns register -> watcher create", reg, anchor);
  report("mdns deregister -> watcher delete", dereg, anchor);
  report("mdns stop (destroy) -> watcher delete", stop, anchor);
  if (lost != 0) std::printf("  %d events never came (5 s)\n", lost);
  return lost == 0 ? 0 : 1;
}
