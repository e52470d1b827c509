#include "file_model.hpp"

#include <google/protobuf/compiler/cpp/names.h>
#include <google/protobuf/descriptor.pb.h>

#include <algorithm>
#include <cctype>
#include <set>

namespace micro::codegen {
namespace {

namespace pb = google::protobuf;

// "a.b.c" -> {"a", "b", "c"}
std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(separator, start), text.size());
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The leading comment of a descriptor, one entry per line, without the space after "//".
template <class Descriptor>
std::vector<std::string> comment_of(const Descriptor* descriptor) {
  pb::SourceLocation location;
  if (!descriptor->GetSourceLocation(&location)) return {};
  std::vector<std::string> lines = split(location.leading_comments, '\n');
  for (std::string& line : lines) {
    if (!line.empty() && line.front() == ' ') line.erase(0, 1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    // A comment line ending in a backslash would swallow the next line of code.
    if (!line.empty() && line.back() == '\\') line += '.';
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// The file and everything it imports, each after its own imports, as protoc's
// --descriptor_set_out --include_imports writes them.
void add_with_imports(const pb::FileDescriptor* file, std::set<std::string>& added,
                      pb::FileDescriptorSet& set) {
  if (!added.insert(file->name()).second) return;
  for (int i = 0; i < file->dependency_count(); ++i)
    add_with_imports(file->dependency(i), added, set);
  pb::FileDescriptorProto* proto = set.add_file();
  file->CopyTo(proto);
  file->CopyJsonNameTo(proto);
}

void add_message_names(const pb::Descriptor* message, std::vector<std::string>& names) {
  if (message->options().map_entry()) return;
  names.push_back(message->full_name());
  for (int i = 0; i < message->nested_type_count(); ++i)
    add_message_names(message->nested_type(i), names);
}

void add_unique(std::vector<std::string>& names, const std::string& name) {
  if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
}

// "greeter/v1/greeter-api.proto" -> "greeter_api": an identifier for the file.
std::string identifier_of(const std::string& proto_path) {
  std::string stem = pb::compiler::cpp::StripProto(proto_path);
  stem = stem.substr(stem.find_last_of('/') + 1);
  for (char& c : stem)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  if (stem.empty() || std::isdigit(static_cast<unsigned char>(stem.front()))) stem = "_" + stem;
  return stem;
}

class Describer {
 public:
  explicit Describer(const pb::FileDescriptor* file) : file_(file) {
    for (int s = 0; s < file->service_count(); ++s)
      for (int m = 0; m < file->service(s)->method_count(); ++m)
        method_names_.insert(file->service(s)->method(m)->name());
    const std::string& package = file->package();
    if (!package.empty()) {
      for (const std::string& part : split(package, '.')) {
        if (!namespace_.empty()) namespace_ += "::";
        namespace_ += part;
      }
    }
  }

  FileModel describe() const {
    FileModel out;
    out.proto = file_->name();
    out.output_base = pb::compiler::cpp::StripProto(file_->name());
    out.cpp_namespace = namespace_;
    const std::vector<std::string> parts = split(file_->package(), '.');
    out.micro =
        std::find(parts.begin(), parts.end(), "micro") != parts.end() ? "::micro::" : "micro::";
    out.schema_function = identifier_of(file_->name()) + "_proto_schema";

    pb::FileDescriptorSet set;
    std::set<std::string> added;
    add_with_imports(file_, added, set);
    set.SerializeToString(&out.descriptor_set);

    for (int i = 0; i < file_->message_type_count(); ++i) {
      const pb::Descriptor* message = file_->message_type(i);
      add_message_names(message, out.schema_names);
      out.event_types.push_back(type_of(message));
    }
    for (int s = 0; s < file_->service_count(); ++s) {
      out.services.push_back(service_of(file_->service(s)));
      for (const MethodModel& method : out.services.back().methods) {
        add_unique(out.schema_names, method.request_name);
        add_unique(out.schema_names, method.response_name);
      }
    }
    return out;
  }

 private:
  // The C++ type of a message as written inside the generated namespace: relative when it is
  // this package's own and no method name hides it, fully qualified otherwise.
  std::string type_of(const pb::Descriptor* message) const {
    const std::string qualified = pb::compiler::cpp::QualifiedClassName(message);
    const std::string prefix = namespace_.empty() ? "::" : "::" + namespace_ + "::";
    if (qualified.compare(0, prefix.size(), prefix) != 0) return qualified;
    const std::string relative = qualified.substr(prefix.size());
    if (relative.find("::") != std::string::npos || method_names_.count(relative) != 0)
      return qualified;
    return relative;
  }

  ServiceModel service_of(const pb::ServiceDescriptor* service) const {
    ServiceModel out;
    out.name = service->name();
    out.comment = comment_of(service);
    for (int i = 0; i < service->method_count(); ++i) {
      const pb::MethodDescriptor* method = service->method(i);
      MethodModel m;
      m.name = method->name();
      m.endpoint = service->name() + "." + method->name();
      m.constant = "k" + service->name() + method->name();
      m.request_type = type_of(method->input_type());
      m.response_type = type_of(method->output_type());
      m.request_name = method->input_type()->full_name();
      m.response_name = method->output_type()->full_name();
      m.client_streaming = method->client_streaming();
      m.server_streaming = method->server_streaming();
      m.comment = comment_of(method);
      out.methods.push_back(std::move(m));
    }
    return out;
  }

  const pb::FileDescriptor* file_;
  std::set<std::string> method_names_;
  std::string namespace_;
};

}  // namespace

FileModel describe(const google::protobuf::FileDescriptor* file) {
  return Describer(file).describe();
}

std::vector<std::string> string_literal_pieces(const std::string& bytes, size_t width) {
  std::vector<std::string> pieces(1);
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    std::string escaped;
    if (c == '"' || c == '\\') {
      escaped = std::string("\\") + c;
    } else if (byte >= 0x20 && byte < 0x7f && c != '?') {  // '?': no trigraphs, whatever -std
      escaped = std::string(1, c);
    } else {
      // Always three octal digits, so a digit that follows cannot extend the escape.
      escaped = {'\\', static_cast<char>('0' + (byte >> 6)),
                 static_cast<char>('0' + ((byte >> 3) & 7)), static_cast<char>('0' + (byte & 7))};
    }
    if (pieces.back().size() + escaped.size() > width) pieces.emplace_back();
    pieces.back() += escaped;
  }
  return pieces;
}

}  // namespace micro::codegen
