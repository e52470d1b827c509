#include "generator.hpp"

#include <google/protobuf/io/printer.h>
#include <google/protobuf/io/zero_copy_stream.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "file_model.hpp"

namespace micro::codegen {
namespace {

constexpr size_t kColumns = 100;

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : separator) + parts[i];
  return out;
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

// `text` with each $name$ replaced by its value in `vars`.
std::string substitute(std::string text, const std::map<std::string, std::string>& vars) {
  for (const auto& [name, value] : vars) {
    const std::string token = "$" + name + "$";
    size_t at = text.find(token);
    while (at != std::string::npos) {
      text.replace(at, token.size(), value);
      at = text.find(token, at + value.size());
    }
  }
  return text;
}

// `indent head( items... )tail` on one line when it fits in 100 columns; otherwise wrapped after
// commas with the items aligned after the opening bracket, or, when even that does not fit,
// broken after the bracket with the items indented four more columns (clang-format's way).
std::string wrapped(const std::string& indent, const std::string& head,
                    const std::vector<std::string>& items, const std::string& tail, char open = '(',
                    char close = ')') {
  std::vector<std::string> pieces;
  for (size_t i = 0; i < items.size(); ++i)
    pieces.push_back(items[i] + (i + 1 < items.size() ? "," : std::string(1, close) + tail));
  if (items.empty()) pieces.push_back(std::string(1, close) + tail);
  const std::string first = indent + head + open;
  auto fill = [&](std::string line, const std::string& continuation) {
    std::string out;
    bool line_has_item = false;
    for (const std::string& piece : pieces) {
      const std::string sep = line_has_item ? " " : "";
      if (line_has_item && line.size() + sep.size() + piece.size() > kColumns) {
        out += line + "\n";
        line = continuation + piece;
      } else {
        line += sep + piece;
      }
      line_has_item = true;
    }
    return out + line + "\n";
  };
  std::string one_line = first + join(items, ", ") + close + tail;
  if (one_line.size() <= kColumns) return one_line + "\n";
  size_t widest = 0;
  for (const std::string& piece : pieces) widest = std::max(widest, piece.size());
  if (first.size() + widest <= kColumns) return fill(first, std::string(first.size(), ' '));
  const std::string continuation = indent + "    ";
  return first + "\n" + fill(continuation, continuation);
}

void add_comment(std::string& out, const std::string& indent,
                 const std::vector<std::string>& lines) {
  for (const std::string& line : lines) out += indent + (line.empty() ? "//" : "// " + line) + "\n";
}

std::string rule(const std::string& title) {
  std::string line = "// ---- " + title + " ";
  return line + std::string(line.size() < kColumns ? kColumns - line.size() : 0, '-') + "\n";
}

// What each kind of method takes and returns, on the client and in the handler.
struct Signatures {
  std::string client_return;
  std::vector<std::string> client_params;  // without the trailing CallOptions
  std::string client_usage;                // a comment line on how to use the result
  std::string stub_call;                   // the .cc body's expression
  std::vector<std::string> handler_params;
  std::string registrar;  // Registrar method
};

Signatures signatures_of(const FileModel& file, const MethodModel& m) {
  const std::string& micro = file.micro;
  const std::string types = m.request_type + ", " + m.response_type;
  Signatures s;
  if (!m.client_streaming && !m.server_streaming) {
    s.client_return = micro + "Result<" + m.response_type + ">";
    s.client_params = {"const " + m.request_type + "& request"};
    s.stub_call = "stub_.call<" + m.response_type + ">(" + m.constant + ", request, options)";
    s.handler_params = {"const " + m.request_type + "& request", m.response_type + "& response"};
    s.registrar = "unary";
  } else if (!m.client_streaming) {
    s.client_return = micro + "ClientReader<" + m.response_type + ">";
    s.client_params = {"const " + m.request_type + "& request"};
    s.client_usage = "Sends `request`; recv() then yields each response, and nullopt at the end.";
    s.stub_call =
        "stub_.server_stream<" + m.response_type + ">(" + m.constant + ", request, options)";
    s.handler_params = {"const " + m.request_type + "& request",
                        micro + "ServerWriter<" + m.response_type + ">& writer"};
    s.registrar = "server_stream";
  } else if (!m.server_streaming) {
    s.client_return = micro + "ClientWriter<" + types + ">";
    s.client_usage = "send() each request, then close_and_recv() for the response.";
    s.stub_call = "stub_.open_stream<" + s.client_return + ">(" + m.constant + ", options)";
    s.handler_params = {micro + "ServerReader<" + m.request_type + ">& reader",
                        m.response_type + "& response"};
    s.registrar = "client_stream";
  } else {
    s.client_return = micro + "ClientReaderWriter<" + types + ">";
    s.client_usage = "send() requests and recv() responses as they come; close_send() when done.";
    s.stub_call = "stub_.open_stream<" + s.client_return + ">(" + m.constant + ", options)";
    s.handler_params = {micro + "ServerReaderWriter<" + types + ">& stream"};
    s.registrar = "bidi_stream";
  }
  return s;
}

std::string endpoint_list(const ServiceModel& service) {
  std::vector<std::string> names;
  for (const MethodModel& m : service.methods) names.push_back(m.endpoint);
  if (names.size() <= 1) return join(names, "");
  const std::string last = names.back();
  names.pop_back();
  return join(names, ", ") + " and " + last;
}

// Appends `text` word by word as comment lines of at most 100 columns.
void add_paragraph(std::string& out, const std::string& indent, const std::string& text) {
  std::string line;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    if (!line.empty() && indent.size() + 3 + line.size() + 1 + word.size() > kColumns) {
      out += indent + "// " + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    start = end + 1;
  }
  if (!line.empty()) out += indent + "// " + line + "\n";
}

// ---- the header ----------------------------------------------------------------------------

void add_client_class(std::string& out, const FileModel& file, const ServiceModel& service) {
  const std::string& micro = file.micro;
  const std::string client = service.name + "Client";
  add_comment(out, "", service.comment);
  if (!service.comment.empty()) out += "//\n";
  add_paragraph(out, "",
                substitute("Calls the $service$ service. Copyable: it holds a $micro$Client, "
                           "which does not own the client instance. Every form but the callback "
                           "one blocks, so never call them on a client module's callback thread.",
                           {{"service", service.name}, {"micro", micro}}));
  out += "class " + client + " {\n public:\n";
  out += "  // `service`: the name the server registered under. `metadata` goes with every call.\n";
  out += wrapped("  ", client,
                 {micro + "Client client", "std::string service", micro + "Metadata metadata = {}"},
                 ";");
  for (const MethodModel& m : service.methods) {
    const Signatures s = signatures_of(file, m);
    out += "\n";
    add_comment(out, "  ", m.comment);
    if (!s.client_usage.empty()) add_comment(out, "  ", {s.client_usage});
    std::vector<std::string> params = s.client_params;
    params.push_back("const " + micro + "CallOptions& options = {}");
    out += wrapped("  ", s.client_return + " " + m.name, params, " const;");
    if (!m.client_streaming && !m.server_streaming) {
      out += "  // The same, without blocking: `done` runs once, on any thread.\n";
      out += wrapped(
          "  ", "void " + m.name,
          {"const " + m.request_type + "& request", "const " + micro + "CallOptions& options",
           "std::function<void(const " + micro + "Error&, " + m.response_type + ")> done"},
          " const;");
    }
  }
  out += "\n private:\n  " + micro + "rpc::Stub stub_;\n};\n";
}

void add_handler_class(std::string& out, const FileModel& file, const ServiceModel& service) {
  const std::string& micro = file.micro;
  const std::string handler = service.name + "Handler";
  add_paragraph(out, "",
                substitute("Serves the $service$ service: derive from it, implement every method "
                           "and register an instance with Register$handler$. A method fails the "
                           "call by returning an error or by throwing (a $micro$Exception keeps "
                           "its error; any other exception becomes a 500 with its message).",
                           {{"service", service.name}, {"handler", handler}, {"micro", micro}}));
  out += "//\n";
  add_paragraph(out, "",
                "Threads: a unary method runs on the server module's thread that received the "
                "call (keep it short); a streaming method runs on a thread of its own, and its "
                "stream's send() and recv() block. Methods run several at once, so an "
                "implementation must be thread-safe.");
  out += "class " + handler + " {\n public:\n";
  out += "  virtual ~" + handler + "() = default;\n";
  for (const MethodModel& m : service.methods) {
    out += "\n";
    add_comment(out, "  ", m.comment);
    out += wrapped("  ", "virtual " + micro + "Error " + m.name,
                   signatures_of(file, m).handler_params, " = 0;");
  }
  out += "};\n\n";
  add_paragraph(out, "",
                substitute("Serves `handler` on `server` as $endpoints$ (call it before the "
                           "server starts), with the request and response schemas so that JSON "
                           "callers are transcoded. The server keeps the handler until it is "
                           "destroyed.",
                           {{"endpoints", endpoint_list(service)}}));
  out += wrapped("", micro + "Error Register" + handler,
                 {micro + "Server server", "std::shared_ptr<" + handler + "> handler"}, ";");
}

void add_event_declarations(std::string& out, const FileModel& file) {
  if (file.event_types.empty()) return;
  const std::string& micro = file.micro;
  out += "\n" + rule("events") + "\n";
  add_paragraph(out, "",
                "Publish sends a message on `topic` through the client's broker, as protobuf "
                "binary. Subscribe delivers each message published on `topic` to `handler` once "
                "the server has started: on a broker thread, one at a time, from protobuf or "
                "JSON bodies; the error the handler returns goes back to the publisher.");
  for (const std::string& type : file.event_types) {
    out += wrapped("", micro + "Error Publish",
                   {micro + "Client client", "std::string_view topic", "const " + type + "& event"},
                   ";");
    out += wrapped("", micro + "Error Subscribe",
                   {micro + "Server server", "std::string_view topic",
                    "std::function<" + micro + "Error(const " + type + "&)> handler",
                    "const " + micro + "SubscribeOptions& options = {}"},
                   ";");
  }
}

std::string header(const FileModel& file) {
  const std::string& micro = file.micro;
  std::string out;
  out += "// Generated by protoc-gen-micro from " + file.proto + ". DO NOT EDIT.\n//\n";
  add_paragraph(out, "",
                substitute("Typed micro-cpp clients, handler base classes and event helpers for "
                           "$proto$. The conventions they follow (protobuf bodies, schemas, error "
                           "frames, threads) are in micro/rpc.hpp.",
                           {{"proto", file.proto}}));
  out += "#pragma once\n\n";
  out += "#include <functional>\n#include <memory>\n#include <string>\n#include <string_view>\n\n";
  out += "#include \"" + file.output_base + ".pb.h\"\n#include \"micro/rpc.hpp\"\n\n";
  if (!file.cpp_namespace.empty()) out += "namespace " + file.cpp_namespace + " {\n\n";

  const std::string example =
      file.schema_names.empty() ? std::string("pkg.Message") : file.schema_names.front();
  add_paragraph(out, "",
                substitute("The schema of a message of $proto$ (or of a type its services use) "
                           "by full name, such as \"$example$\": the file and everything it "
                           "imports as a serialized google.protobuf.FileDescriptorSet, and the "
                           "name. nullptr for other names. Thread-safe.",
                           {{"proto", file.proto}, {"example", example}}));
  out += wrapped("", "std::shared_ptr<const " + micro + "Schema> " + file.schema_function,
                 {"std::string_view full_name"}, ";");

  for (const ServiceModel& service : file.services) {
    out += "\n" + rule("service " + service.name) + "\n";
    add_client_class(out, file, service);
    out += "\n";
    add_handler_class(out, file, service);
  }
  add_event_declarations(out, file);

  if (!file.cpp_namespace.empty()) out += "\n}  // namespace " + file.cpp_namespace + "\n";
  return out;
}

// ---- the source ----------------------------------------------------------------------------

void add_service_definitions(std::string& out, const FileModel& file, const ServiceModel& service) {
  const std::string& micro = file.micro;
  const std::string client = service.name + "Client";
  const std::string handler = service.name + "Handler";
  out += "\n" + rule("service " + service.name) + "\n";
  out += wrapped("", client + "::" + client,
                 {micro + "Client client", "std::string service", micro + "Metadata metadata"}, "");
  out += "    : stub_(client, std::move(service), std::move(metadata), &" + file.schema_function +
         ") {}\n";
  for (const MethodModel& m : service.methods) {
    const Signatures s = signatures_of(file, m);
    std::vector<std::string> params = s.client_params;
    params.push_back("const " + micro + "CallOptions& options");
    out += "\n" + wrapped("", s.client_return + " " + client + "::" + m.name, params, " const {");
    out += "  return " + s.stub_call + ";\n}\n";
    if (!m.client_streaming && !m.server_streaming) {
      out +=
          "\n" +
          wrapped(
              "", "void " + client + "::" + m.name,
              {"const " + m.request_type + "& request", "const " + micro + "CallOptions& options",
               "std::function<void(const " + micro + "Error&, " + m.response_type + ")> done"},
              " const {");
      out += "  stub_.call<" + m.response_type + ">(" + m.constant +
             ", request, options, std::move(done));\n}\n";
    }
  }
  out +=
      "\n" + wrapped("", micro + "Error Register" + handler,
                     {micro + "Server server", "std::shared_ptr<" + handler + "> handler"}, " {");
  out += wrapped("  ", micro + "rpc::Registrar<" + handler + "> add",
                 {"std::move(server)", "std::move(handler)", "&" + file.schema_function,
                  quoted("Register" + handler)},
                 ";");
  for (const MethodModel& m : service.methods) {
    out += wrapped("  ", "add." + signatures_of(file, m).registrar,
                   {m.constant, "&" + handler + "::" + m.name}, ";");
  }
  out += "  return add.error();\n}\n";
}

void add_event_definitions(std::string& out, const FileModel& file) {
  if (file.event_types.empty()) return;
  const std::string& micro = file.micro;
  out += "\n" + rule("events");
  for (const std::string& type : file.event_types) {
    out += "\n" +
           wrapped("", micro + "Error Publish",
                   {micro + "Client client", "std::string_view topic", "const " + type + "& event"},
                   " {");
    out += "  return " + micro + "rpc::publish(client, topic, event);\n}\n";
    out += wrapped("", micro + "Error Subscribe",
                   {micro + "Server server", "std::string_view topic",
                    "std::function<" + micro + "Error(const " + type + "&)> handler",
                    "const " + micro + "SubscribeOptions& options"},
                   " {");
    out += "  return " + micro + "rpc::subscribe(server, topic, std::move(handler), options);\n}\n";
  }
}

std::string source(const FileModel& file) {
  const std::string& micro = file.micro;
  std::string out;
  out += "// Generated by protoc-gen-micro from " + file.proto + ". DO NOT EDIT.\n";
  out += "#include \"" + file.output_base + ".micro.h\"\n\n";
  out += "#include <utility>\n\n";
  if (!file.cpp_namespace.empty()) out += "namespace " + file.cpp_namespace + " {\n";
  out += "namespace {\n\n";

  out += "// " + file.proto +
         " and everything it imports, as a serialized google.protobuf.FileDescriptorSet.\n";
  out += "constexpr char kDescriptorSet[] =\n";
  const std::vector<std::string> pieces = string_literal_pieces(file.descriptor_set, kColumns - 7);
  for (size_t i = 0; i < pieces.size(); ++i)
    out += "    \"" + pieces[i] + "\"" + (i + 1 < pieces.size() ? "\n" : ";\n");

  for (const ServiceModel& service : file.services) {
    out += "\n// The methods of service " + service.name + ".\n";
    for (const MethodModel& m : service.methods) {
      out += wrapped("", "constexpr " + micro + "rpc::Method " + m.constant,
                     {quoted(m.endpoint), quoted(m.request_name), quoted(m.response_name)}, ";",
                     '{', '}');
    }
  }
  out += "\n}  // namespace\n\n";

  std::vector<std::string> names;
  for (const std::string& name : file.schema_names) names.push_back(quoted(name));
  out += wrapped("", "std::shared_ptr<const " + micro + "Schema> " + file.schema_function,
                 {"std::string_view full_name"}, " {");
  out += "  static const " + micro + "rpc::SchemaTable table(\n";
  out += "      std::string_view(kDescriptorSet, sizeof(kDescriptorSet) - 1),\n";
  out += wrapped("      ", "", names, ");", '{', '}');
  out += "  return table.find(full_name);\n}\n";

  for (const ServiceModel& service : file.services) add_service_definitions(out, file, service);
  add_event_definitions(out, file);

  if (!file.cpp_namespace.empty()) out += "\n}  // namespace " + file.cpp_namespace + "\n";
  return out;
}

bool write(google::protobuf::compiler::GeneratorContext* context, const std::string& name,
           const std::string& text) {
  std::unique_ptr<google::protobuf::io::ZeroCopyOutputStream> stream(context->Open(name));
  google::protobuf::io::Printer printer(stream.get(), '$');
  printer.PrintRaw(text);
  return !printer.failed();
}

}  // namespace

bool MicroGenerator::Generate(const google::protobuf::FileDescriptor* file,
                              const std::string& parameter,
                              google::protobuf::compiler::GeneratorContext* context,
                              std::string* error) const {
  if (!parameter.empty()) {
    *error = "protoc-gen-micro takes no options (got '" + parameter + "')";
    return false;
  }
  const FileModel model = describe(file);
  if (!write(context, model.output_base + ".micro.h", header(model)) ||
      !write(context, model.output_base + ".micro.cc", source(model))) {
    *error = "protoc-gen-micro: could not write the output for " + file->name();
    return false;
  }
  return true;
}

}  // namespace micro::codegen
