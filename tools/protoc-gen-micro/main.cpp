// protoc-gen-micro: protoc runs it for --micro_out (found on PATH, or given with
// --plugin=protoc-gen-micro=PATH); see cmake/MicroGenerate.cmake for the one-line CMake use.
#include <google/protobuf/compiler/plugin.h>

#include "generator.hpp"

int main(int argc, char* argv[]) {
  micro::codegen::MicroGenerator generator;
  return google::protobuf::compiler::PluginMain(argc, argv, &generator);
}
