// The RPC stack across processes: greeter servers started with `micro run` (the real command, no
// user main()), found through a shared registry-file directory, called from this process.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include "micro/module.hpp"
#include "micro/testing/stack.hpp"
#include "micro/testing/wait.hpp"

namespace {

using namespace std::chrono_literals;

// The [transport] table of the servers and of the client: plaintext HTTP/1.1 (the default), or
// plaintext HTTP/2 (h2c), where a killed server takes its two HTTP/2 connections with it.
std::string transport_table(const std::string& carrier) {
  return carrier == "h2c" ? "[transport]\nh2c = true\n" : "";
}

class Cluster : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/micro-cluster-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_ = dir_ + "/greeter.toml";
    std::ofstream(config_) << "[service]\nname = \"greeter\"\naddress = \"127.0.0.1:0\"\n"
                              "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ +
                                  "/registry\"\n[handler]\nmodule = \"handler-greeter\"\n"
                                  "[log]\nlevel = \"warn\"\n" + transport_table(GetParam());
    client_stack_ = micro::testing::require_stack(
        "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ + "/registry\"\n"
        "[selector]\nmodule = \"selector-default\"\nstrategy = \"round_robin\"\n"
        "blacklist_ms = 60000\n" + transport_table(GetParam()),
        {MICRO_KIND_CLIENT});
    ASSERT_NE(client_stack_, nullptr);
    client_ = micro::Client(client_stack_->client());
  }

  void TearDown() override {
    for (pid_t pid : servers_) {
      kill(pid, SIGTERM);
      int status = 0;
      waitpid(pid, &status, 0);
    }
    client_stack_.reset();
    std::system(("rm -rf " + dir_).c_str());
  }

  // Starts `micro run` on the config; returns its pid.
  pid_t start_server() {
    const std::string micro = std::string(std::getenv("MICRO_BINARY_DIR")) + "/bin/micro";
    const pid_t pid = fork();
    if (pid == 0) {
      execl(micro.c_str(), micro.c_str(), "run", config_.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    servers_.push_back(pid);
    return pid;
  }

  // Waits until the registry lists `count` greeter nodes.
  bool wait_for_nodes(size_t count) {
    micro::Registry registry(client_stack_->registry());
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      auto got = registry.get_service("greeter");
      size_t nodes = 0;
      for (const auto& s : got.value) nodes += s.nodes.size();
      if (nodes >= count) return true;
      std::this_thread::sleep_for(20ms);  // polling another process's startup, bounded
    }
    return false;
  }

  micro::Result<micro::Message> hello(const std::string& name, bool idempotent) {
    micro::Request r;
    r.service = "greeter";
    r.endpoint = "Greeter.Hello";
    r.content_type = "application/json";
    r.body = R"({"name":")" + name + R"("})";
    micro::CallOptions o;
    o.idempotent = idempotent;
    o.retries = 2;
    return client_.call(r, o);
  }

  std::string dir_, config_;
  std::vector<pid_t> servers_;
  std::unique_ptr<micro::host::Stack> client_stack_;
  micro::Client client_;
};

TEST_P(Cluster, RoundRobinSpreadsCallsEvenlyOverThreeServers) {
  for (int i = 0; i < 3; ++i) start_server();
  ASSERT_TRUE(wait_for_nodes(3));
  std::map<std::string, int> by_node;
  constexpr int kCalls = 10000;
  for (int i = 0; i < kCalls; ++i) {
    auto r = hello("n" + std::to_string(i), false);
    ASSERT_TRUE(r.ok()) << r.error.to_string() << " at call " << i;
    ASSERT_EQ(r.value.body, R"({"msg":"Hello n)" + std::to_string(i) + R"("})");
    if (i == 0) {  // the carrier asked for is the one used (plaintext HTTP/1.1 names none)
      EXPECT_EQ(r.value.header["micro-transport-protocol"], GetParam() == "h2c" ? "h2c" : "");
    }
    ++by_node[r.value.header["micro-node"]];
  }
  ASSERT_EQ(by_node.size(), 3u);
  for (const auto& [node, count] : by_node) {
    EXPECT_NEAR(count, kCalls / 3.0, kCalls / 3.0 * 0.05) << node;
  }
}

TEST_P(Cluster, KilledServerCostsNoIdempotentCall) {
  for (int i = 0; i < 3; ++i) start_server();
  ASSERT_TRUE(wait_for_nodes(3));
  int failures = 0;
  std::map<std::string, int> by_node;
  for (int i = 0; i < 6000; ++i) {
    if (i == 2000) {
      kill(servers_[0], SIGKILL);
      waitpid(servers_[0], nullptr, 0);
      servers_.erase(servers_.begin());
    }
    auto r = hello("k" + std::to_string(i), true);
    if (!r.ok()) {
      ++failures;
      ADD_FAILURE() << r.error.to_string() << " at call " << i;
    } else if (i >= 3000) {
      ++by_node[r.value.header["micro-node"]];
    }
  }
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(by_node.size(), 2u) << "after the kill, the two live servers answer";
}

TEST_P(Cluster, StoppedServerDeregistersAndIsNoLongerCalled) {
  start_server();
  const pid_t second = start_server();
  ASSERT_TRUE(wait_for_nodes(2));
  kill(second, SIGTERM);
  int status = 0;
  waitpid(second, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "micro run stops cleanly";
  servers_.pop_back();
  micro::Registry registry(client_stack_->registry());
  auto got = registry.get_service("greeter");
  ASSERT_TRUE(got.ok());
  size_t nodes = 0;
  for (const auto& s : got.value) nodes += s.nodes.size();
  EXPECT_EQ(nodes, 1u);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(hello("s", false).ok()) << i;
}

INSTANTIATE_TEST_SUITE_P(Carriers, Cluster, ::testing::Values("http1", "h2c"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
