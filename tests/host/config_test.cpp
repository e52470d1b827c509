// The TOML configuration as a user meets it: what a file means, and the exact message every
// mistake prints.
#include "micro/host/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace micro::host {
namespace {

namespace fs = std::filesystem;

const std::string kFile = "/etc/micro/greeter.toml";

ConfigResult parse(const std::string& text, const std::string& file = kFile) {
  return parse_config(text, file);
}

// Every error as the user sees it.
std::vector<std::string> printed(const ConfigResult& result) {
  std::vector<std::string> lines;
  for (const auto& e : result.errors) lines.push_back(e.to_string());
  return lines;
}

using Lines = std::vector<std::string>;

const std::string kKnownTables =
    "(known tables: service, modules, log, registry, transport, codec, broker, selector, client, "
    "server, handler)";

// A directory of its own per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("micro-config-test-" + std::to_string(::getpid()) + "-" +
                                         info->test_suite_name() + "-" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path file = path_ / name;
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
    return file;
  }

 private:
  fs::path path_;
};

// ---- kind names ----

TEST(KindNames, RoundTripForEveryKind) {
  for (micro_kind_t kind : all_kinds()) {
    auto back = kind_from_name(kind_name(kind));
    ASSERT_TRUE(back.has_value()) << kind_name(kind);
    EXPECT_EQ(*back, kind);
  }
}

TEST(KindNames, AreTheTableNamesOfTheConfigFile) {
  EXPECT_STREQ(kind_name(MICRO_KIND_CODEC), "codec");
  EXPECT_STREQ(kind_name(MICRO_KIND_TRANSPORT), "transport");
  EXPECT_STREQ(kind_name(MICRO_KIND_REGISTRY), "registry");
  EXPECT_STREQ(kind_name(MICRO_KIND_SELECTOR), "selector");
  EXPECT_STREQ(kind_name(MICRO_KIND_BROKER), "broker");
  EXPECT_STREQ(kind_name(MICRO_KIND_CLIENT), "client");
  EXPECT_STREQ(kind_name(MICRO_KIND_SERVER), "server");
  EXPECT_STREQ(kind_name(MICRO_KIND_SERVICE), "service");
  EXPECT_STREQ(kind_name(MICRO_KIND_HANDLER), "handler");
}

TEST(KindNames, DoNotMatchOtherTablesOrOtherSpellings) {
  EXPECT_FALSE(kind_from_name("log").has_value());
  EXPECT_FALSE(kind_from_name("modules").has_value());
  EXPECT_FALSE(kind_from_name("Registry").has_value());
  EXPECT_FALSE(kind_from_name("").has_value());
}

TEST(KindNames, AllKindsListsTheNineKindsInBuildOrder) {
  const std::vector<micro_kind_t> expected = {
      MICRO_KIND_REGISTRY, MICRO_KIND_TRANSPORT, MICRO_KIND_CODEC,
      MICRO_KIND_BROKER,   MICRO_KIND_SELECTOR,  MICRO_KIND_CLIENT,
      MICRO_KIND_SERVER,   MICRO_KIND_SERVICE,   MICRO_KIND_HANDLER};
  EXPECT_EQ(all_kinds(), expected);
}

// ---- defaults ----

TEST(Defaults, AreMdnsHttpJsonAndProtobuf) {
  using V = std::vector<std::string>;
  EXPECT_EQ(default_modules(MICRO_KIND_CODEC), (V{"codec-json", "codec-proto"}));
  EXPECT_EQ(default_modules(MICRO_KIND_TRANSPORT), V{"transport-http"});
  EXPECT_EQ(default_modules(MICRO_KIND_REGISTRY), V{"registry-mdns"});
  EXPECT_EQ(default_modules(MICRO_KIND_SELECTOR), V{"selector-default"});
  EXPECT_EQ(default_modules(MICRO_KIND_BROKER), V{"broker-http"});
  EXPECT_EQ(default_modules(MICRO_KIND_CLIENT), V{"client-rpc"});
  EXPECT_EQ(default_modules(MICRO_KIND_SERVER), V{"server-rpc"});
  EXPECT_EQ(default_modules(MICRO_KIND_SERVICE), V{"service-default"});
  EXPECT_TRUE(default_modules(MICRO_KIND_HANDLER).empty());
}

TEST(Defaults, DefaultConfigFillsEveryKindButTheHandler) {
  const Config c = default_config("greeter");
  EXPECT_EQ(c.file, "<defaults>");
  EXPECT_EQ(c.service.name, "greeter");
  EXPECT_EQ(c.service.version, "latest");
  EXPECT_EQ(c.service.address, "127.0.0.1:0");
  EXPECT_TRUE(c.service.metadata.empty());
  EXPECT_TRUE(c.module_paths.empty());
  EXPECT_EQ(c.log_level, "info");
  EXPECT_FALSE(c.has_handler());
  EXPECT_EQ(c.kinds.size(), 8u);
  for (micro_kind_t kind : all_kinds()) {
    if (kind == MICRO_KIND_HANDLER) continue;
    ASSERT_EQ(c.kinds.count(kind), 1u) << kind_name(kind);
    const KindConfig& kc = c.kinds.at(kind);
    EXPECT_EQ(kc.kind, kind);
    EXPECT_EQ(kc.modules, default_modules(kind));
    EXPECT_TRUE(kc.is_default);
    EXPECT_TRUE(kc.options.empty());
    EXPECT_EQ(kc.line, 0);
  }
}

TEST(Defaults, DefaultConfigIsNamedMicroWithoutAName) {
  EXPECT_EQ(default_config().service.name, "micro");
}

// ---- what a file means ----

TEST(ParseConfig, AcceptsAFileWithNothingButAServiceName) {
  const ConfigResult r = parse("[service]\nname = \"greeter\"");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const Config& c = r.config;
  EXPECT_EQ(c.file, kFile);
  EXPECT_EQ(c.service.name, "greeter");
  EXPECT_EQ(c.service.version, "latest");
  EXPECT_EQ(c.service.address, "127.0.0.1:0");
  EXPECT_TRUE(c.service.metadata.empty());
  EXPECT_TRUE(c.module_paths.empty());
  EXPECT_EQ(c.log_level, "info");
  EXPECT_FALSE(c.has_handler());
  EXPECT_EQ(c.kinds.size(), 8u);
  for (const auto& [kind, kc] : c.kinds) {
    EXPECT_EQ(kc.modules, default_modules(kind)) << kind_name(kind);
    EXPECT_TRUE(kc.is_default) << kind_name(kind);
    EXPECT_TRUE(kc.options.empty()) << kind_name(kind);
  }
  EXPECT_EQ(c.kinds.at(MICRO_KIND_SERVICE).line, 1);  // [service] is there, naming no module
  EXPECT_EQ(c.kinds.at(MICRO_KIND_REGISTRY).line, 0);
}

// The example in DESIGN.md, comments and all.
const char* const kDesignExample = R"toml([service]
name = "greeter"            # the only required key
version = "1.0.0"
address = "127.0.0.1:0"     # port 0: pick a free one
metadata = { team = "core" }

[modules]
path = ["./modules"]        # searched before MICRO_MODULE_PATH and the install directory

[registry]
module = "registry-mdns"    # every kind's table names its module ...
# address = "127.0.0.1:8500"  ... and holds that module's options; registries and brokers
#                             that talk to a server call its location `address`

[handler]
module = "handler-greeter"  # business logic as a module: `micro run` needs no user main()

[log]
level = "info"
)toml";

TEST(ParseConfig, ReadsTheExampleOfTheDesign) {
  const ConfigResult r = parse(kDesignExample);
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const Config& c = r.config;
  EXPECT_EQ(c.service.name, "greeter");
  EXPECT_EQ(c.service.version, "1.0.0");
  EXPECT_EQ(c.service.address, "127.0.0.1:0");
  EXPECT_EQ(c.service.metadata, (Metadata{{"team", "core"}}));
  EXPECT_EQ(c.module_paths, std::vector<std::string>{"/etc/micro/modules"});
  EXPECT_EQ(c.log_level, "info");

  const KindConfig& registry = c.kinds.at(MICRO_KIND_REGISTRY);
  EXPECT_EQ(registry.kind, MICRO_KIND_REGISTRY);
  EXPECT_EQ(registry.modules, std::vector<std::string>{"registry-mdns"});
  EXPECT_FALSE(registry.is_default);  // named in the file, even though it is the default
  EXPECT_TRUE(registry.options.empty());
  EXPECT_EQ(registry.line, 10);

  ASSERT_TRUE(c.has_handler());
  const KindConfig& handler = c.kinds.at(MICRO_KIND_HANDLER);
  EXPECT_EQ(handler.modules, std::vector<std::string>{"handler-greeter"});
  EXPECT_FALSE(handler.is_default);
  EXPECT_EQ(handler.line, 15);

  const KindConfig& service = c.kinds.at(MICRO_KIND_SERVICE);
  EXPECT_TRUE(service.is_default);
  EXPECT_EQ(service.modules, std::vector<std::string>{"service-default"});
  EXPECT_TRUE(service.options.empty());  // name, version, address and metadata are not options

  EXPECT_EQ(c.kinds.size(), 9u);
  EXPECT_TRUE(c.kinds.at(MICRO_KIND_TRANSPORT).is_default);
  EXPECT_EQ(c.kinds.at(MICRO_KIND_CODEC).modules, default_modules(MICRO_KIND_CODEC));
}

TEST(ParseConfig, KeepsEveryOtherKeyOfAKindTableAsOptionsWithTheirLines) {
  const ConfigResult r = parse(R"toml([service]
name = "greeter"

[registry]
module = "registry-consul"
address = "127.0.0.1:8500"
ttl_ms = 30000
tags = ["a", "b"]

[registry.tls]
ca = "/etc/ca.pem"
)toml");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const KindConfig& registry = r.config.kinds.at(MICRO_KIND_REGISTRY);
  EXPECT_EQ(registry.modules, std::vector<std::string>{"registry-consul"});
  EXPECT_FALSE(registry.is_default);
  EXPECT_EQ(registry.line, 4);
  EXPECT_FALSE(registry.options.contains("module"));
  EXPECT_EQ(registry.options.size(), 4u);
  EXPECT_EQ(registry.options["address"].value<std::string>(), "127.0.0.1:8500");
  EXPECT_EQ(registry.options["ttl_ms"].value<int64_t>(), 30000);
  EXPECT_EQ(registry.options.get("address")->source().begin.line, 6u);
  EXPECT_EQ(registry.options.get("ttl_ms")->source().begin.line, 7u);
  EXPECT_EQ(registry.options.get("tags")->source().begin.line, 8u);
  EXPECT_EQ(registry.options["tls"]["ca"].value<std::string>(), "/etc/ca.pem");
  EXPECT_EQ(registry.options["tls"]["ca"].node()->source().begin.line, 11u);
}

TEST(ParseConfig, KeepsOptionsOfAKindTableThatNamesNoModule) {
  const ConfigResult r = parse("[service]\nname = \"greeter\"\n\n[transport]\ntimeout_ms = 500\n");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const KindConfig& transport = r.config.kinds.at(MICRO_KIND_TRANSPORT);
  EXPECT_TRUE(transport.is_default);
  EXPECT_EQ(transport.modules, std::vector<std::string>{"transport-http"});
  EXPECT_EQ(transport.line, 4);
  EXPECT_EQ(transport.options["timeout_ms"].value<int64_t>(), 500);
  EXPECT_EQ(transport.options.get("timeout_ms")->source().begin.line, 5u);
}

TEST(ParseConfig, LeavesOptionChecksToTheStack) {
  // Unknown options and odd types in a kind table are the module's business (validate_options).
  const ConfigResult r =
      parse("[service]\nname = \"x\"\n[broker]\nwhatever = 1\nnested = { a = [1, \"b\"] }\n");
  EXPECT_TRUE(r.ok()) << printed(r).front();
  EXPECT_EQ(r.config.kinds.at(MICRO_KIND_BROKER).options.size(), 2u);
}

TEST(ParseConfig, PutsOtherServiceKeysIntoTheServiceModulesOptions) {
  const ConfigResult r = parse(R"toml([service]
name = "greeter"
module = "service-custom"
version = "2"
register_ttl_s = 30
drain = true
)toml");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const KindConfig& service = r.config.kinds.at(MICRO_KIND_SERVICE);
  EXPECT_EQ(service.modules, std::vector<std::string>{"service-custom"});
  EXPECT_FALSE(service.is_default);
  EXPECT_EQ(service.line, 1);
  EXPECT_EQ(service.options.size(), 2u);
  EXPECT_EQ(service.options["register_ttl_s"].value<int64_t>(), 30);
  EXPECT_EQ(service.options.get("register_ttl_s")->source().begin.line, 5u);
  EXPECT_EQ(service.options["drain"].value<bool>(), true);
  EXPECT_EQ(r.config.service.version, "2");
}

TEST(ParseConfig, ReadsACodecArrayInItsOrder) {
  const ConfigResult r =
      parse("[service]\nname = \"x\"\n[codec]\nmodule = [\"codec-proto\", \"codec-msgpack\"]\n");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const KindConfig& codec = r.config.kinds.at(MICRO_KIND_CODEC);
  EXPECT_EQ(codec.modules, (std::vector<std::string>{"codec-proto", "codec-msgpack"}));
  EXPECT_FALSE(codec.is_default);
}

TEST(ParseConfig, ReadsASingleCodecString) {
  const ConfigResult r = parse("[service]\nname = \"x\"\n[codec]\nmodule = \"codec-json\"\n");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  EXPECT_EQ(r.config.kinds.at(MICRO_KIND_CODEC).modules, std::vector<std::string>{"codec-json"});
}

TEST(ParseConfig, AcceptsInlineTablesAndDottedKeys) {
  const ConfigResult r = parse(R"toml(registry = { module = "registry-consul", address = "x:1" }
transport.module = "transport-grpc"

[service]
name = "greeter"

[service.metadata]
team = "core"
tier = "gold"
)toml");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  const Config& c = r.config;
  EXPECT_EQ(c.kinds.at(MICRO_KIND_REGISTRY).modules, std::vector<std::string>{"registry-consul"});
  EXPECT_EQ(c.kinds.at(MICRO_KIND_REGISTRY).line, 1);
  EXPECT_EQ(c.kinds.at(MICRO_KIND_REGISTRY).options["address"].value<std::string>(), "x:1");
  EXPECT_EQ(c.kinds.at(MICRO_KIND_TRANSPORT).modules, std::vector<std::string>{"transport-grpc"});
  EXPECT_EQ(c.kinds.at(MICRO_KIND_TRANSPORT).line, 2);
  EXPECT_EQ(c.service.metadata, (Metadata{{"team", "core"}, {"tier", "gold"}}));
}

TEST(ParseConfig, NamesEveryKindInItsOwnTable) {
  const ConfigResult r = parse(R"toml([service]
name = "x"
module = "m-service"
[codec]
module = "m-codec"
[transport]
module = "m-transport"
[registry]
module = "m-registry"
[selector]
module = "m-selector"
[broker]
module = "m-broker"
[client]
module = "m-client"
[server]
module = "m-server"
[handler]
module = "m-handler"
)toml");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  ASSERT_EQ(r.config.kinds.size(), 9u);
  for (const auto& [kind, kc] : r.config.kinds) {
    EXPECT_EQ(kc.modules, std::vector<std::string>{std::string("m-") + kind_name(kind)});
    EXPECT_FALSE(kc.is_default);
    EXPECT_GT(kc.line, 0);
  }
}

TEST(ParseConfig, AddsNoHandlerWithoutAHandlerTable) {
  const ConfigResult r = parse("[service]\nname = \"x\"\n");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.config.has_handler());
  EXPECT_EQ(r.config.kinds.count(MICRO_KIND_HANDLER), 0u);
}

TEST(ParseConfig, KeepsHandlerOptions) {
  const ConfigResult r = parse(
      "[service]\nname = \"x\"\n[handler]\nmodule = \"handler-greeter\"\ngreeting = \"hi\"\n");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  ASSERT_TRUE(r.config.has_handler());
  const KindConfig& handler = r.config.kinds.at(MICRO_KIND_HANDLER);
  EXPECT_EQ(handler.kind, MICRO_KIND_HANDLER);
  EXPECT_EQ(handler.options["greeting"].value<std::string>(), "hi");
  EXPECT_EQ(handler.options.get("greeting")->source().begin.line, 5u);
}

TEST(ParseConfig, ResolvesRelativeModulePathsAgainstTheConfigFilesDirectory) {
  const ConfigResult r = parse(R"toml([service]
name = "x"
[modules]
path = ["./modules", "lib/modules", "../shared/modules", "/opt/micro/modules", "."]
)toml",
                               "/srv/app/conf/micro.toml");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  EXPECT_EQ(
      r.config.module_paths,
      (std::vector<std::string>{"/srv/app/conf/modules", "/srv/app/conf/lib/modules",
                                "/srv/app/shared/modules", "/opt/micro/modules", "/srv/app/conf"}));
}

TEST(ParseConfig, ResolvesModulePathsOfARelativeFileAgainstTheWorkingDirectory) {
  const ConfigResult r =
      parse("[service]\nname = \"x\"\n[modules]\npath = [\"modules\"]\n", "conf/micro.toml");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  EXPECT_EQ(r.config.module_paths,
            std::vector<std::string>{(fs::current_path() / "conf" / "modules").string()});
}

TEST(ParseConfig, AcceptsAnEmptyModulePath) {
  const ConfigResult r = parse("[service]\nname = \"x\"\n[modules]\npath = []\n");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  EXPECT_TRUE(r.config.module_paths.empty());
}

TEST(ParseConfig, AcceptsEveryLogLevel) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    const ConfigResult r =
        parse(std::string("[service]\nname = \"x\"\n[log]\nlevel = \"") + level + "\"\n");
    ASSERT_TRUE(r.ok()) << level;
    EXPECT_EQ(r.config.log_level, level);
  }
}

TEST(ParseConfig, AcceptsWindowsLineEndingsAndAByteOrderMark) {
  const ConfigResult r = parse("\xEF\xBB\xBF[service]\r\nname = \"greeter\"\r\n");
  ASSERT_TRUE(r.ok()) << printed(r).front();
  EXPECT_EQ(r.config.service.name, "greeter");
}

// ---- mistakes ----

TEST(ConfigErrors, PrintAsFileLineKeyMessage) {
  EXPECT_EQ((ConfigError{"a.toml", 3, "registry.ttl_ms", "expected an integer, got a string"})
                .to_string(),
            "a.toml:3: registry.ttl_ms: expected an integer, got a string");
  EXPECT_EQ((ConfigError{"a.toml", 0, "service", "missing"}).to_string(),
            "a.toml: service: missing");
  EXPECT_EQ((ConfigError{"a.toml", 2, "", "bad"}).to_string(), "a.toml:2: bad");
}

TEST(ConfigErrors, ReportTomlSyntaxErrorsWithTheParsersDescriptionAndLine) {
  EXPECT_EQ(printed(parse("[service]\nname = \"greeter\" x\n")),
            Lines{"/etc/micro/greeter.toml:2: TOML syntax error at column 18: Error while parsing "
                  "key-value pair: expected a comment or whitespace, saw 'x'"});
  EXPECT_EQ(printed(parse("[service]\nname = \"a\"\nname = \"b\"\n")),
            Lines{"/etc/micro/greeter.toml:3: TOML syntax error at column 8: Error while parsing "
                  "key-value pair: cannot redefine existing string 'name'"});
  EXPECT_EQ(printed(parse("[service]\nname = \"a\"\n[modules]\npath = [\"x\",\n")),
            Lines{"/etc/micro/greeter.toml:4: TOML syntax error at column 14: Error while parsing "
                  "array: encountered end-of-file"});
}

TEST(ConfigErrors, ReportASyntaxErrorAndNothingElse) {
  // No [service] either, but only the syntax error is worth reading.
  EXPECT_EQ(printed(parse("[registry\n")).size(), 1u);
}

TEST(ConfigErrors, ReportAMissingServiceTable) {
  EXPECT_EQ(printed(parse("")),
            Lines{"/etc/micro/greeter.toml: service: missing table [service]: every config needs "
                  "one, with name = \"...\" (the only required key)"});
  EXPECT_EQ(printed(parse("[log]\nlevel = \"debug\"\n")),
            Lines{"/etc/micro/greeter.toml: service: missing table [service]: every config needs "
                  "one, with name = \"...\" (the only required key)"});
}

TEST(ConfigErrors, ReportAMissingServiceNameAtTheLineOfItsTable) {
  EXPECT_EQ(printed(parse("[log]\nlevel = \"info\"\n\n[service]\nversion = \"1\"\n")),
            Lines{"/etc/micro/greeter.toml:4: service.name: missing: every service needs a name; "
                  "add name = \"greeter\" (your service's name)"});
}

TEST(ConfigErrors, ReportAnEmptyServiceName) {
  EXPECT_EQ(printed(parse("[service]\nname = \"\"\n")),
            Lines{"/etc/micro/greeter.toml:2: service.name: is empty; give the service a name, "
                  "e.g. name = \"greeter\""});
}

TEST(ConfigErrors, ReportWrongTypesInTheServiceTable) {
  EXPECT_EQ(printed(parse(R"toml([service]
name = 42
version = 1.0
address = false
metadata = "team=core"
)toml")),
            (Lines{
                "/etc/micro/greeter.toml:2: service.name: expected a string, got an integer",
                "/etc/micro/greeter.toml:3: service.version: expected a string, got a float",
                "/etc/micro/greeter.toml:4: service.address: expected a string, got a boolean",
                "/etc/micro/greeter.toml:5: service.metadata: expected a table of strings, got a "
                "string (write metadata = { team = \"core\" })",
            }));
}

TEST(ConfigErrors, ReportMetadataValuesThatAreNotStrings) {
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\nmetadata = { team = \"core\", shard = 3, "
                          "tags = [\"a\"] }\n")),
            (Lines{
                "/etc/micro/greeter.toml:3: service.metadata.shard: expected a string, got an "
                "integer",
                "/etc/micro/greeter.toml:3: service.metadata.tags: expected a string, got an "
                "array",
            }));
}

TEST(ConfigErrors, ReportAnUnknownTableAndSuggestTheClosestName) {
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n\n[registy]\nmodule = \"registry-mdns\"\n")),
            Lines{"/etc/micro/greeter.toml:4: registy: unknown table [registy]; did you mean "
                  "[registry]? " +
                  kKnownTables});
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[module]\npath = []\n")),
            Lines{"/etc/micro/greeter.toml:3: module: unknown table [module]; did you mean "
                  "[modules]? " +
                  kKnownTables});
}

TEST(ConfigErrors, ReportAnUnknownTableWithoutAGuessWhenNothingIsClose) {
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[database]\nurl = \"pg://\"\n")),
            Lines{"/etc/micro/greeter.toml:3: database: unknown table [database] " + kKnownTables});
}

TEST(ConfigErrors, ReportKeysOutsideAnyTable) {
  EXPECT_EQ(printed(parse("name = \"greeter\"\nlevel = \"info\"\ncolour = \"blue\"\n[service]\n"
                          "name = \"greeter\"\n")),
            (Lines{
                "/etc/micro/greeter.toml:1: name: a key outside any table; move it below "
                "[service]",
                "/etc/micro/greeter.toml:2: level: a key outside any table; move it below [log]",
                "/etc/micro/greeter.toml:3: colour: a key outside any table; keys belong in a "
                "table such as [service] " +
                    kKnownTables,
            }));
}

TEST(ConfigErrors, ReportAKnownTableWrittenAsAPlainValue) {
  EXPECT_EQ(printed(parse("service = \"greeter\"\nregistry = \"registry-mdns\"\n")),
            (Lines{
                "/etc/micro/greeter.toml:1: service: expected a table, got a string; write "
                "[service] on its own line and put its keys below it",
                "/etc/micro/greeter.toml:2: registry: expected a table, got a string; write "
                "[registry] on its own line and put its keys below it",
            }));
}

TEST(ConfigErrors, ReportUnknownKeysInModulesAndLog) {
  EXPECT_EQ(printed(parse(R"toml([service]
name = "x"
[modules]
paths = ["./modules"]
[log]
levle = "debug"
format = "json"
)toml")),
            (Lines{
                "/etc/micro/greeter.toml:4: modules.paths: unknown key in [modules]; did you "
                "mean path? ([modules] takes only: path)",
                "/etc/micro/greeter.toml:6: log.levle: unknown key in [log]; did you mean level? "
                "([log] takes only: level)",
                "/etc/micro/greeter.toml:7: log.format: unknown key in [log] ([log] takes only: "
                "level)",
            }));
}

TEST(ConfigErrors, ReportAModulePathThatIsNotAnArrayOfStrings) {
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[modules]\npath = \"./modules\"\n")),
            Lines{"/etc/micro/greeter.toml:4: modules.path: expected an array of strings, got a "
                  "string (write path = [\"./modules\"])"});
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[modules]\npath = 3\n")),
            Lines{"/etc/micro/greeter.toml:4: modules.path: expected an array of strings, got an "
                  "integer"});
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[modules]\npath = [\"a\", 1, \"\"]\n")),
            (Lines{
                "/etc/micro/greeter.toml:4: modules.path[1]: expected a string, got an integer",
                "/etc/micro/greeter.toml:4: modules.path[2]: is empty; remove it or name a "
                "directory",
            }));
}

TEST(ConfigErrors, ReportAnUnknownLogLevelListingTheValidOnes) {
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[log]\nlevel = \"verbose\"\n")),
            Lines{"/etc/micro/greeter.toml:4: log.level: unknown level \"verbose\"; use one of "
                  "trace, debug, info, warn, error, critical, off"});
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[log]\nlevel = \"INFO\"\n")),
            Lines{"/etc/micro/greeter.toml:4: log.level: unknown level \"INFO\"; use one of "
                  "trace, debug, info, warn, error, critical, off"});
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[log]\nlevel = 2\n")),
            Lines{"/etc/micro/greeter.toml:4: log.level: expected a string, got an integer"});
}

TEST(ConfigErrors, ReportAModuleOfTheWrongTypeOrEmpty) {
  EXPECT_EQ(printed(parse(R"toml([service]
name = "x"
module = ""
[registry]
module = 1
[transport]
module = ["transport-http"]
[broker]
module = ""
)toml")),
            (Lines{
                "/etc/micro/greeter.toml:3: service.module: is empty; name a module, e.g. module "
                "= \"service-default\"",
                "/etc/micro/greeter.toml:5: registry.module: expected a string, got an integer",
                "/etc/micro/greeter.toml:7: transport.module: expected a string, got an array",
                "/etc/micro/greeter.toml:9: broker.module: is empty; name a module, e.g. module "
                "= \"broker-http\"",
            }));
}

TEST(ConfigErrors, ReportBadCodecModules) {
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[codec]\nmodule = 1\n")),
            Lines{"/etc/micro/greeter.toml:4: codec.module: expected a string or an array of "
                  "strings, got an integer"});
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[codec]\nmodule = []\n")),
            Lines{"/etc/micro/greeter.toml:4: codec.module: is empty; name at least one codec "
                  "module, e.g. module = [\"codec-json\", \"codec-proto\"]"});
  EXPECT_EQ(printed(parse(R"toml([service]
name = "x"
[codec]
module = [
  "codec-json",
  2,
  "",
  "codec-json",
]
)toml")),
            (Lines{
                "/etc/micro/greeter.toml:6: codec.module[1]: expected a string, got an integer",
                "/etc/micro/greeter.toml:7: codec.module[2]: is empty; name a module, e.g. "
                "\"codec-json\"",
                "/etc/micro/greeter.toml:8: codec.module[3]: codec-json is listed twice; remove "
                "one",
            }));
}

TEST(ConfigErrors, ReportAHandlerTableThatNamesNoModule) {
  const ConfigResult r = parse("[service]\nname = \"x\"\n\n[handler]\ngreeting = \"hi\"\n");
  EXPECT_EQ(printed(r),
            Lines{"/etc/micro/greeter.toml:4: handler.module: missing: [handler] must name the "
                  "handler module, e.g. module = \"handler-greeter\" (or remove [handler])"});
  EXPECT_FALSE(r.config.has_handler());
  EXPECT_EQ(printed(parse("[service]\nname = \"x\"\n[handler]\nmodule = \"\"\n")),
            Lines{"/etc/micro/greeter.toml:4: handler.module: is empty; name a module, e.g. "
                  "module = \"handler-greeter\""});
}

TEST(ConfigErrors, CollectEveryMistakeInTheOrderOfTheFile) {
  const ConfigResult r = parse(R"toml([service]
name = ""
address = 8080

[modules]
path = "./modules"

[registry]
module = 7

[codecs]
module = "codec-json"

[log]
level = "loud"
)toml",
                               "greeter.toml");
  EXPECT_EQ(
      printed(r),
      (Lines{
          "greeter.toml:2: service.name: is empty; give the service a name, e.g. name = "
          "\"greeter\"",
          "greeter.toml:3: service.address: expected a string, got an integer",
          "greeter.toml:6: modules.path: expected an array of strings, got a string (write "
          "path = [\"./modules\"])",
          "greeter.toml:9: registry.module: expected a string, got an integer",
          "greeter.toml:11: codecs: unknown table [codecs]; did you mean [codec]? " + kKnownTables,
          "greeter.toml:15: log.level: unknown level \"loud\"; use one of trace, debug, "
          "info, warn, error, critical, off",
      }));
  for (const auto& e : r.errors) EXPECT_EQ(e.file, "greeter.toml");
  EXPECT_EQ(r.errors[3].key, "registry.module");
  EXPECT_EQ(r.errors[3].line, 9);
}

TEST(ConfigErrors, KeepDefaultsForWhatWasWrong) {
  const ConfigResult r = parse("[service]\nname = \"x\"\n[registry]\nmodule = 7\n");
  ASSERT_FALSE(r.ok());
  const KindConfig& registry = r.config.kinds.at(MICRO_KIND_REGISTRY);
  EXPECT_TRUE(registry.is_default);
  EXPECT_EQ(registry.modules, std::vector<std::string>{"registry-mdns"});
}

// ---- files ----

TEST(LoadConfig, ReadsAFileAndResolvesModulePathsBesideIt) {
  TempDir dir;
  const fs::path file = dir.write("conf/greeter.toml",
                                  "[service]\nname = \"greeter\"\n[modules]\npath = [\"mods\"]\n");
  const ConfigResult r = load_config(file.string());
  ASSERT_TRUE(r.ok()) << printed(r).front();
  EXPECT_EQ(r.config.file, file.string());
  EXPECT_EQ(r.config.service.name, "greeter");
  EXPECT_EQ(r.config.module_paths,
            std::vector<std::string>{(dir.path() / "conf" / "mods").string()});
}

TEST(LoadConfig, NamesTheFileInEveryError) {
  TempDir dir;
  const fs::path file = dir.write("bad.toml", "[service]\nname = 1\n");
  EXPECT_EQ(printed(load_config(file.string())),
            Lines{file.string() + ":2: service.name: expected a string, got an integer"});
}

TEST(LoadConfig, ReportsAMissingFileWithTheOsReason) {
  TempDir dir;
  const std::string file = (dir.path() / "nope.toml").string();
  const ConfigResult r = load_config(file);
  EXPECT_EQ(printed(r), Lines{file + ": cannot read the config file: No such file or directory"});
  EXPECT_EQ(r.config.file, file);
}

TEST(LoadConfig, ReportsADirectoryWithTheOsReason) {
  TempDir dir;
  EXPECT_EQ(printed(load_config(dir.path().string())),
            Lines{dir.path().string() + ": cannot read the config file: Is a directory"});
}

TEST(LoadConfig, ReportsAnUnreadableFileWithTheOsReason) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every file";
  TempDir dir;
  const fs::path file = dir.write("secret.toml", "[service]\nname = \"x\"\n");
  fs::permissions(file, fs::perms::none);
  EXPECT_EQ(printed(load_config(file.string())),
            Lines{file.string() + ": cannot read the config file: Permission denied"});
}

}  // namespace
}  // namespace micro::host
