// micro: the command line. Every command takes --config FILE (or MICRO_CONFIG); without one the
// zero-config defaults apply.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <future>
#include <iostream>

#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"
#include "micro/host/stack.hpp"
#include "micro/service.h"

namespace {

using namespace micro::host;

struct Globals {
  std::string config_file;
  std::string log_level;
};

// Loads the config named by --config / MICRO_CONFIG, or the defaults. Prints every error.
bool load(const Globals& g, Config& out) {
  if (g.config_file.empty()) {
    out = default_config();
  } else {
    ConfigResult r = load_config(g.config_file);
    for (const auto& e : r.errors) std::cerr << e.to_string() << "\n";
    if (!r.ok()) return false;
    out = std::move(r.config);
  }
  const std::string level = g.log_level.empty() ? out.log_level : g.log_level;
  if (!set_log_level(level)) {
    std::cerr << "--log-level: unknown level '" << level
              << "' (use trace, debug, info, warn, error, critical or off)\n";
    return false;
  }
  return true;
}

std::string kinds_of(const LoadedModule& m) {
  std::string out;
  for (const auto& p : m.plugins())
    out += (out.empty() ? "" : ",") + std::string(kind_name(static_cast<micro_kind_t>(p.kind)));
  return out;
}

int modules_list(const Globals& g) {
  Config config;
  if (!load(g, config)) return 2;
  ModuleLoader loader(config.module_paths);
  const auto files = loader.find_all();
  if (files.empty()) {
    std::cerr << "no modules found; searched:";
    for (const auto& p : loader.search_paths()) std::cerr << " " << p.string();
    std::cerr << "\n";
    return 1;
  }
  std::printf("%-22s %-12s %-9s %-5s %s\n", "NAME", "KIND", "VERSION", "ABI", "FILE");
  int status = 0;
  for (const auto& file : files) {
    LoadResult r = loader.load(file);
    if (!r.ok()) {
      std::printf("%-22s %-12s %-9s %-5s %s\n", file.stem().c_str(), "-", "-", "-", file.c_str());
      std::cerr << r.error.detail() << "\n";
      status = 1;
      continue;
    }
    const auto& d = r.module->descriptor();
    std::printf("%-22s %-12s %-9s %-5s %s\n", r.module->name().c_str(),
                kinds_of(*r.module).c_str(), r.module->version().c_str(),
                abi_version_string(d.abi_major, d.abi_minor).c_str(), file.c_str());
  }
  return status;
}

const char* option_type(uint32_t t) {
  switch (t) {
    case MICRO_OPTION_STRING: return "string";
    case MICRO_OPTION_INT: return "integer";
    case MICRO_OPTION_FLOAT: return "float";
    case MICRO_OPTION_BOOL: return "boolean";
    case MICRO_OPTION_STRING_LIST: return "string array";
    case MICRO_OPTION_STRING_MAP: return "string table";
    default: return "?";
  }
}

int modules_inspect(const Globals& g, const std::string& what) {
  Config config;
  if (!load(g, config)) return 2;
  ModuleLoader loader(config.module_paths);
  const bool is_path = what.find('/') != std::string::npos ||
                       (what.size() > 3 && what.substr(what.size() - 3) == ".so");
  LoadResult r = is_path ? loader.load(what) : loader.load_by_name(what);
  if (!r.ok()) {
    std::cerr << r.error.detail() << "\n";
    return 1;
  }
  const auto& m = *r.module;
  const auto& d = m.descriptor();
  std::printf("module:      %s %s\nfile:        %s\nabi:         %s (host %s)\n", m.name().c_str(),
              m.version().c_str(), m.path().c_str(),
              abi_version_string(d.abi_major, d.abi_minor).c_str(),
              abi_version_string(MICRO_ABI_VERSION_MAJOR, MICRO_ABI_VERSION_MINOR).c_str());
  if (!m.description().empty()) std::printf("description: %s\n", m.description().c_str());
  for (const auto& p : m.plugins()) {
    std::printf("\n%s %s: %s\n", kind_name(static_cast<micro_kind_t>(p.kind)), p.name,
                p.description ? p.description : "");
    std::string requires;
    for (micro_kind_t k : all_kinds())
      if (p.required_kinds & MICRO_KIND_BIT(k)) requires += std::string(" ") + kind_name(k);
    std::printf("  requires:%s\n", requires.empty() ? " nothing" : requires.c_str());
    std::string optional;
    for (micro_kind_t k : all_kinds())
      if (p.optional_kinds & MICRO_KIND_BIT(k)) optional += std::string(" ") + kind_name(k);
    if (!optional.empty()) std::printf("  uses if present:%s\n", optional.c_str());
    if (p.option_count == 0) std::printf("  options:  none\n");
    for (size_t i = 0; i < p.option_count; ++i) {
      const micro_option_spec_t s = micro::read_struct(p.options[i]);
      std::printf("  option %-16s %-13s %s%s%s\n", s.name, option_type(s.type),
                  s.required ? "(required) " : "",
                  s.default_value ? (std::string("default ") + s.default_value + ". ").c_str() : "",
                  s.help ? s.help : "");
    }
  }
  return 0;
}

// The kinds `micro run` assembles: the service, plus the handler module when one is named.
std::vector<micro_kind_t> run_kinds(const Config& config) {
  std::vector<micro_kind_t> kinds = {MICRO_KIND_SERVICE};
  if (config.has_handler()) kinds.push_back(MICRO_KIND_HANDLER);
  return kinds;
}

// Reports every mistake at once: the file's shape, then (when it parsed) each module's options
// and whether every module `micro run` would need can be found and loaded.
int config_check(const Globals& g, const std::string& file) {
  const std::string path = file.empty() ? g.config_file : file;
  ConfigResult parsed = path.empty() ? ConfigResult{default_config(), {}} : load_config(path);
  for (const auto& e : parsed.errors) std::cerr << e.to_string() << "\n";
  if (parsed.config.kinds.empty()) return 2;  // a syntax error or no file: nothing more to check
  ModuleLoader loader(parsed.config.module_paths);
  // Every kind the file names first, then the rest of what `micro run` would assemble.
  std::vector<micro_kind_t> kinds;
  for (const auto& [kind, kc] : parsed.config.kinds)
    if (!kc.is_default) kinds.push_back(kind);
  for (micro_kind_t kind : run_kinds(parsed.config)) kinds.push_back(kind);
  auto result = Stack::build(parsed.config, loader, kinds, /*create=*/false);
  for (const auto& e : result.errors) std::cerr << e << "\n";
  if (!parsed.ok() || !result.ok()) return 2;
  std::cout << parsed.config.file << ": ok\n";
  return 0;
}

micro::Error call_service(void (*fn)(void*, micro_done_fn, void*), void* self) {
  std::promise<micro::Error> done;
  fn(
      self,
      [](void* ctx, const micro_error_t* e) {
        static_cast<std::promise<micro::Error>*>(ctx)->set_value(micro::Error::from_c(e));
      },
      &done);
  return done.get_future().get();
}

int run(const Globals& g, const std::string& file) {
  Globals with_file = g;
  if (!file.empty()) with_file.config_file = file;
  // Block the stop signals before any module starts a thread, so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Config config;
  if (!load(with_file, config)) return 2;
  ModuleLoader loader(config.module_paths);
  auto built = Stack::build(config, loader, run_kinds(config));
  for (const auto& e : built.errors) std::cerr << e << "\n";
  if (!built.ok()) return 2;
  auto log = host_logger();
  const micro_service_instance_t service = built.stack->service();
  const auto vtable = micro::read_struct(service.vtable);
  if (vtable.start == nullptr || vtable.stop == nullptr) {
    std::cerr << "the service module does not implement start/stop\n";
    return 2;
  }
  if (auto e = call_service(vtable.start, service.self); !e.ok()) {
    log->error("service {} failed to start: {}", config.service.name, e.to_string());
    return 1;
  }
  log->info("service {} running; SIGINT or SIGTERM stops it", config.service.name);
  int signal = 0;
  sigwait(&stop_signals, &signal);
  log->info("received {}, stopping", signal == SIGINT ? "SIGINT" : "SIGTERM");
  if (auto e = call_service(vtable.stop, service.self); !e.ok()) {
    log->error("service {} did not stop cleanly: {}", config.service.name, e.to_string());
    return 1;
  }
  built.stack.reset();
  log->info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"micro: run, inspect and call micro services"};
  app.set_version_flag("--version", std::string("micro ") + MICRO_VERSION + " (ABI " +
                                        abi_version_string(MICRO_ABI_VERSION_MAJOR,
                                                           MICRO_ABI_VERSION_MINOR) +
                                        ")");
  app.require_subcommand(1);
  app.fallthrough();
  Globals g;
  app.add_option("--config", g.config_file, "TOML config file (default: the zero-config stack)")
      ->envname("MICRO_CONFIG");
  app.add_option("--log-level", g.log_level, "trace, debug, info, warn, error, critical, off");
  int status = 0;

  auto* modules = app.add_subcommand("modules", "List and inspect modules");
  modules->require_subcommand(1);
  modules->add_subcommand("list", "Every module in the search path: name, kind, version, ABI")
      ->callback([&] { status = modules_list(g); });
  std::string inspect_what;
  auto* inspect = modules->add_subcommand("inspect", "Show a module's plugins and options");
  inspect->add_option("MODULE", inspect_what, "module file or name")->required();
  inspect->callback([&] { status = modules_inspect(g, inspect_what); });

  auto* config = app.add_subcommand("config", "Work with config files");
  config->require_subcommand(1);
  std::string check_file;
  auto* check = config->add_subcommand("check", "Validate a config: exit 0, or print every error");
  check->add_option("FILE", check_file, "config file (default: --config)");
  check->callback([&] { status = config_check(g, check_file); });

  std::string run_file;
  auto* run_cmd = app.add_subcommand("run", "Assemble a service from TOML and run it until a signal");
  run_cmd->add_option("FILE", run_file, "config file (default: --config)");
  run_cmd->callback([&] { status = run(g, run_file); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}
