// protoc-gen-micro's code generator: for every .proto file, <file>.micro.h and <file>.micro.cc
// beside protoc's <file>.pb.h and <file>.pb.cc.
#pragma once

#include <google/protobuf/compiler/code_generator.h>

#include <string>

namespace micro::codegen {

class MicroGenerator final : public google::protobuf::compiler::CodeGenerator {
 public:
  bool Generate(const google::protobuf::FileDescriptor* file, const std::string& parameter,
                google::protobuf::compiler::GeneratorContext* context,
                std::string* error) const override;

  uint64_t GetSupportedFeatures() const override { return FEATURE_PROTO3_OPTIONAL; }
};

}  // namespace micro::codegen
