// registry-file runs the registry conformance suite (watching with inotify, and polling), then
// what sharing a folder means: two instances, and other processes, see each other's nodes and
// watch events; a killed process's node lapses with its TTL; junk in the folder is ignored.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "micro/testing/child_process.hpp"
#include "micro/testing/files.hpp"
#include "micro/testing/registry_conformance.hpp"

namespace fs = std::filesystem;
using micro::RegistryEvent;
using micro::RegistryEventType;
using micro::testing::Collector;

namespace {

// A folder for this test process, removed when it exits.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/registry-file-test-XXXXXX";
    if (::mkdtemp(name) != nullptr) path_ = name;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

const std::string& test_root() {
  static TempDir dir;
  return dir.path();
}

micro::testing::RegistryUnderTest file_registry(const std::string& folder,
                                                const std::string& extra = "") {
  micro::testing::RegistryUnderTest r;
  r.module = "registry-file";
  r.options_toml = "path = \"" + test_root() + "/" + folder + "\"\n" + extra;
  r.ttl_slack = std::chrono::seconds(2);
  return r;
}

}  // namespace

using micro::testing::RegistryConformance;
INSTANTIATE_TEST_SUITE_P(File, RegistryConformance,
                         ::testing::Values(file_registry("conformance")));
INSTANTIATE_TEST_SUITE_P(FilePolling, RegistryConformance,
                         ::testing::Values(file_registry("conformance-polling",
                                                         "inotify = false\npoll_ms = 50\n")));

namespace {

// Waits until `holds()` or the deadline; checks a file-system state no event announces.
template <class Pred>
bool eventually(Pred holds, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!holds()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

auto has_event(RegistryEventType type, const std::string& node_id) {
  return [=](const std::vector<RegistryEvent>& all) {
    return std::any_of(all.begin(), all.end(), [&](const RegistryEvent& e) {
      return e.type == type && e.service.nodes.size() == 1 && e.service.nodes[0].id == node_id;
    });
  };
}

std::vector<std::string> node_ids(const micro::Result<std::vector<micro::Service>>& got) {
  std::vector<std::string> ids;
  for (const auto& s : got.value)
    for (const auto& n : s.nodes) ids.push_back(n.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The helper program in a child process: it registers one node, then holds it until finish()
// (stdin closed: it deregisters and exits).
class HelperProcess : public micro::testing::ChildProcess {
 public:
  HelperProcess(const std::string& path, const std::string& service, const std::string& node,
                uint64_t ttl_ms)
      : ChildProcess({REGISTRY_FILE_HELPER, micro::testing::module_dir(), path, service, node,
                      std::to_string(ttl_ms)}) {}

  // Waits for the child to say it registered.
  bool registered(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return read_until("registered\n", timeout);
  }
};

class RegistryFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_root().empty()) << "mkdtemp failed";
    static int runs = 0;  // a fresh folder each time, also with --gtest_repeat
    dir_ = test_root() + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name() +
           "-" + std::to_string(++runs);
  }

  std::unique_ptr<micro::host::Stack> stack(const std::string& extra = "") {
    return micro::testing::require_stack(
        "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ + "\"\n" + extra,
        {MICRO_KIND_REGISTRY});
  }

  static micro::Service service(const std::string& node_id, int port = 9000) {
    micro::Service s;
    s.name = "greeter";
    s.version = "1.0.0";
    s.metadata = {{"team", "core"}};
    s.endpoints = {{"Greeter.Hello", "greeter.Request", "greeter.Response", {}}};
    s.nodes = {{node_id, "127.0.0.1:" + std::to_string(port), {{"zone", "a"}}}};
    return s;
  }

  std::string node_file(const std::string& node_id) const {
    return dir_ + "/greeter/1.0.0/" + node_id + ".toml";
  }

  std::string dir_;
};

TEST_F(RegistryFileTest, TwoInstancesOnOneFolderSeeEachOthersNodes) {
  auto a_stack = stack(), b_stack = stack();
  ASSERT_TRUE(a_stack && b_stack);
  micro::Registry a(a_stack->registry()), b(b_stack->registry());

  ASSERT_TRUE(a.register_service(service("node-a", 9001)).ok());
  auto got = b.get_service("greeter");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0], service("node-a", 9001));

  ASSERT_TRUE(b.register_service(service("node-b", 9002)).ok());
  EXPECT_EQ(node_ids(a.get_service("greeter")), (std::vector<std::string>{"node-a", "node-b"}));
  auto listed = a.list_services();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(node_ids(listed), (std::vector<std::string>{"node-a", "node-b"}));

  ASSERT_TRUE(a.deregister_service(service("node-a")).ok());
  EXPECT_EQ(node_ids(b.get_service("greeter")), (std::vector<std::string>{"node-b"}));
  ASSERT_TRUE(b.deregister_service(service("node-b")).ok());
  EXPECT_EQ(a.get_service("greeter").error.code(), 404);
}

TEST_F(RegistryFileTest, WatchSeesTheOtherInstancesCreateUpdateAndDelete) {
  auto a_stack = stack(), b_stack = stack();
  ASSERT_TRUE(a_stack && b_stack);
  micro::Registry a(a_stack->registry()), b(b_stack->registry());
  Collector<RegistryEvent> events;
  auto watch = b.watch("greeter", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());

  ASSERT_TRUE(a.register_service(service("node-a")).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "node-a")));
  auto moved = service("node-a", 9100);
  ASSERT_TRUE(a.register_service(moved).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::update, "node-a")));
  ASSERT_TRUE(a.deregister_service(moved).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "node-a")));

  auto all = events.snapshot();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].service, moved);
  EXPECT_EQ(all[2].service, moved);  // a delete carries what was deleted

  // The folders went with the node; coming back creates them anew, and they are watched again.
  ASSERT_FALSE(fs::exists(dir_ + "/greeter"));
  ASSERT_TRUE(a.register_service(service("node-a")).ok());
  auto creates = [](const std::vector<RegistryEvent>& all) {
    return std::count_if(all.begin(), all.end(), [](const RegistryEvent& e) {
             return e.type == RegistryEventType::create;
           }) == 2;
  };
  EXPECT_TRUE(events.wait_for(creates));
  ASSERT_TRUE(a.deregister_service(service("node-a")).ok());
  EXPECT_TRUE(events.wait_for([](const auto& all) { return all.size() == 5; }));
}

TEST_F(RegistryFileTest, RenewalThatChangesNothingIsNotAnEvent) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry.register_service(service("node-a"), micro::RegisterOptions{60000}).ok());
  ASSERT_TRUE(registry.register_service(service("node-a"), micro::RegisterOptions{60000}).ok());
  ASSERT_TRUE(registry.deregister_service(service("node-a")).ok());
  ASSERT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "node-a")));
  const auto all = events.snapshot();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].type, RegistryEventType::create);
}

TEST_F(RegistryFileTest, AnotherProcessesRegistrationIsSeenByGetAndWatch) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("from-child", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());

  HelperProcess child(dir_, "from-child", "child-node", 0);
  ASSERT_TRUE(child.registered());
  auto got = registry.get_service("from-child");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  ASSERT_EQ(got.value[0].nodes.size(), 1u);
  EXPECT_EQ(got.value[0].nodes[0].address, "127.0.0.1:7000");
  EXPECT_EQ(got.value[0].metadata.at("owner"), "helper");
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "child-node")));

  EXPECT_EQ(child.finish(), 0);  // it deregisters
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "child-node")));
  EXPECT_EQ(registry.get_service("from-child").error.code(), 404);
}

TEST_F(RegistryFileTest, ManyProcessesComeAndGoAtOnce) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("crowd", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  constexpr int kProcesses = 8;
  std::vector<std::unique_ptr<HelperProcess>> children;
  for (int i = 0; i < kProcesses; ++i)
    children.push_back(
        std::make_unique<HelperProcess>(dir_, "crowd", "member-" + std::to_string(i), 0));
  for (auto& child : children) ASSERT_TRUE(child->registered());
  EXPECT_EQ(node_ids(registry.get_service("crowd")).size(), size_t{kProcesses});
  auto added = [](const std::vector<RegistryEvent>& all) {
    return std::count_if(all.begin(), all.end(), [](const RegistryEvent& e) {
             return e.type != RegistryEventType::remove;
           }) == kProcesses;
  };
  EXPECT_TRUE(events.wait_for(added));
  // All leave at once: they race to remove the shared folders, and none may fail.
  for (auto& child : children) child->close_stdin();
  for (auto& child : children) EXPECT_EQ(child->finish(), 0);
  auto removed = [](const std::vector<RegistryEvent>& all) {
    return std::count_if(all.begin(), all.end(), [](const RegistryEvent& e) {
             return e.type == RegistryEventType::remove;
           }) == kProcesses;
  };
  EXPECT_TRUE(events.wait_for(removed));
  EXPECT_EQ(registry.get_service("crowd").error.code(), 404);
  EXPECT_FALSE(fs::exists(dir_ + "/crowd"));
}

TEST_F(RegistryFileTest, NodeOfAKilledProcessDisappearsWhenItsTtlLapses) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("killed", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());

  HelperProcess child(dir_, "killed", "doomed-node", 300);
  ASSERT_TRUE(child.registered());
  const auto killed_at = std::chrono::steady_clock::now();
  child.kill();  // SIGKILL: no deregistration, the file stays
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "doomed-node")));
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "doomed-node"),
                              std::chrono::milliseconds(300 + 3000)));
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(3));
  EXPECT_EQ(registry.get_service("killed").error.code(), 404);
  EXPECT_TRUE(fs::exists(dir_ + "/killed/1.0.0/doomed-node.toml"))
      << "deleted only after the grace period (10 s by default)";
}

TEST_F(RegistryFileTest, ExpiredNodeFilesAreDeletedAfterTheGracePeriod) {
  auto s = stack("grace_ms = 100\n");
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  ASSERT_TRUE(registry.register_service(service("short-lived"), micro::RegisterOptions{100}).ok());
  ASSERT_TRUE(fs::exists(node_file("short-lived")));
  EXPECT_TRUE(eventually([&] { return !fs::exists(node_file("short-lived")); }));
  EXPECT_TRUE(eventually([&] { return !fs::exists(dir_ + "/greeter"); }))
      << "empty folders go with the last node";
  EXPECT_TRUE(fs::is_directory(dir_));
}

TEST_F(RegistryFileTest, JunkInTheFolderIsIgnored) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(registry.register_service(service("good")).ok());
  const std::string valid = micro::testing::read_file(node_file("good"));
  ASSERT_FALSE(valid.empty());

  const std::string version_dir = dir_ + "/greeter/1.0.0/";
  auto write = [](const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  };
  write(version_dir + "garbage.toml", std::string("\x00\xff\x01 not toml [[[", 16));
  write(version_dir + "truncated.toml", valid.substr(0, valid.size() / 2));
  write(version_dir + "huge.toml", valid + std::string(2 << 20, '\n'));
  write(version_dir + "bad-header.toml", "[=]\n");                // a toml++ 3.3.0 assertion
  write(version_dir + "unicode-space.toml", "a = 1 \xc3\xa9\n");  // toml++ 3.3.0 unreachable
  write(version_dir + "wrong-types.toml", "name = 5\n[node]\nid = [1]\n");
  std::string newer = valid;
  newer.replace(newer.find("format = 1"), 10, "format = 2");
  write(version_dir + "newer-format.toml", newer);
  write(version_dir + "not-a-node.txt", valid);
  write(dir_ + "/stray.toml", valid);
  write(dir_ + "/greeter/stray.toml", valid);
  ASSERT_EQ(::mkfifo((version_dir + "fifo.toml").c_str(), 0600), 0);
  fs::create_directories(version_dir + "dir.toml");
  fs::create_directories(dir_ + "/empty-service/1.0.0");

  // A live node that turns into junk is deleted.
  ASSERT_TRUE(registry.register_service(service("spoiled")).ok());
  write(node_file("spoiled"), "garbage");
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "spoiled")));

  auto got = registry.get_service("greeter");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  EXPECT_EQ(node_ids(got), std::vector<std::string>{"good"});
  auto listed = registry.list_services();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(node_ids(listed), std::vector<std::string>{"good"});
  // The watch thread is alive and well.
  ASSERT_TRUE(registry.register_service(service("after-junk")).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::update, "after-junk")));
  // And a fresh instance starts on this folder.
  auto other = stack();
  ASSERT_TRUE(other);
  EXPECT_EQ(node_ids(micro::Registry(other->registry()).get_service("greeter")),
            (std::vector<std::string>{"after-junk", "good"}));
}

TEST_F(RegistryFileTest, NodeFileWrittenByHandIsANode) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  Collector<RegistryEvent> events;
  auto watch = registry.watch("by-hand", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  fs::create_directories(dir_ + "/by-hand/2.0.0");
  std::ofstream(dir_ + "/by-hand/2.0.0/n1.toml") << R"(name = "by-hand"
version = "2.0.0"
[node]
id = "n1"
address = "10.0.0.1:80"
)";
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "n1")));
  auto got = registry.get_service("by-hand");
  ASSERT_TRUE(got.ok()) << got.error.to_string();
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0].version, "2.0.0");
  EXPECT_EQ(got.value[0].nodes[0].address, "10.0.0.1:80");
  fs::remove(dir_ + "/by-hand/2.0.0/n1.toml");
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "n1")));
}

TEST_F(RegistryFileTest, NamesArePercentEncodedIntoTheDocumentedLayout) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  micro::Service odd;
  odd.name = "a/b c";
  odd.version = "";
  odd.metadata = {{"dotted.key", "x"},
                  {"", "empty key"},
                  {"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "\xe2\x9c\x93"},
                  {"quote'\"", "line\nbreak\ttab\\ \x01"}};
  odd.endpoints = {{"E", "", "", {{"k", "v"}}}};
  odd.nodes = {{"..", "127.0.0.1:1", {}}};
  ASSERT_TRUE(registry.register_service(odd).ok());
  const std::string file = dir_ + "/a%2Fb%20c/%/%2E..toml";
  ASSERT_TRUE(fs::is_regular_file(file));
  const std::string text = micro::testing::read_file(file);
  EXPECT_NE(text.find("expires_unix_ms = 0"), std::string::npos) << text;
  EXPECT_NE(text.find("name = 'a/b c'"), std::string::npos) << text;
  auto got = registry.get_service("a/b c");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got.value.size(), 1u);
  EXPECT_EQ(got.value[0], odd);

  micro::Service long_name = service("n");
  long_name.name = std::string(300, 'x') + "\xe2\x9c\x93";
  ASSERT_TRUE(registry.register_service(long_name).ok());
  auto long_got = registry.get_service(long_name.name);
  ASSERT_TRUE(long_got.ok()) << long_got.error.to_string();
  EXPECT_EQ(long_got.value[0], long_name);
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_LE(entry.path().filename().string().size(), 200u);

  ASSERT_TRUE(registry.deregister_service(odd).ok());
  ASSERT_TRUE(registry.deregister_service(long_name).ok());
  EXPECT_TRUE(fs::is_empty(dir_)) << "empty folders go with the last node";
}

TEST_F(RegistryFileTest, TextThatCannotBeStoredFaithfullyIsRefused) {
  auto s = stack();
  ASSERT_TRUE(s);
  micro::Registry registry(s->registry());
  auto bad = service("n");
  bad.metadata["blob"] = "\xff\xfe not UTF-8";
  const auto error = registry.register_service(bad);
  EXPECT_EQ(error.code(), 400) << error.to_string();
  EXPECT_NE(error.detail().find("UTF-8"), std::string::npos) << error.detail();
  EXPECT_FALSE(fs::exists(node_file("n")));
}

TEST_F(RegistryFileTest, PollingInstanceSeesAnotherInstancesChanges) {
  auto writer_stack = stack(), poller_stack = stack("inotify = false\npoll_ms = 50\n");
  ASSERT_TRUE(writer_stack && poller_stack);
  micro::Registry writer(writer_stack->registry()), poller(poller_stack->registry());
  Collector<RegistryEvent> events;
  auto watch = poller.watch("greeter", [&](const RegistryEvent& e) { events.push(e); });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(writer.register_service(service("node-a")).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::create, "node-a")));
  ASSERT_TRUE(writer.deregister_service(service("node-a")).ok());
  EXPECT_TRUE(events.wait_for(has_event(RegistryEventType::remove, "node-a")));
}

TEST_F(RegistryFileTest, DefaultFolderIsInXdgRuntimeDir) {
  fs::create_directories(dir_);
  const char* saved = std::getenv("XDG_RUNTIME_DIR");
  const std::string restore = saved != nullptr ? saved : "";
  ::setenv("XDG_RUNTIME_DIR", dir_.c_str(), 1);
  auto s = micro::testing::require_stack("[registry]\nmodule = \"registry-file\"\n",
                                         {MICRO_KIND_REGISTRY});
  if (saved != nullptr)
    ::setenv("XDG_RUNTIME_DIR", restore.c_str(), 1);
  else
    ::unsetenv("XDG_RUNTIME_DIR");
  ASSERT_TRUE(s);
  ASSERT_TRUE(micro::Registry(s->registry()).register_service(service("n")).ok());
  EXPECT_TRUE(fs::is_regular_file(dir_ + "/micro-registry/greeter/1.0.0/n.toml"));
}

TEST_F(RegistryFileTest, BadOptionIsReportedByName) {
  auto built = micro::testing::build_stack(
      "[registry]\nmodule = \"registry-file\"\npath = \"" + dir_ + "\"\npoll_ms = 1\n",
      {MICRO_KIND_REGISTRY});
  ASSERT_FALSE(built.ok());
  const std::string all = micro::testing::errors_of(built);
  EXPECT_NE(all.find("poll_ms"), std::string::npos) << all;
}

}  // namespace
