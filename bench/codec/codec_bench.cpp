// Encode and decode of a ~1 KiB microtest.Person through codec-proto and codec-json, loaded as
// modules and called through micro::Codec (ABI included), against calling protobuf directly:
//
//   proto decode: module (validating wire walk + copy)  vs  Person::ParseFromString
//   proto encode: module (size check + copy)             vs  Person::SerializeToString
//   json decode:  module (JSON -> canonical binary)      vs  util::JsonStringToMessage
//   json encode:  module (canonical binary -> JSON)      vs  util::MessageToJsonString
//
// Outputs and messages are reused across iterations on both sides (the steady state of a server).
#include <benchmark/benchmark.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "../common/bench_main.hpp"
#include "codec_test.pb.h"
#include "micro/codec.hpp"
#include "micro/content_type.hpp"
#include "micro/host/config.hpp"
#include "micro/host/loader.hpp"
#include "micro/host/stack.hpp"

namespace {

namespace util = google::protobuf::util;

constexpr std::string_view kProto = "application/protobuf";
constexpr std::string_view kJson = "application/json";

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "micro-bench-codec: %s\n", why.c_str());
  std::exit(1);
}

// A Person with every kind of field set, grown with tags until its binary form is ~1 KiB.
microtest::Person make_person() {
  microtest::Person p;
  p.set_name("Ada Augusta King, Countess of Lovelace");
  p.set_age(36);
  p.set_user_id(1815121018521127);
  p.set_score(98.625);
  p.set_active(true);
  std::string avatar(96, '\0');
  for (size_t i = 0; i < avatar.size(); ++i) avatar[i] = static_cast<char>(i * 37 + 11);
  p.set_avatar(avatar);
  p.set_colour(microtest::GREEN);
  p.mutable_home()->set_street("12 St James's Square, London");
  p.mutable_home()->set_number(12);
  for (int i = 0; i < 24; ++i) p.add_lucky(i * i * 977 - 3000);
  for (int i = 0; i < 6; ++i)
    (*p.mutable_labels())["label-" + std::to_string(i)] = "value of label " + std::to_string(i);
  for (int i = 0; i < 5; ++i) {
    microtest::Address* a = p.add_past();
    a->set_street("Former address number " + std::to_string(i));
    a->set_number(static_cast<uint32_t>(100 + i));
  }
  for (int i = 0; p.ByteSizeLong() < 1024; ++i)
    p.add_tags("analytical-engine-" + std::to_string(i));
  return p;
}

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die(std::string("cannot read ") + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Everything the benchmarks share, built once: the stack, both codecs, the message in every form.
struct Fixture {
  std::unique_ptr<micro::host::Stack> stack;
  micro::Codec proto_codec;
  micro::Codec json_codec;
  micro::Schema schema;
  microtest::Person person;
  std::string binary;  // person, serialized: the proto wire form and the canonical form
  std::string json;    // person, as protobuf's JSON mapping writes it

  Fixture() {
    const std::string toml = std::string("[service]\nname = \"bench\"\n[modules]\npath = [\"") +
                             MICRO_MODULE_OUTPUT_DIR +
                             "\"]\n[codec]\nmodule = [\"codec-json\", \"codec-proto\"]\n";
    auto parsed = micro::host::parse_config(toml, "bench.toml");
    if (!parsed.ok()) die(parsed.errors.front().to_string());
    micro::host::ModuleLoader loader(parsed.config.module_paths);
    auto built = micro::host::Stack::build(parsed.config, loader, {MICRO_KIND_CODEC});
    if (!built.ok()) die(built.errors.front());
    stack = std::move(built.stack);
    const micro::CodecSet codecs(stack->codecs());
    proto_codec = codecs.find(kProto).value;
    json_codec = codecs.find(kJson).value;
    if (!proto_codec.valid() || !json_codec.valid())
      die("the stack lacks codec-proto or codec-json");

    schema = {read_file(MICRO_TEST_PROTO_DESC), "microtest.Person"};
    person = make_person();
    binary = person.SerializeAsString();
    if (!util::MessageToJsonString(person, &json).ok()) die("MessageToJsonString failed");
    verify();
  }

  // The module and protobuf must agree, or the timings compare different work.
  void verify() const {
    std::string out;
    if (!proto_codec.decode(kProto, binary, &schema, out).ok() || out != binary)
      die("codec-proto decode does not pass the body through");
    out.clear();
    if (!proto_codec.encode(kProto, binary, &schema, out).ok() || out != binary)
      die("codec-proto encode does not pass the body through");
    out.clear();
    if (!json_codec.encode(kJson, binary, &schema, out).ok() || out != json)
      die("codec-json encode differs from MessageToJsonString");
    out.clear();
    microtest::Person decoded;
    if (!json_codec.decode(kJson, json, &schema, out).ok() || !decoded.ParseFromString(out) ||
        !google::protobuf::util::MessageDifferencer::Equals(decoded, person))
      die("codec-json decode differs from JsonStringToMessage");
  }
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

void fail_unless(bool ok, benchmark::State& state) {
  if (!ok) state.SkipWithError("the call failed");
}

// ---- protobuf binary -------------------------------------------------------------------------

void BM_proto_decode_module(benchmark::State& state) {
  const Fixture& f = fixture();
  std::string out;
  bool ok = true;
  for (auto _ : state) {
    out.clear();
    ok &= f.proto_codec.decode(kProto, f.binary, &f.schema, out).ok();
    benchmark::DoNotOptimize(out.data());
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.binary.size()));
}

void BM_proto_decode_direct(benchmark::State& state) {
  const Fixture& f = fixture();
  microtest::Person person;
  bool ok = true;
  for (auto _ : state) {
    ok &= person.ParseFromString(f.binary);
    benchmark::DoNotOptimize(person);
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.binary.size()));
}

void BM_proto_encode_module(benchmark::State& state) {
  const Fixture& f = fixture();
  std::string out;
  bool ok = true;
  for (auto _ : state) {
    out.clear();
    ok &= f.proto_codec.encode(kProto, f.binary, &f.schema, out).ok();
    benchmark::DoNotOptimize(out.data());
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.binary.size()));
}

void BM_proto_encode_direct(benchmark::State& state) {
  const Fixture& f = fixture();
  std::string out;
  bool ok = true;
  for (auto _ : state) {
    ok &= f.person.SerializeToString(&out);  // replaces the contents, keeps the capacity
    benchmark::DoNotOptimize(out.data());
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.binary.size()));
}

// ---- JSON ------------------------------------------------------------------------------------

void BM_json_decode_module(benchmark::State& state) {
  const Fixture& f = fixture();
  std::string out;
  bool ok = true;
  for (auto _ : state) {
    out.clear();
    ok &= f.json_codec.decode(kJson, f.json, &f.schema, out).ok();
    benchmark::DoNotOptimize(out.data());
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.json.size()));
}

void BM_json_decode_direct(benchmark::State& state) {
  const Fixture& f = fixture();
  microtest::Person person;
  bool ok = true;
  for (auto _ : state) {
    ok &= util::JsonStringToMessage(f.json, &person).ok();
    benchmark::DoNotOptimize(person);
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.json.size()));
}

void BM_json_encode_module(benchmark::State& state) {
  const Fixture& f = fixture();
  std::string out;
  bool ok = true;
  for (auto _ : state) {
    out.clear();
    ok &= f.json_codec.encode(kJson, f.binary, &f.schema, out).ok();
    benchmark::DoNotOptimize(out.data());
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.json.size()));
}

void BM_json_encode_direct(benchmark::State& state) {
  const Fixture& f = fixture();
  std::string out;
  bool ok = true;
  for (auto _ : state) {
    out.clear();
    ok &= util::MessageToJsonString(f.person, &out).ok();
    benchmark::DoNotOptimize(out.data());
  }
  fail_unless(ok, state);
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(f.json.size()));
}

}  // namespace

int main(int argc, char** argv) {
  const Fixture& f = fixture();  // fail early, and say what is measured
  std::printf("microtest.Person: %zu bytes binary, %zu bytes JSON\n", f.binary.size(),
              f.json.size());
  micro_bench::add("BM_proto_decode_module", BM_proto_decode_module);
  micro_bench::add("BM_proto_decode_direct", BM_proto_decode_direct);
  micro_bench::add("BM_proto_encode_module", BM_proto_encode_module);
  micro_bench::add("BM_proto_encode_direct", BM_proto_encode_direct);
  micro_bench::add("BM_json_decode_module", BM_json_decode_module);
  micro_bench::add("BM_json_decode_direct", BM_json_decode_direct);
  micro_bench::add("BM_json_encode_module", BM_json_encode_module);
  micro_bench::add("BM_json_encode_direct", BM_json_encode_direct);
  return micro_bench::run_with_ratios(argc, argv,
                                      {{"proto decode: module / ParseFromString",
                                        "BM_proto_decode_module", "BM_proto_decode_direct", 1.10},
                                       {"proto encode: module / SerializeToString",
                                        "BM_proto_encode_module", "BM_proto_encode_direct", 1.10},
                                       {"json decode: module / JsonStringToMessage",
                                        "BM_json_decode_module", "BM_json_decode_direct", 1.20},
                                       {"json encode: module / MessageToJsonString",
                                        "BM_json_encode_module", "BM_json_encode_direct", 1.20}});
}
