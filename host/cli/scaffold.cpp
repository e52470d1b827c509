#include "scaffold.hpp"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

namespace micro::cli {

namespace {

namespace fs = std::filesystem;

// Each kind's class body: the base class and every method it must implement.
const std::map<std::string, std::pair<std::string, std::string>>& kinds() {
  static const std::map<std::string, std::pair<std::string, std::string>> table = {
      {"codec", {"micro::CodecPlugin", R"(  std::vector<std::string> content_types() override { return {"application/x-example"}; }

  micro::Error decode(std::string_view content_type, std::string_view wire,
                      const micro::SchemaRef* schema, std::string& out) override {
    (void)content_type, (void)wire, (void)schema, (void)out;
    return micro::Error::not_implemented("decode is not written yet");
  }

  micro::Error encode(std::string_view content_type, std::string_view canonical,
                      const micro::SchemaRef* schema, std::string& out) override {
    (void)content_type, (void)canonical, (void)schema, (void)out;
    return micro::Error::not_implemented("encode is not written yet");
  }
)"}},
      {"transport", {"micro::TransportPlugin", R"(  void dial(const std::string& address, const micro::DialOptions& options,
            micro::SocketImplCallback on_dialed) override {
    (void)options;
    on_dialed(micro::Error::not_implemented("dial " + address + " is not written yet"), nullptr);
  }

  std::unique_ptr<micro::ListenerImpl> listen(const std::string& address,
                                              micro::SocketImplCallback on_accept) override {
    (void)on_accept;
    throw micro::Exception(micro::Error::not_implemented("listen " + address + " is not written yet"));
  }
)"}},
      {"registry", {"micro::RegistryPlugin", R"(  void register_service(const micro::Service& service, const micro::RegisterOptions& options,
                        micro::Done done) override {
    (void)service, (void)options;
    done(micro::Error::not_implemented("register_service is not written yet"));
  }

  void deregister_service(const micro::Service& service, micro::Done done) override {
    (void)service;
    done(micro::Error::not_implemented("deregister_service is not written yet"));
  }

  void get_service(const std::string& name, micro::ServicesCallback done) override {
    done(micro::Error::not_implemented("get_service " + name + " is not written yet"), {});
  }

  void list_services(micro::ServicesCallback done) override {
    done(micro::Error::not_implemented("list_services is not written yet"), {});
  }

  uint64_t watch(const std::string& service, micro::RegistryEventCallback on_event) override {
    (void)service, (void)on_event;
    throw micro::Exception(micro::Error::not_implemented("watch is not written yet"));
  }

  void unwatch(uint64_t watch_id) override { (void)watch_id; }
)"}},
      {"selector", {"micro::SelectorPlugin", R"(  void select(const std::string& service, const micro::SelectOptions& options,
              micro::NodeCallback done) override {
    (void)options;
    done(micro::Error::not_implemented("select " + service + " is not written yet"), {});
  }

  void mark(const std::string& service, const std::string& node_id,
            const micro::Error& outcome) override {
    (void)service, (void)node_id, (void)outcome;
  }

  void reset(const std::string& service) override { (void)service; }
)"}},
      {"broker", {"micro::BrokerPlugin", R"(  void connect(micro::Done done) override { done({}); }
  void disconnect(micro::Done done) override { done({}); }

  void publish(const std::string& topic, micro::Message message, micro::Done done) override {
    (void)message;
    done(micro::Error::not_implemented("publish to " + topic + " is not written yet"));
  }

  uint64_t subscribe(const std::string& topic, const micro::SubscribeOptions& options,
                     micro::BrokerHandler handler) override {
    (void)options, (void)handler;
    throw micro::Exception(micro::Error::not_implemented("subscribe " + topic + " is not written yet"));
  }

  void unsubscribe(uint64_t subscription_id) override { (void)subscription_id; }
  std::string_view address() const override { return {}; }
)"}},
      {"client", {"micro::ClientPlugin", R"(  void call(micro::Request request, const micro::CallOptions& options,
            micro::ResponseCallback done) override {
    (void)options;
    done(micro::Error::not_implemented("call " + request.endpoint + " is not written yet"), {});
  }

  void stream(micro::Request request, const micro::CallOptions& options,
              micro::StreamImplCallback done) override {
    (void)options;
    done(micro::Error::not_implemented("stream " + request.endpoint + " is not written yet"),
         nullptr);
  }

  void publish(const std::string& topic, micro::Message message, micro::Done done) override {
    (void)message;
    done(micro::Error::not_implemented("publish to " + topic + " is not written yet"));
  }
)"}},
      {"server", {"micro::ServerPlugin", R"(  micro::Error handle(micro::EndpointHandler handler) override {
    return micro::Error::not_implemented("handle " + handler.name + " is not written yet");
  }

  micro::Error subscribe(const std::string& topic, const micro::SubscribeOptions& options,
                         micro::BrokerHandler handler) override {
    (void)options, (void)handler;
    return micro::Error::not_implemented("subscribe " + topic + " is not written yet");
  }

  void start(micro::Done done) override { done(micro::Error::not_implemented("start")); }
  void stop(micro::Done done) override { done({}); }
  std::string_view address() const override { return {}; }
)"}},
      {"service", {"micro::ServicePlugin", R"(  void start(micro::Done done) override { done(micro::Error::not_implemented("start")); }
  void stop(micro::Done done) override { done({}); }
)"}},
      {"handler", {"micro::HandlerPlugin", R"(  // Register endpoints here, e.g. with micro::Server(ctx.deps().server).handle(...), keeping
  // the micro::Server as a member so the handlers outlive the server's use of them.
)"}},
  };
  return table;
}

// "registry-mine" -> "RegistryMine"
std::string class_name(const std::string& name) {
  std::string out;
  bool upper = true;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out.empty() || std::isdigit(static_cast<unsigned char>(out[0])) ? "Module" + out : out;
}

bool write(const fs::path& file, const std::string& text) {
  std::ofstream out(file);
  out << text;
  return static_cast<bool>(out);
}

}  // namespace

int new_module(const std::string& kind, const std::string& name, const std::string& dir) {
  auto it = kinds().find(kind);
  if (it == kinds().end()) {
    std::cerr << "new module: unknown kind '" << kind << "' (use one of:";
    for (const auto& [k, v] : kinds()) std::cerr << " " << k;
    std::cerr << ")\n";
    return 2;
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      std::cerr << "new module: name '" << name
                << "' may hold only letters, digits, '-' and '_' (it names the .so file)\n";
      return 2;
    }
  }
  if (name.empty()) {
    std::cerr << "new module: --name is empty\n";
    return 2;
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    std::cerr << "new module: " << dir << " exists and is not empty; choose a new folder\n";
    return 2;
  }
  fs::create_directories(fs::path(dir) / "src", ec);
  if (ec) {
    std::cerr << "new module: cannot create " << dir << ": " << ec.message() << "\n";
    return 1;
  }
  const std::string cls = class_name(name);
  const auto& [base, body] = it->second;

  const std::string cmake = "cmake_minimum_required(VERSION 3.22)\nproject(" + cls +
                            " LANGUAGES CXX)\n\n"
                            "set(CMAKE_CXX_STANDARD 17)\n"
                            "set(CMAKE_CXX_STANDARD_REQUIRED ON)\n\n"
                            "# The installed micro SDK: headers and micro_add_module().\n"
                            "find_package(micro 0.1 REQUIRED)\n\n"
                            "# Builds " + name + ".so, exporting only micro_module_entry.\n"
                            "micro_add_module(" + name + " SOURCES src/" + name + ".cpp)\n"
                            "target_compile_options(" + name +
                            " PRIVATE -Wall -Wextra)\n";
  const std::string source =
      "// " + name + ": a " + kind + " module. Fill in the methods; each says what it must do in\n"
      "// sdk/include/micro/" + kind + ".hpp (and the C contract in " + kind + ".h).\n"
      "#include \"micro/module.hpp\"\n\n"
      "namespace {\n\n"
      "class " + cls + " final : public " + base + " {\n"
      " public:\n"
      "  // The TOML keys this module accepts in its [" + kind + "] table.\n"
      "  static std::vector<micro::OptionSpec> options() { return {}; }\n\n"
      "  explicit " + cls + "(const micro::CreateContext& ctx) : log_(ctx.logger()) {\n"
      "    log_.info(\"" + name + " created for service \", ctx.service().name);\n"
      "  }\n\n" +
      body +
      "\n private:\n"
      "  micro::Logger log_;\n"
      "};\n\n"
      "}  // namespace\n\n"
      "MICRO_MODULE(\"" + name + "\", \"0.1.0\", \"A " + kind + " module\",\n"
      "             micro::plugin<" + cls + ">(\"" + name + "\", \"A " + kind + " module\"));\n";
  const std::string readme =
      "# " + name + "\n\nA micro " + kind + " module.\n\n"
      "Build against the installed SDK:\n\n"
      "```sh\ncmake -S . -B build -DCMAKE_PREFIX_PATH=<micro install prefix>\n"
      "cmake --build build\nmicro modules inspect build/" + name + ".so\n```\n\n"
      "Use it by putting the folder in `[modules] path` (or `MICRO_MODULE_PATH`) and naming it:\n\n"
      "```toml\n[" + kind + "]\nmodule = \"" + name + "\"\n```\n";
  const fs::path root(dir);
  if (!write(root / "CMakeLists.txt", cmake) || !write(root / "src" / (name + ".cpp"), source) ||
      !write(root / "README.md", readme)) {
    std::cerr << "new module: cannot write into " << dir << "\n";
    return 1;
  }
  std::cout << "created " << (root / "CMakeLists.txt").string() << ", "
            << (root / "src" / (name + ".cpp")).string() << " and "
            << (root / "README.md").string() << "\n"
            << "build it: cmake -S " << dir << " -B " << dir << "/build && cmake --build " << dir
            << "/build\n";
  return 0;
}

}  // namespace micro::cli
