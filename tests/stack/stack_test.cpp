// Stack::build against stub modules written in plain C (tests/stack/modules/stack_stubs.c): every
// kind is created after what it needs and destroyed in exact reverse, each plugin gets exactly the
// instances it asked for, its options with defaults filled in, and a logger named after it. Config
// mistakes are reported as "file:line: key: ..." before anything is created.
#include "micro/host/stack.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"

namespace {

using micro::host::Stack;

struct LogLine {
  std::string logger;
  spdlog::level::level_enum level;
  std::string text;
};

// Keeps every line any logger writes. Added to the host logger's sinks before any module logger
// exists, so every module logger (which copies the host's sinks when made) writes to it too.
class CaptureSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<LogLine> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    lines_.clear();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.push_back({std::string(msg.logger_name.begin(), msg.logger_name.end()), msg.level,
                      std::string(msg.payload.begin(), msg.payload.end())});
  }
  void flush_() override {}

 private:
  std::vector<LogLine> lines_;  // guarded by base_sink's mutex_
};

CaptureSink& capture() {
  static const std::shared_ptr<CaptureSink> sink = [] {
    auto s = std::make_shared<CaptureSink>();
    micro::host::host_logger()->sinks().push_back(s);
    return s;
  }();
  return *sink;
}

// The test-only modules' folder: $MICRO_TEST_FIXTURE_DIR, else the one this build made.
std::string fixture_dir() {
  const char* dir = std::getenv("MICRO_TEST_FIXTURE_DIR");
  return dir == nullptr || *dir == '\0' ? MICRO_TEST_FIXTURE_DIR_DEFAULT : dir;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}
bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The kind named by a "created <kind> ..." or "destroyed <kind>" line.
std::string kind_in(const std::string& text) {
  const size_t start = text.find(' ') + 1;
  const size_t end = text.find(' ', start);
  return text.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// The stack.toml every test starts from: each kind's table names stack-stubs. `extra` adds lines
// to a kind's table (or, for "modules", replaces the module it names).
struct StackToml {
  std::map<std::string, std::string> extra;
  std::map<std::string, std::string> module;

  std::string text() const {
    std::string out = "[service]\nname = \"stack-test\"\n" + table_body("service") +
                      "\n[modules]\npath = [\"" + fixture_dir() + "\"]\n";
    for (const char* kind :
         {"codec", "transport", "registry", "selector", "broker", "client", "server", "handler"})
      out += std::string("\n[") + kind + "]\n" + table_body(kind);
    out += "\n[log]\nlevel = \"info\"\n";
    return out;
  }

 private:
  std::string table_body(const std::string& kind) const {
    auto m = module.find(kind);
    std::string out =
        "module = \"" + (m == module.end() ? std::string("stack-stubs") : m->second) + "\"\n";
    if (kind == "registry" && extra.count("registry-no-address") == 0)
      out += "address = \"mem://stubs\"\n";
    auto e = extra.find(kind);
    if (e != extra.end()) out += e->second + "\n";
    return out;
  }
};

// The 1-based line of the first line of `text` containing `needle` (0 if none).
int line_of(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  if (at == std::string::npos) return 0;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

const std::vector<micro_kind_t> kEveryKind = {MICRO_KIND_SERVICE, MICRO_KIND_HANDLER};

class StackTest : public ::testing::Test {
 protected:
  void SetUp() override { capture().clear(); }

  // Parses `toml`, then builds the stack with the loader a `micro run` would make from it.
  Stack::BuildResult build(const std::string& toml,
                           const std::vector<micro_kind_t>& wanted = kEveryKind,
                           bool create = true) {
    auto parsed = micro::host::parse_config(toml, "stack.toml");
    Stack::BuildResult out;
    for (const auto& e : parsed.errors) out.errors.push_back(e.to_string());
    if (!parsed.ok()) return out;
    const micro::host::ModuleLoader loader(parsed.config.module_paths);
    return Stack::build(parsed.config, loader, wanted, create);
  }

  // The stub plugins' own lines, in order.
  static std::vector<LogLine> stub_lines(const std::string& prefix) {
    std::vector<LogLine> out;
    for (const auto& line : capture().lines())
      if (starts_with(line.logger, "stub-") && starts_with(line.text, prefix)) out.push_back(line);
    return out;
  }
  static std::vector<std::string> kinds_in(const std::vector<LogLine>& lines) {
    std::vector<std::string> out;
    for (const auto& line : lines) out.push_back(kind_in(line.text));
    return out;
  }
  static std::string created_line(const std::string& kind) {
    for (const auto& line : stub_lines("created " + kind + " ")) return line.text;
    return "<no created " + kind + " line>";
  }
  static std::string joined(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
};

// What each stub asks for (stack_stubs.c, as the issue lays the stack out).
const std::map<std::string, std::vector<std::string>> kRequires = {
    {"codec", {}},
    {"transport", {}},
    {"registry", {}},
    {"selector", {"registry"}},
    {"broker", {}},
    {"client", {"selector", "transport", "codec", "broker"}},
    {"server", {"transport", "registry", "codec", "broker"}},
    {"service", {"client", "server"}},
    {"handler", {"server", "client"}}};

TEST_F(StackTest, CreatesEveryKindAfterWhatItNeedsAndDestroysThemInExactReverse) {
  auto built = build(StackToml{}.text());
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  const std::vector<std::string> created = kinds_in(stub_lines("created "));
  ASSERT_EQ(created.size(), kRequires.size()) << joined(created);
  for (const auto& [kind, needs] : kRequires) {
    const auto at = std::find(created.begin(), created.end(), kind);
    ASSERT_NE(at, created.end()) << kind << " was not created";
    for (const auto& need : needs)
      EXPECT_LT(std::find(created.begin(), created.end(), need), at)
          << kind << " was created before " << need << ", which it needs";
  }
  // The stack lists its instances in the same order.
  std::vector<std::string> listed;
  for (const auto& instance : built.stack->instances())
    listed.push_back(micro::host::kind_name(instance->kind()));
  EXPECT_EQ(listed, created);
  EXPECT_TRUE(stub_lines("destroyed ").empty());

  built.stack.reset();
  std::vector<std::string> destroyed = kinds_in(stub_lines("destroyed "));
  std::reverse(destroyed.begin(), destroyed.end());
  EXPECT_EQ(destroyed, created);
}

TEST_F(StackTest, HandsEachPluginExactlyTheDependenciesItAskedFor) {
  // A stub logs the kinds it was handed (after checking each is a live instance of that kind)
  // and refuses to be created when one is of the wrong kind.
  auto built = build(StackToml{}.text());
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  EXPECT_EQ(created_line("codec"), "created codec with deps [] and options [level=1]");
  EXPECT_EQ(created_line("transport"), "created transport with deps [] and options []");
  EXPECT_EQ(created_line("registry"),
            "created registry with deps [] and options [address=mem://stubs]");
  EXPECT_EQ(created_line("selector"),
            "created selector with deps [registry] and options [retries=3 strategy=random]");
  EXPECT_EQ(created_line("broker"), "created broker with deps [] and options []");
  EXPECT_EQ(created_line("client"),
            "created client with deps [codec*1 transport selector broker] and options []");
  EXPECT_EQ(created_line("server"),
            "created server with deps [codec*1 transport registry broker] and options "
            "[fail=false]");
  EXPECT_EQ(created_line("service"), "created service with deps [client server] and options []");
  EXPECT_TRUE(starts_with(created_line("handler"), "created handler with deps [client server] "))
      << created_line("handler");

  // And the stack hands out each of them.
  EXPECT_NE(built.stack->registry().self, nullptr);
  EXPECT_NE(built.stack->transport().self, nullptr);
  EXPECT_NE(built.stack->selector().self, nullptr);
  EXPECT_NE(built.stack->broker().self, nullptr);
  EXPECT_NE(built.stack->client().self, nullptr);
  EXPECT_NE(built.stack->server().self, nullptr);
  EXPECT_NE(built.stack->service().self, nullptr);
  EXPECT_EQ(built.stack->codecs().size(), 1u);
  EXPECT_NE(built.stack->find(MICRO_KIND_HANDLER), nullptr);
}

TEST_F(StackTest, BuildsOnlyWhatTheWantedKindsNeed) {
  auto built = build(StackToml{}.text(), {MICRO_KIND_SELECTOR});
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  EXPECT_EQ(kinds_in(stub_lines("created ")), (std::vector<std::string>{"registry", "selector"}));
  EXPECT_EQ(built.stack->client().self, nullptr);
}

TEST_F(StackTest, TagsEveryModuleLineWithThePluginsLoggerName) {
  auto built = build(StackToml{}.text());
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  built.stack.reset();
  size_t seen = 0;
  for (const auto& line : capture().lines()) {
    if (!starts_with(line.text, "created ") && !starts_with(line.text, "destroyed ")) continue;
    ++seen;
    EXPECT_EQ(line.logger, "stub-" + kind_in(line.text)) << line.text;
    EXPECT_EQ(line.level, spdlog::level::info) << line.text;
  }
  EXPECT_EQ(seen, 2 * kRequires.size());
}

TEST_F(StackTest, StartsAndStopsTheServiceThroughItsVtable) {
  auto built = build(StackToml{}.text());
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  const micro_service_instance_t service = built.stack->service();
  ASSERT_NE(service.vtable, nullptr);
  ASSERT_NE(service.vtable->start, nullptr);
  ASSERT_NE(service.vtable->stop, nullptr);
  int completions = 0;
  auto done = [](void* ctx, const micro_error_t* error) {
    EXPECT_EQ(error, nullptr);
    ++*static_cast<int*>(ctx);
  };
  service.vtable->start(service.self, done, &completions);
  service.vtable->stop(service.self, done, &completions);
  EXPECT_EQ(completions, 2);
  const auto started = stub_lines("started service");
  const auto stopped = stub_lines("stopped service");
  ASSERT_EQ(started.size(), 1u);
  ASSERT_EQ(stopped.size(), 1u);
  EXPECT_EQ(started[0].logger, "stub-service");
}

TEST_F(StackTest, PassesOptionsFromTheConfigWithDefaultsForTheRest) {
  StackToml toml;
  toml.extra["selector"] = "retries = 7";
  toml.extra["codec"] = "level = 2";
  toml.extra["handler"] = "tags = [\"a\", \"b\"]\nlabels = { team = \"core\" }";
  auto built = build(toml.text());
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  EXPECT_EQ(created_line("selector"),
            "created selector with deps [registry] and options [retries=7 strategy=random]");
  EXPECT_EQ(created_line("codec"), "created codec with deps [] and options [level=2]");
  EXPECT_EQ(created_line("handler"),
            "created handler with deps [client server] and options [tags=a,b labels=team:core]");
}

TEST_F(StackTest, PassesALongDefaultListIntact) {
  // Twenty default strings: the host must keep every one alive for the factory call.
  auto built = build(StackToml{}.text());
  ASSERT_TRUE(built.ok()) << joined(built.errors);
  EXPECT_EQ(created_line("handler"),
            "created handler with deps [client server] and options "
            "[tags=t01,t02,t03,t04,t05,t06,t07,t08,t09,t10,t11,t12,t13,t14,t15,t16,t17,t18,t19,"
            "t20]");
}

TEST_F(StackTest, ReportsAnUnknownOptionWithFileLineAndKeyAndCreatesNothing) {
  StackToml toml;
  toml.extra["selector"] = "retires = 5";
  const std::string text = toml.text();
  auto built = build(text);
  EXPECT_EQ(built.stack, nullptr);
  EXPECT_EQ(built.errors, std::vector<std::string>{
                              "stack.toml:" + std::to_string(line_of(text, "retires = 5")) +
                              ": selector.retires: unknown option for stack-stubs (it accepts: "
                              "retries, strategy)"});
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, ReportsAWrongTypedOptionWithFileLineAndKeyAndCreatesNothing) {
  StackToml toml;
  toml.extra["selector"] = "retries = \"many\"";
  const std::string text = toml.text();
  auto built = build(text);
  EXPECT_EQ(built.stack, nullptr);
  EXPECT_EQ(built.errors, std::vector<std::string>{
                              "stack.toml:" + std::to_string(line_of(text, "retries = \"many\"")) +
                              ": selector.retries: expected an integer, got a string"});
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, ReportsAMissingRequiredOptionWithFileLineAndKeyAndCreatesNothing) {
  StackToml toml;
  toml.extra["registry-no-address"] = "";
  const std::string text = toml.text();
  auto built = build(text);
  EXPECT_EQ(built.stack, nullptr);
  EXPECT_EQ(built.errors,
            std::vector<std::string>{"stack.toml:" + std::to_string(line_of(text, "[registry]")) +
                                     ": registry.address: missing required option of "
                                     "stack-stubs: where the registry is, e.g. \"mem://stubs\""});
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, ReportsEveryOptionMistakeAtOnce) {
  StackToml toml;
  toml.extra["registry-no-address"] = "";
  toml.extra["selector"] = "retries = 1.5";
  toml.extra["handler"] = "colour = \"blue\"";
  toml.extra["codec"] = "level = true";
  auto built = build(toml.text());
  EXPECT_EQ(built.stack, nullptr);
  ASSERT_EQ(built.errors.size(), 4u) << joined(built.errors);
  for (const std::string key :
       {"registry.address: ", "selector.retries: ", "handler.colour: ", "codec.level: "}) {
    EXPECT_EQ(std::count_if(built.errors.begin(), built.errors.end(),
                            [&](const std::string& e) {
                              return starts_with(e, "stack.toml:") && contains(e, ": " + key);
                            }),
              1)
        << key << " in\n"
        << joined(built.errors);
  }
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, NamesTheSearchPathWhenAModuleDoesNotExist) {
  StackToml toml;
  toml.module["broker"] = "broker-nowhere";
  const std::string text = toml.text();
  auto built = build(text);
  EXPECT_EQ(built.stack, nullptr);
  ASSERT_EQ(built.errors.size(), 1u) << joined(built.errors);
  const std::string& error = built.errors[0];
  EXPECT_TRUE(starts_with(error, "stack.toml:" + std::to_string(line_of(text, "[broker]")) +
                                     ": broker.module: no module named 'broker-nowhere' "
                                     "(broker-nowhere.so) in the search path [" +
                                     fixture_dir()))
      << error;
  EXPECT_TRUE(contains(error, "add its folder to [modules] path or MICRO_MODULE_PATH")) << error;
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, RefusesAModuleOfTheWrongKindNamingWhatItProvides) {
  StackToml toml;
  toml.module["registry"] = "stack-stub-codec";
  const std::string text = toml.text();
  auto built = build(text);
  EXPECT_EQ(built.stack, nullptr);
  ASSERT_EQ(built.errors.size(), 1u) << joined(built.errors);
  EXPECT_EQ(built.errors[0], "stack.toml:" + std::to_string(line_of(text, "[registry]")) +
                                 ": registry.module: stack-stub-codec provides no registry (it "
                                 "provides stub-codec (codec))");
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, CheckingAConfigCreatesNothing) {
  auto built = build(StackToml{}.text(), kEveryKind, /*create=*/false);
  EXPECT_TRUE(built.ok()) << joined(built.errors);
  EXPECT_EQ(built.stack, nullptr);
  EXPECT_TRUE(stub_lines("created ").empty());
}

TEST_F(StackTest, DestroysWhatItMadeInReverseWhenAFactoryFails) {
  StackToml toml;
  toml.extra["server"] = "fail = true";
  auto built = build(toml.text());
  EXPECT_EQ(built.stack, nullptr);
  ASSERT_EQ(built.errors.size(), 1u) << joined(built.errors);
  const std::string& error = built.errors[0];
  EXPECT_TRUE(starts_with(error, "server: module stack-stubs (")) << error;
  EXPECT_TRUE(contains(error, "failed to create its server: server told to fail by its options"))
      << error;

  const std::vector<std::string> created = kinds_in(stub_lines("created "));
  EXPECT_EQ(std::find(created.begin(), created.end(), "server"), created.end());
  EXPECT_EQ(std::find(created.begin(), created.end(), "service"), created.end());
  std::vector<std::string> destroyed = kinds_in(stub_lines("destroyed "));
  std::reverse(destroyed.begin(), destroyed.end());
  EXPECT_EQ(destroyed, created);
  EXPECT_FALSE(created.empty());
}

TEST_F(StackTest, StubModuleIsPlainCWithNoCxxRuntime) {
  const std::string command = "readelf -d '" + fixture_dir() + "/stack-stubs.so'";
  std::string deps;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[512];
    while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) deps.append(buffer, n);
    ::pclose(pipe);
  }
  EXPECT_TRUE(contains(deps, "(NEEDED)") && contains(deps, "[libc.so")) << deps;
  EXPECT_FALSE(contains(deps, "libstdc++")) << deps;
  EXPECT_FALSE(contains(deps, "libc++")) << deps;
}

}  // namespace
