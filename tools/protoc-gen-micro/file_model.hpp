// What protoc-gen-micro generates for one .proto file, worked out from its descriptor: names,
// C++ types, comments and the embedded schema. generator.cpp prints it.
#pragma once

#include <google/protobuf/descriptor.h>

#include <string>
#include <vector>

namespace micro::codegen {

struct MethodModel {
  std::string name;           // "Hello"
  std::string endpoint;       // "Greeter.Hello"
  std::string constant;       // "kGreeterHello": its micro::rpc::Method in the .cc
  std::string request_type;   // C++ type as written in the generated namespace: "Request"
  std::string response_type;  // "Response"
  std::string request_name;   // full protobuf name: "greeter.Request"
  std::string response_name;  // "greeter.Response"
  bool client_streaming = false;
  bool server_streaming = false;
  std::vector<std::string> comment;  // the .proto's leading comment, one entry per line
};

struct ServiceModel {
  std::string name;  // "Greeter"
  std::vector<std::string> comment;
  std::vector<MethodModel> methods;
};

struct FileModel {
  std::string proto;            // "greeter.proto", as protoc names it
  std::string output_base;      // "greeter": the outputs are <base>.micro.h and <base>.micro.cc
  std::string cpp_namespace;    // "greeter" or "a::b"; empty without a package
  std::string micro;            // "micro::", or "::micro::" where the package shadows it
  std::string schema_function;  // "greeter_proto_schema"
  std::string descriptor_set;   // serialized FileDescriptorSet: the file and its imports
  std::vector<std::string> schema_names;  // messages the schema function knows (full names)
  std::vector<std::string> event_types;   // C++ types that get Publish/Subscribe overloads
  std::vector<ServiceModel> services;
};

FileModel describe(const google::protobuf::FileDescriptor* file);

// `bytes` as the body of a C++ string literal, cut into pieces of at most `width` characters
// (each piece is one quoted literal; adjacent literals concatenate).
std::vector<std::string> string_literal_pieces(const std::string& bytes, size_t width);

}  // namespace micro::codegen
