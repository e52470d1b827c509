// registry-etcd named in TOML, across processes: a greeter started with `micro run` registers in
// a real etcd, `micro list` and `micro get` (other processes) find it, and once the greeter is
// killed its registration lapses with its lease.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "etcd_process.hpp"

namespace {

using namespace std::chrono_literals;

[[maybe_unused]] ::testing::Environment* const kEtcd =
    ::testing::AddGlobalTestEnvironment(new micro::testing::SharedEtcdEnvironment);

std::string micro_binary() { return std::string(std::getenv("MICRO_BINARY_DIR")) + "/bin/micro"; }

// Runs `micro --config CONFIG ARGS`; returns its exit code and standard output.
std::pair<int, std::string> run_micro(const std::string& config, const std::string& args) {
  const std::string command = micro_binary() + " --config " + config + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, {}};
  std::string out;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// Runs `micro ARGS` until `done(exit code, output)` holds; false after `timeout`.
template <class Done>
bool until(const std::string& config, const std::string& args, Done done,
           std::chrono::seconds timeout, std::string* last = nullptr) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    auto [code, out] = run_micro(config, args);
    if (last != nullptr) *last = out;
    if (done(code, out)) return true;
    std::this_thread::sleep_for(100ms);  // bounded poll of other processes
  }
  return false;
}

class RegistryEtcdCli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/micro-etcd-cli-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_ = dir_ + "/greeter.toml";
    std::ofstream(config_) << "[service]\nname = \"greeter\"\naddress = \"127.0.0.1:0\"\n"
                              "[registry]\nmodule = \"registry-etcd\"\naddress = [\""
                           << micro::testing::shared_etcd().url()
                           << "\"]\nprefix = \"/cli/\"\n"
                              "[server]\nregister_ttl_ms = 1000\nregister_interval_ms = 300\n"
                              "[handler]\nmodule = \"handler-greeter\"\n[log]\nlevel = \"warn\"\n";
  }
  void TearDown() override {
    if (server_ > 0) {
      ::kill(server_, SIGKILL);
      ::waitpid(server_, nullptr, 0);
    }
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  std::string dir_, config_;
  pid_t server_ = -1;
};

TEST_F(RegistryEtcdCli, MicroListAndGetFindAServiceRunningElsewhereUntilItDies) {
  const std::string micro = micro_binary();
  server_ = ::fork();
  if (server_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::execl(micro.c_str(), micro.c_str(), "run", config_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string out;
  EXPECT_TRUE(until(
      config_, "list", [](int code, const std::string& o) { return code == 0 && o == "greeter\n"; },
      20s, &out))
      << out;
  EXPECT_TRUE(until(
      config_, "get greeter",
      [](int code, const std::string& o) {
        return code == 0 && o.find("node ") != std::string::npos &&
               o.find("Greeter.Hello") != std::string::npos;
      },
      5s, &out))
      << out;

  ::kill(server_, SIGKILL);  // no deregistration: only the lease can remove it
  ::waitpid(server_, nullptr, 0);
  server_ = -1;
  EXPECT_TRUE(until(
      config_, "get greeter",
      [](int code, const std::string& o) {
        return code == 1 && o.find("not registered") != std::string::npos;
      },
      10s, &out))
      << out;
}

}  // namespace
