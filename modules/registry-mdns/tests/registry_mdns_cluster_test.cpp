// registry-mdns across processes, as users run it: greeter servers started with `micro run` and
// no [registry] table (mDNS is the default), found by this process, by `micro get`, by dig, and
// gone on SIGTERM (goodbye) or SIGKILL (TTL). Runs inside the private network namespace its
// ctest entry creates (scripts/netns-run).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "foreign_packet.hpp"
#include "micro/registry.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using micro::RegistryEvent;
using micro::RegistryEventType;

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Bytes waiting in the receive queues of the UDP sockets bound to port 5353 in this network
// namespace (the registries' own; /proc/net/udp lists each socket's rx_queue in hex).
size_t queued_mdns_bytes() {
  std::ifstream table("/proc/net/udp");
  std::string line;
  std::getline(table, line);  // the header
  size_t queued = 0;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues;
    fields >> slot >> local >> remote >> state >> queues;
    if (local.size() < 5 || local.substr(local.size() - 5) != ":14E9") continue;  // 5353
    const auto colon = queues.find(':');
    if (colon != std::string::npos) queued += std::stoul(queues.substr(colon + 1), nullptr, 16);
  }
  return queued;
}

// Runs a shell command; returns its standard output with every run of blanks made one space.
std::string capture(const std::string& command) {
  std::string raw, out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buffer;
  size_t n = 0;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) raw.append(buffer.data(), n);
  pclose(pipe);
  for (char c : raw) {
    if (c == '\t') c = ' ';
    if (c != ' ' || out.empty() || out.back() != ' ') out.push_back(c);
  }
  return out;
}

class MdnsCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/micro-mdns-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    micro_ = std::string(std::getenv("MICRO_BINARY_DIR")) + "/bin/micro";
  }

  void TearDown() override {
    watch_.stop();
    stacks_.clear();
    for (pid_t pid : servers_) {
      kill(pid, SIGKILL);
      int status = 0;
      waitpid(pid, &status, 0);
    }
    std::system(("rm -rf " + dir_).c_str());
  }

  // Starts `micro run` on a greeter config with no [registry] table; `extra` is appended.
  pid_t start_greeter(const std::string& extra = "") {
    const std::string config = dir_ + "/greeter" + std::to_string(servers_.size()) + ".toml";
    std::ofstream(config) << "[service]\nname = \"greeter\"\nversion = \"1.0.0\"\n"
                             "address = \"127.0.0.1:0\"\nmetadata = { team = \"core\" }\n"
                             "[handler]\nmodule = \"handler-greeter\"\n[log]\nlevel = \"warn\"\n"
                          << extra;
    const pid_t pid = fork();
    if (pid == 0) {
      execl(micro_.c_str(), micro_.c_str(), "run", config.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    servers_.push_back(pid);
    return pid;
  }

  micro::Registry registry(const std::string& options = "query_timeout_ms = 300\n") {
    stacks_.push_back(micro::testing::require_stack(
        "[registry]\nmodule = \"registry-mdns\"\n" + options, {MICRO_KIND_REGISTRY}));
    return micro::Registry(stacks_.back()->registry());
  }

  // Watches "greeter" on a registry of its own.
  void watch_greeter() {
    auto started = registry().watch("greeter", [this](const RegistryEvent& e) {
      events_.push({e, Clock::now()});
    });
    ASSERT_TRUE(started.ok()) << started.error.to_string();
    watch_ = std::move(started.value);
  }

  struct Seen {
    RegistryEvent event;
    Clock::time_point at;
  };
  // Waits for an event of `type` for a node other than those in `except`; returns its node id
  // and when it came, or nothing.
  std::optional<std::pair<std::string, Clock::time_point>> wait_event(
      RegistryEventType type, std::chrono::milliseconds timeout,
      const std::vector<std::string>& except = {}, const std::string& only = "") {
    std::optional<std::pair<std::string, Clock::time_point>> found;
    events_.wait_for(
        [&](const std::vector<Seen>& all) {
          for (const auto& s : all)
            for (const auto& n : s.event.service.nodes)
              if (s.event.type == type && (only.empty() || n.id == only) &&
                  std::find(except.begin(), except.end(), n.id) == except.end()) {
                found = {{n.id, s.at}};
                return true;
              }
          return false;
        },
        timeout);
    return found;
  }

  std::string dir_, micro_;
  std::vector<pid_t> servers_;
  std::vector<std::unique_ptr<micro::host::Stack>> stacks_;
  micro::testing::Collector<Seen> events_;
  micro::RegistryWatch watch_;
};

TEST_F(MdnsCluster, AThirdProcessListsTwoServersWithinOneQueryTimeoutAndMicroGetShowsThem) {
  watch_greeter();
  start_greeter();
  start_greeter();
  auto first = wait_event(RegistryEventType::create, 20s);
  ASSERT_TRUE(first) << "the first greeter never announced itself";
  auto second = wait_event(RegistryEventType::update, 20s, {first->first});
  ASSERT_TRUE(second) << "the second greeter never announced itself";

  // A registry that has seen nothing yet asks once and collects for one query timeout.
  micro::Registry fresh = registry("query_timeout_ms = 500\n");
  const auto start = Clock::now();
  auto listed = fresh.list_services();
  const auto took = ms_since(start);
  ASSERT_TRUE(listed.ok()) << listed.error.to_string();
  std::vector<std::string> ids;
  for (const auto& s : listed.value)
    if (s.name == "greeter")
      for (const auto& n : s.nodes) ids.push_back(n.id);
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> want{first->first, second->first};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(ids, want);
  EXPECT_LT(took, 500 + 1500) << "list took " << took << " ms";
  // Asked again, the cache answers at once.
  const auto again = Clock::now();
  auto cached = fresh.list_services();
  EXPECT_LT(ms_since(again), 250);
  EXPECT_EQ(cached.value.size(), listed.value.size());

  // The CLI with no config at all uses registry-mdns.
  const std::string got = capture("MICRO_CONFIG= " + micro_ + " get greeter 2>&1");
  EXPECT_NE(got.find("metadata team=core"), std::string::npos) << got;
  EXPECT_NE(got.find("endpoint Greeter.Hello(greeter.Request) returns (greeter.Response)"),
            std::string::npos)
      << got;
  EXPECT_NE(got.find(first->first), std::string::npos) << got;
  EXPECT_NE(got.find(second->first), std::string::npos) << got;
  EXPECT_NE(got.find("server=rpc"), std::string::npos) << got;
  const std::string list = capture("MICRO_CONFIG= " + micro_ + " list 2>&1");
  EXPECT_NE(list.find("greeter"), std::string::npos) << list;
}

TEST_F(MdnsCluster, DigSeesTheServiceTypesAndOneServicesRecords) {
  start_greeter();
  // dig's query comes from a port other than 5353: a legacy unicast query (RFC 6762 §6.7).
  // BIND 9.18's dig gets no answer to a query sent to 224.0.0.251 (its socket is connected to
  // the address it asked; see the README), so it asks the responder's address on port 5353.
  const std::string dig = "dig +time=1 +tries=1 -p 5353 @127.0.0.1 ";
  std::string types;
  for (int i = 0; i < 100 && types.find("_greeter._tcp.local.") == std::string::npos; ++i) {
    types = capture(dig + "_services._dns-sd._udp.local PTR 2>&1");
    if (types.find("_greeter._tcp.local.") == std::string::npos) std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(types.find("_services._dns-sd._udp.local. 10 IN PTR _greeter._tcp.local."),
            std::string::npos)
      << types;
  const std::string records = capture(dig + "_greeter._tcp.local PTR 2>&1");
  EXPECT_NE(records.find("ANSWER: 1"), std::string::npos) << records;
  EXPECT_NE(records.find("._greeter._tcp.local. 10 IN SRV 0 0 "), std::string::npos) << records;
  EXPECT_NE(records.find("IN TXT \"txtvers=1\""), std::string::npos) << records;
  EXPECT_NE(records.find("\"service=greeter\" \"version=1.0.0\""), std::string::npos) << records;
  EXPECT_NE(records.find("ip-127-0-0-1.local. 10 IN A 127.0.0.1"), std::string::npos) << records;
  // The query id comes back and the question is echoed.
  EXPECT_NE(records.find(";_greeter._tcp.local. IN PTR"), std::string::npos) << records;
}

TEST_F(MdnsCluster, AWatcherSeesANewNodeWithin250ms) {
  watch_greeter();
  micro::Registry other = registry();  // its own socket: the announcement crosses the network
  micro::Service service;
  service.name = "greeter";
  service.version = "1.0.0";
  service.nodes = {{"greeter-watched", "127.0.0.1:9000", {}}};
  const auto start = Clock::now();
  ASSERT_TRUE(other.register_service(service).ok());
  auto seen = wait_event(RegistryEventType::create, 5s, {}, "greeter-watched");
  ASSERT_TRUE(seen);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(seen->second - start);
  EXPECT_LE(took.count(), 250);
}

TEST_F(MdnsCluster, ASigtermStoppedServerDisappearsWithin250ms) {
  watch_greeter();
  const pid_t pid = start_greeter();
  auto created = wait_event(RegistryEventType::create, 20s);
  ASSERT_TRUE(created);
  const auto stop = Clock::now();
  kill(pid, SIGTERM);
  auto gone = wait_event(RegistryEventType::remove, 5s, {}, created->first);
  ASSERT_TRUE(gone) << "no goodbye";
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(gone->second - stop);
  EXPECT_LE(took.count(), 250);
}

TEST_F(MdnsCluster, ASigkilledServerDisappearsWhenItsTtlLapses) {
  watch_greeter();
  const pid_t pid = start_greeter("[server]\nregister_ttl_ms = 1000\nregister_interval_ms = 300\n");
  auto created = wait_event(RegistryEventType::create, 20s);
  ASSERT_TRUE(created);
  const auto killed = Clock::now();
  kill(pid, SIGKILL);
  // Records carry a 1 s TTL; nothing says goodbye.
  auto gone = wait_event(RegistryEventType::remove, 5s, {}, created->first);
  ASSERT_TRUE(gone);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(gone->second - killed);
  EXPECT_LE(took.count(), 1000 + 1000);
}

TEST_F(MdnsCluster, IpvSixOnlyRegistriesFindEachOtherOnFf02fb) {
  // IPv4 off: whatever arrives came over [ff02::fb]:5353 on mdns0 (NETNS_IPV6=1 in ctest).
  const std::string v6 =
      "ipv4 = false\nipv6 = true\nipv6_interface = \"mdns0\"\n"
      "query_timeout_ms = 300\n";
  micro::Registry reader = registry(v6);
  micro::Registry announcer = registry(v6);
  micro::Service service;
  service.name = "greeter6";
  service.version = "1.0.0";
  service.nodes = {{"greeter6-1", "[::1]:9000", {{"family", "v6"}}}};
  ASSERT_TRUE(announcer.register_service(service).ok());
  auto got = reader.get_service("greeter6");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0], service);
}

TEST_F(MdnsCluster, AForeignAnnouncementIsReadAsANode) {
  micro::Registry reader = registry();
  // Sent as another responder would: from port 5353 to the group.
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(5353);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local), 0);
  sockaddr_in group = local;
  group.sin_addr.s_addr = inet_addr("224.0.0.251");
  const auto packet = mdns_test::printer_announcement();
  ASSERT_EQ(sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&group),
                   sizeof group),
            ssize_t(packet.size()));
  close(fd);

  auto got = reader.get_service("ipp");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  ASSERT_EQ(got.value[0].nodes.size(), 1u);
  const auto& node = got.value[0].nodes[0];
  EXPECT_EQ(node.id, "My Printer");
  EXPECT_EQ(node.address, "192.0.2.7:631");
  EXPECT_EQ(node.metadata.at("rp"), "queues/main");
}

TEST_F(MdnsCluster, MalformedPacketsAndFloodsLeaveTheRegistryWorking) {
  micro::Registry reader = registry("query_timeout_ms = 200\ncache_limit = 64\n");
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(5353);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local), 0);
  sockaddr_in group = local;
  group.sin_addr.s_addr = inet_addr("224.0.0.251");
  auto send = [&](const std::vector<uint8_t>& p) {
    sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&group), sizeof group);
  };
  const auto good = mdns_test::printer_announcement();
  for (size_t n = 0; n < good.size(); ++n) send({good.begin(), good.begin() + long(n)});
  send({0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1});  // pointer loop
  // A flood: 200 announcements of distinct printers, more than the cache keeps. Paced a little,
  // so that the kernel's receive buffer (not the registry) is not what drops them.
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    auto p = good;
    p[40] = uint8_t('A' + i % 26);  // "My Printer" -> "Ay Printer", ... within the PTR rdata
    p[41] = uint8_t('a' + i / 26);
    send(p);
  }
  close(fd);
  // The flood sits in the reader's socket until its io thread has parsed it all; on a loaded
  // machine (under ASan) that can take longer than the lookup's 200 ms window, which answers
  // from the cache as it is then. Wait (bounded) until the reader has taken every datagram in.
  const auto drained_by = Clock::now() + 20s;
  while (queued_mdns_bytes() != 0 && Clock::now() < drained_by) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(queued_mdns_bytes(), 0u) << "the reader did not read the flood in 20 s";
  // Still answers: the printers it had room for, no more than cache_limit.
  auto listed = reader.get_service("ipp");
  ASSERT_TRUE(listed.ok()) << listed.error.to_string();
  size_t nodes = 0;
  for (const auto& s : listed.value) nodes += s.nodes.size();
  EXPECT_EQ(nodes, 64u);
}

}  // namespace
