// micro: the command line. Every command takes --config FILE (or MICRO_CONFIG); without one the
// zero-config defaults apply.
#include <CLI/CLI.hpp>
#include <csignal>
#include <set>
#include <cstdio>
#include <future>
#include <iostream>
#include <thread>

#include "micro/host/config.hpp"
#include "scaffold.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/logging.hpp"
#include "micro/host/stack.hpp"
#include "micro/broker.hpp"
#include "micro/client.hpp"
#include "micro/registry.hpp"
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


// Builds just the kinds a command needs (and what they require) from the config or defaults.
std::unique_ptr<Stack> build_for(const Globals& g, const std::vector<micro_kind_t>& kinds) {
  Config config;
  if (!load(g, config)) return nullptr;
  ModuleLoader loader(config.module_paths);
  auto built = Stack::build(config, loader, kinds);
  for (const auto& e : built.errors) std::cerr << e << "\n";
  return std::move(built.stack);
}

void print_error(const micro::Error& e) { std::cerr << "error: " << e.to_string() << "\n"; }

micro::Metadata parse_metadata(const std::vector<std::string>& pairs) {
  micro::Metadata out;
  for (const auto& p : pairs) {
    const size_t eq = p.find('=');
    out[p.substr(0, eq)] = eq == std::string::npos ? "" : p.substr(eq + 1);
  }
  return out;
}

struct CallArgs {
  std::string service, endpoint, body = "{}", address, content_type = "application/json";
  uint64_t timeout_ms = 0;
  std::vector<std::string> metadata;
};

micro::Request request_of(const CallArgs& a) {
  micro::Request request;
  request.service = a.service;
  request.endpoint = a.endpoint;
  request.content_type = a.content_type;
  request.body = a.body;  // a stream ignores it
  request.metadata = parse_metadata(a.metadata);
  return request;
}

micro::CallOptions options_of(const CallArgs& a) {
  micro::CallOptions options;
  options.timeout_ms = a.timeout_ms;
  options.address = a.address;
  return options;
}

int call(const Globals& g, const CallArgs& a) {
  auto stack = build_for(g, {MICRO_KIND_CLIENT});
  if (!stack) return 2;
  micro::Client client(stack->client());
  auto result = client.call(request_of(a), options_of(a));
  if (!result.ok()) {
    print_error(result.error);
    return 1;
  }
  std::cout << result.value.body << "\n";
  return 0;
}

// Sends each line of stdin as one message and prints each message received, until both ends end.
int stream(const Globals& g, const CallArgs& a) {
  auto stack = build_for(g, {MICRO_KIND_CLIENT});
  if (!stack) return 2;
  micro::Client client(stack->client());
  auto opened = client.stream(request_of(a), options_of(a));
  if (!opened.ok()) {
    print_error(opened.error);
    return 1;
  }
  micro::Stream& s = opened.value;
  std::thread sender([&s] {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      micro::Message m;
      m.body = line;
      if (auto e = s.send(m); !e.ok()) return print_error(e);
    }
    s.close_send();
  });
  int status = 0;
  while (true) {
    auto got = s.recv();
    if (!got.ok()) {
      print_error(got.error);
      status = 1;
      break;
    }
    if (!got.value) break;  // the service ended the stream
    std::cout << got.value->body << std::endl;
  }
  sender.join();
  return status;
}

int list(const Globals& g) {
  auto stack = build_for(g, {MICRO_KIND_REGISTRY});
  if (!stack) return 2;
  auto services = micro::Registry(stack->registry()).list_services();
  if (!services.ok()) {
    print_error(services.error);
    return 1;
  }
  std::set<std::string> names;
  for (const auto& s : services.value) names.insert(s.name);
  for (const auto& n : names) std::cout << n << "\n";
  return 0;
}

int get(const Globals& g, const std::string& name) {
  auto stack = build_for(g, {MICRO_KIND_REGISTRY});
  if (!stack) return 2;
  auto services = micro::Registry(stack->registry()).get_service(name);
  if (!services.ok()) {
    print_error(services.error);
    return 1;
  }
  for (const auto& s : services.value) {
    std::cout << "service  " << s.name << "\nversion  " << s.version << "\n";
    for (const auto& [k, v] : s.metadata) std::cout << "metadata " << k << "=" << v << "\n";
    for (const auto& n : s.nodes) {
      std::cout << "\nnode     " << n.id << "  " << n.address;
      for (const auto& [k, v] : n.metadata) std::cout << "  " << k << "=" << v;
      std::cout << "\n";
    }
    if (!s.endpoints.empty()) std::cout << "\n";
    for (const auto& e : s.endpoints) {
      std::cout << "endpoint " << e.name;
      if (!e.request.empty()) std::cout << "(" << e.request << ") returns (" << e.response << ")";
      for (const auto& [k, v] : e.metadata) std::cout << "  " << k << "=" << v;
      std::cout << "\n";
    }
    std::cout << "\n";
  }
  return 0;
}

int watch(const Globals& g, const std::string& name) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto stack = build_for(g, {MICRO_KIND_REGISTRY});
  if (!stack) return 2;
  auto w = micro::Registry(stack->registry()).watch(name, [](const micro::RegistryEvent& e) {
    for (const auto& n : e.service.nodes)
      std::cout << micro::to_string(e.type) << " " << e.service.name << " " << e.service.version
                << " " << n.id << " " << n.address << std::endl;
  });
  if (!w.ok()) {
    print_error(w.error);
    return 1;
  }
  int signal = 0;
  sigwait(&stop_signals, &signal);
  return 0;
}

struct PublishArgs {
  std::string topic, body = "{}", content_type = "application/json";
  std::vector<std::string> headers;
};

// Publishes one message through the client (and so the broker the config names).
int publish(const Globals& g, const PublishArgs& a) {
  auto stack = build_for(g, {MICRO_KIND_CLIENT});
  if (!stack) return 2;
  micro::Message message;
  message.header = parse_metadata(a.headers);
  message.header["content-type"] = a.content_type;
  message.body = a.body;
  if (auto e = micro::Client(stack->client()).publish(a.topic, message); !e.ok()) {
    print_error(e);
    return 1;
  }
  return 0;
}

// One message as one line: the body, with control bytes escaped (\n, \r, \\, \xNN) so a line is
// always one message.
std::string one_line(const std::string& body) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(body.size());
  for (unsigned char c : body) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Prints each message published on `topic` as it arrives, until SIGINT or SIGTERM.
int subscribe(const Globals& g, const std::string& topic, const std::string& queue,
              bool with_headers) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto stack = build_for(g, {MICRO_KIND_BROKER});
  if (!stack) return 2;
  micro::Broker broker(stack->broker());
  if (auto e = broker.connect(); !e.ok()) {
    print_error(e);
    return 1;
  }
  micro::SubscribeOptions options;
  options.queue = queue;
  auto subscription = broker.subscribe(
      topic,
      [with_headers](std::string_view, const micro::Message& m) {
        std::string line;
        if (with_headers)
          for (const auto& [k, v] : m.header) line += k + "=" + one_line(v) + " ";
        line += one_line(m.body);
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fflush(stdout);
        return micro::Error{};
      },
      options);
  if (!subscription.ok()) {
    print_error(subscription.error);
    return 1;
  }
  host_logger()->info("subscribed to '{}'{}{} at {}; SIGINT or SIGTERM ends", topic,
                      queue.empty() ? "" : " in queue ", queue, broker.address());
  int signal = 0;
  sigwait(&stop_signals, &signal);
  subscription.value.stop();
  (void)broker.disconnect();
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

  std::string new_kind, new_name, new_dir;
  auto* new_cmd = app.add_subcommand("new", "Create something new");
  new_cmd->require_subcommand(1);
  auto* new_module = new_cmd->add_subcommand(
      "module", "Scaffold an out-of-tree module project that builds against the installed SDK");
  new_module->add_option("--kind", new_kind, "codec, transport, registry, selector, broker, "
                                             "client, server, service or handler")
      ->required();
  new_module->add_option("--name", new_name, "module name, e.g. registry-mine")->required();
  new_module->add_option("DIR", new_dir, "folder to create")->required();
  new_module->callback([&] { status = micro::cli::new_module(new_kind, new_name, new_dir); });

  CallArgs call_args;
  auto add_call_options = [&](CLI::App* cmd) {
    cmd->add_option("SERVICE", call_args.service, "service name")->required();
    cmd->add_option("ENDPOINT", call_args.endpoint, "endpoint, e.g. Greeter.Hello")->required();
    cmd->add_option("--address", call_args.address, "call this host:port, skipping discovery");
    cmd->add_option("--content-type", call_args.content_type, "content type of the body");
    cmd->add_option("--metadata,-m", call_args.metadata, "KEY=VALUE metadata, repeatable");
  };
  auto* call_cmd = app.add_subcommand("call", "Call an endpoint with a JSON body; print the answer");
  add_call_options(call_cmd);
  call_cmd->add_option("BODY", call_args.body, "request body (default {})");
  call_cmd->add_option("--timeout", call_args.timeout_ms, "deadline in ms (default: client's)");
  call_cmd->callback([&] { status = call(g, call_args); });
  auto* stream_cmd =
      app.add_subcommand("stream", "Open a stream: stdin lines out, received messages printed");
  add_call_options(stream_cmd);
  stream_cmd->callback([&] { status = stream(g, call_args); });

  app.add_subcommand("list", "List the services in the registry")->callback([&] {
    status = list(g);
  });
  std::string service_name;
  auto* get_cmd = app.add_subcommand("get", "Show a service: versions, nodes, metadata, endpoints");
  get_cmd->add_option("SERVICE", service_name, "service name")->required();
  get_cmd->callback([&] { status = get(g, service_name); });
  auto* watch_cmd = app.add_subcommand("watch", "Print registry events as they happen (Ctrl-C ends)");
  watch_cmd->add_option("SERVICE", service_name, "only this service");
  watch_cmd->callback([&] { status = watch(g, service_name); });

  PublishArgs publish_args;
  auto* publish_cmd =
      app.add_subcommand("publish", "Publish a message on a topic through the configured broker");
  publish_cmd->add_option("TOPIC", publish_args.topic, "topic")->required();
  publish_cmd->add_option("BODY", publish_args.body, "message body (default {})");
  publish_cmd->add_option("--content-type", publish_args.content_type, "content type of the body");
  publish_cmd->add_option("--header,-H", publish_args.headers, "KEY=VALUE header, repeatable");
  publish_cmd->callback([&] { status = publish(g, publish_args); });
  std::string sub_topic, sub_queue;
  bool sub_headers = false;
  auto* subscribe_cmd = app.add_subcommand(
      "subscribe", "Print each message published on a topic, one line each, until a signal");
  subscribe_cmd->add_option("TOPIC", sub_topic, "topic")->required();
  subscribe_cmd->add_option("--queue,-q", sub_queue,
                            "queue group: of its members, one gets each message");
  subscribe_cmd->add_flag("--headers", sub_headers, "print the headers (k=v ...) before the body");
  subscribe_cmd->callback([&] { status = subscribe(g, sub_topic, sub_queue, sub_headers); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}
