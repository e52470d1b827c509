// What the codec fuzzers share: the module under test, compiled into the fuzzer, driven through its
// C ABI the way the host drives it (entry symbol, first plugin, one instance with default options),
// and the test schema (microtest.Person) that protoc wrote at build time.
#pragma once

#include <google/protobuf/stubs/logging.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "micro/module.h"

extern "C" const micro_module_descriptor_t* micro_module_entry(void) noexcept;

namespace micro::fuzz {

// Reports a broken property and aborts, so libFuzzer saves the input that broke it.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\nPROPERTY BROKEN: %s\n", what.c_str());
  std::abort();
}

inline std::string_view view(micro_str_t s) { return {s.data, s.size}; }

// One codec instance, made once per fuzzer process and kept: codecs are long-lived in a service.
class CodecUnderTest {
 public:
  CodecUnderTest() {
    // protobuf logs malformed input (invalid UTF-8, ...) to stderr; only its FATAL matters here.
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel level, const char* file, int line,
                                       const std::string& message) {
      if (level == google::protobuf::LOGLEVEL_FATAL)
        std::fprintf(stderr, "[protobuf FATAL %s:%d] %s\n", file, line, message.c_str());
    });
    const micro_module_descriptor_t* module = micro_module_entry();
    if (module == nullptr || module->plugin_count == 0) fail("the module's entry returned nothing");
    plugin_ = module->plugins[0];
    if (plugin_->kind != MICRO_KIND_CODEC) fail("plugins[0] is not a codec");
    vtable_ = static_cast<const micro_codec_vtable_t*>(plugin_->vtable);

    const micro_host_api_t host = {sizeof(micro_host_api_t),
                                   MICRO_ABI_VERSION_MAJOR,
                                   MICRO_ABI_VERSION_MINOR,
                                   nullptr,
                                   [](void*, int32_t, micro_str_t) {},
                                   [](void*, int32_t) -> int32_t { return 0; }};
    host_ = host;
    micro_service_info_t service{};
    service.struct_size = sizeof service;
    service.name = {"fuzz", 4};
    micro_dependencies_t deps{};
    deps.struct_size = sizeof deps;
    // No options: every one takes its declared default.
    const micro_create_args_t args = {
        sizeof(micro_create_args_t), &host_, &service, nullptr, 0, &deps};
    if (micro_error_t* error = plugin_->create(&args, &self_)) {
      const std::string detail(view(error->detail));
      micro_error_free(error);
      fail("create failed: " + detail);
    }
  }
  ~CodecUnderTest() { vtable_->destroy(self_); }
  CodecUnderTest(const CodecUnderTest&) = delete;
  CodecUnderTest& operator=(const CodecUnderTest&) = delete;

  // Wire -> canonical, appended to `out`. True on success; a failure must carry a 4xx code and a
  // detail (a 5xx here means the codec failed on its own, e.g. threw, on a client's bytes).
  bool decode(std::string_view content_type, std::string_view wire, const micro_schema_t* schema,
              std::string& out) {
    micro_error_t* error =
        vtable_->decode(self_, to_c(content_type), to_c_bytes(wire), schema, sink(out));
    if (error == nullptr) return true;
    check_error(error, "decode", 400, 499);
    return false;
  }

  // Canonical -> wire, appended to `out`. True on success.
  bool encode(std::string_view content_type, std::string_view canonical,
              const micro_schema_t* schema, std::string& out, std::string* detail = nullptr) {
    micro_error_t* error =
        vtable_->encode(self_, to_c(content_type), to_c_bytes(canonical), schema, sink(out));
    if (error == nullptr) return true;
    if (detail != nullptr) *detail = std::string(view(error->detail));
    check_error(error, "encode", 400, 599);
    return false;
  }

 private:
  static micro_str_t to_c(std::string_view s) { return {s.data(), s.size()}; }
  static micro_bytes_t to_c_bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }

  micro_sink_t* sink(std::string& out) {
    sink_ = {sizeof(micro_sink_t), &out,
             [](void* ctx, const void* data, size_t size) {
               static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), size);
             },
             [](void* ctx, size_t size) -> uint8_t* {
               auto* s = static_cast<std::string*>(ctx);
               s->resize(s->size() + size);
               return reinterpret_cast<uint8_t*>(s->data() + s->size() - size);
             }};
    return &sink_;
  }

  static void check_error(micro_error_t* error, const char* call, int lowest, int highest) {
    const int code = error->code;
    const std::string detail(view(error->detail));
    micro_error_free(error);
    if (detail.empty()) fail(std::string(call) + " failed with an empty detail");
    if (code < lowest || code > highest)
      fail(std::string(call) + " failed with code " + std::to_string(code) + ": " + detail);
  }

  const micro_plugin_t* plugin_ = nullptr;
  const micro_codec_vtable_t* vtable_ = nullptr;
  micro_host_api_t host_{};
  micro_sink_t sink_{};
  void* self_ = nullptr;
};

// The serialized FileDescriptorSet of tests/proto/codec_test.proto (MICRO_FUZZ_PROTO_DESC is the
// path protoc wrote it to), read once.
inline const std::string& test_descriptor_set() {
  static const std::string bytes = [] {
    std::string out;
    std::FILE* f = std::fopen(MICRO_FUZZ_PROTO_DESC, "rb");
    if (f == nullptr) fail("cannot open " MICRO_FUZZ_PROTO_DESC);
    char buffer[4096];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) out.append(buffer, n);
    std::fclose(f);
    if (out.empty()) fail(MICRO_FUZZ_PROTO_DESC " is empty");
    return out;
  }();
  return bytes;
}

// The C schema for a message of the test proto; the strings it points to are static.
inline micro_schema_t test_schema(std::string_view message_name) {
  const std::string& set = test_descriptor_set();
  return {sizeof(micro_schema_t),
          {reinterpret_cast<const uint8_t*>(set.data()), set.size()},
          {message_name.data(), message_name.size()}};
}

}  // namespace micro::fuzz
