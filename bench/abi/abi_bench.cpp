// Nanoseconds per codec call across the module boundary, against a direct virtual call to the
// same C++ class. Every call encodes with EchoCodec, which appends 16 fixed bytes.
//
//   direct_virtual     CodecPlugin::encode, a virtual call in this process (the baseline)
//   module_codec       micro::Codec -> bench-echo-codec.so's C vtable -> CodecAdapter -> encode
//   module_raw_vtable  the same C vtable called by hand with a bare sink (no micro::Codec wrapper)
//   local_adapter      micro::Codec -> CodecAdapter of an in-process EchoCodec (no .so crossed)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "../common/bench_main.hpp"
#include "echo_payload.hpp"
#include "micro/codec.hpp"
#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"

namespace micro_bench {
// In echo_codec_direct.cpp. This file never sees EchoCodec, so the compiler cannot devirtualize
// (or speculatively inline) the direct calls: they stay real virtual calls.
std::unique_ptr<micro::CodecPlugin> make_direct_echo_codec();
}  // namespace micro_bench

namespace {

using micro_bench::kEchoContentType;

constexpr std::string_view kInput = "canonical bytes, ignored by the echo codec";

// The stack holding bench-echo-codec.so, built once, as `micro run` would build it.
const micro::host::Stack& echo_stack() {
  static const std::unique_ptr<micro::host::Stack> stack = [] {
    const std::string toml = std::string("[service]\nname = \"bench\"\n[modules]\npath = [\"") +
                             MICRO_BENCH_MODULE_DIR +
                             "\"]\n[codec]\nmodule = \"bench-echo-codec\"\n";
    auto parsed = micro::host::parse_config(toml, "bench.toml");
    for (const auto& e : parsed.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    if (!parsed.ok()) std::exit(1);
    micro::host::ModuleLoader loader(parsed.config.module_paths);
    auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_CODEC});
    for (const auto& e : built.errors) std::fprintf(stderr, "%s\n", e.c_str());
    if (!built.ok()) std::exit(1);
    return std::move(built.stack);
  }();
  return *stack;
}

micro_codec_t echo_module_handle() { return echo_stack().codecs().at(0); }

void check(const micro::Error& error, const std::string& out, benchmark::State& state) {
  if (!error.ok() || out != micro_bench::kEchoPayload) state.SkipWithError("wrong echo output");
}

void BM_echo_encode_direct_virtual(benchmark::State& state) {
  std::unique_ptr<micro::CodecPlugin> codec = micro_bench::make_direct_echo_codec();
  micro::CodecPlugin* plugin = codec.get();
  std::string out;
  for (auto _ : state) {
    out.clear();
    micro::Error error = plugin->encode(kEchoContentType, kInput, nullptr, out);
    benchmark::DoNotOptimize(error);
    benchmark::DoNotOptimize(out.data());
  }
  out.clear();
  check(plugin->encode(kEchoContentType, kInput, nullptr, out), out, state);
}

// Encodes through `codec` for the benchmark's iterations, then checks the output once.
void encode_loop(const micro::Codec& codec, benchmark::State& state) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    micro::Error error = codec.encode(kEchoContentType, kInput, nullptr, out);
    benchmark::DoNotOptimize(error);
    benchmark::DoNotOptimize(out.data());
  }
  out.clear();
  check(codec.encode(kEchoContentType, kInput, nullptr, out), out, state);
}

void BM_echo_encode_module_codec(benchmark::State& state) {
  encode_loop(micro::Codec(echo_module_handle()), state);
}

// The bare minimum a C caller must do: one sink that appends to a string, one indirect call.
void BM_echo_encode_module_raw_vtable(benchmark::State& state) {
  const micro_codec_t handle = echo_module_handle();
  std::string out;
  micro_sink_t sink{sizeof(micro_sink_t), &out,
                    [](void* ctx, const void* data, size_t size) {
                      static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), size);
                    },
                    nullptr};
  for (auto _ : state) {
    out.clear();
    micro_error_t* error = handle.vtable->encode(handle.self, micro::to_c(kEchoContentType),
                                                 micro::to_c_bytes(kInput), nullptr, &sink);
    if (error != nullptr) micro_error_free(error);
    benchmark::DoNotOptimize(out.data());
  }
  check({}, out, state);
}

// The SDK's C shim around an in-process plugin: what module_codec costs minus the .so crossing.
void BM_echo_encode_local_adapter(benchmark::State& state) {
  std::unique_ptr<micro::CodecPlugin> plugin = micro_bench::make_direct_echo_codec();
  encode_loop(micro::Codec(micro_codec_t{
                  static_cast<const micro_codec_vtable_t*>(micro::CodecPlugin::c_vtable()),
                  plugin.get()}),
              state);
}

}  // namespace

int main(int argc, char** argv) {
  (void)echo_stack();  // load the module now: fail early, and keep loading out of every count
  micro_bench::add("BM_echo_encode_direct_virtual", BM_echo_encode_direct_virtual);
  micro_bench::add("BM_echo_encode_module_codec", BM_echo_encode_module_codec);
  micro_bench::add("BM_echo_encode_module_raw_vtable", BM_echo_encode_module_raw_vtable);
  micro_bench::add("BM_echo_encode_local_adapter", BM_echo_encode_local_adapter);
  return micro_bench::run_with_ratios(
      argc, argv,
      {{"module (micro::Codec) / direct virtual", "BM_echo_encode_module_codec",
        "BM_echo_encode_direct_virtual"},
       {"module (raw C vtable) / direct virtual", "BM_echo_encode_module_raw_vtable",
        "BM_echo_encode_direct_virtual"},
       {"in-process adapter / direct virtual", "BM_echo_encode_local_adapter",
        "BM_echo_encode_direct_virtual"}});
}
