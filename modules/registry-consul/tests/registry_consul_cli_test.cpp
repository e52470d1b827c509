// `micro list` and `micro get` with registry-consul named in a TOML file, against the Consul API
// double run as a program of its own (consul_double), as a user would run them against Consul.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "micro/testing/child_process.hpp"
#include "micro/registry.hpp"
#include "micro/testing/stack.hpp"

using micro::testing::ChildProcess;

namespace {

class MicroCliAgainstConsul : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/registry-consul-cli-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    consul_ = std::make_unique<ChildProcess>(std::vector<std::string>{CONSUL_DOUBLE});
    ASSERT_TRUE(consul_->read_until("\n")) << consul_->output();
    const std::string said = consul_->output();
    const auto at = said.find("listening on ");
    ASSERT_NE(at, std::string::npos) << said;
    address_ = said.substr(at + 13, said.find('\n', at) - at - 13);
    config_ = dir_ + "/micro.toml";
    std::ofstream(config_) << "[service]\nname = \"cli\"\n"
                           << "[modules]\npath = [\"" << micro::testing::module_dir() << "\"]\n"
                           << "[registry]\nmodule = \"registry-consul\"\naddress = \"" << address_
                           << "\"\ntimeout_ms = 2000\n";
  }
  void TearDown() override {
    consul_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Runs `micro --config FILE args...`; returns its exit status, its stdout in `out`.
  int micro(const std::vector<std::string>& args, std::string* out) {
    std::vector<std::string> argv = {MICRO_CLI, "--config", config_};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess cli(argv);
    const int status = cli.wait_exit();
    *out = cli.output();
    return status;
  }

  std::string dir_, address_, config_;
  std::unique_ptr<ChildProcess> consul_;
};

TEST_F(MicroCliAgainstConsul, ListAndGetShowWhatWasRegistered) {
  auto stack = micro::testing::require_stack(
      "[registry]\nmodule = \"registry-consul\"\naddress = \"" + address_ + "\"\n",
      {MICRO_KIND_REGISTRY});
  ASSERT_NE(stack, nullptr);
  micro::Registry registry(stack->registry());
  micro::Service service{"greeter",
                         "1.2.3",
                         {{"team", "core"}},
                         {{"Greeter.Hello", "greeter.Request", "greeter.Response", {}}},
                         {{"greeter-node-1", "127.0.0.1:7311", {{"zone", "eu"}}}}};
  ASSERT_TRUE(registry.register_service(service).ok());

  std::string out;
  EXPECT_EQ(micro({"list"}, &out), 0) << out;
  EXPECT_NE(out.find("greeter\n"), std::string::npos) << out;

  EXPECT_EQ(micro({"get", "greeter"}, &out), 0) << out;
  EXPECT_NE(out.find("version  1.2.3"), std::string::npos) << out;
  EXPECT_NE(out.find("metadata team=core"), std::string::npos) << out;
  EXPECT_NE(out.find("greeter-node-1  127.0.0.1:7311  zone=eu"), std::string::npos) << out;
  EXPECT_NE(out.find("endpoint Greeter.Hello(greeter.Request) returns (greeter.Response)"),
            std::string::npos)
      << out;

  EXPECT_EQ(micro({"get", "nobody"}, &out), 1) << out;

  ASSERT_TRUE(registry.deregister_service(service).ok());
  EXPECT_EQ(micro({"get", "greeter"}, &out), 1) << out;
}

TEST_F(MicroCliAgainstConsul, ListFailsCleanlyWhenTheAgentIsGone) {
  consul_->kill();
  std::string out;
  EXPECT_EQ(micro({"list"}, &out), 1) << out;
}

}  // namespace
