// registry-etcd against a real etcd (started here on free loopback ports): what the module adds
// to the HTTP exchanges it makes. Anchors: the same request sent with blocking Beast on a new
// connection (as the module does), measured in the same run. Wall-clock time (UseRealTime): the
// work is in etcd and on the module's threads, not on the calling thread.
//   get_service  (one range read)           vs  raw POST /v3/kv/range
//   register renewal, unchanged, caller TTL  vs  raw POST /v3/lease/keepalive
//   register on the instance's lease (a put) vs  raw POST /v3/kv/put
#include <benchmark/benchmark.h>

#include <memory>

#include "etcd_process.hpp"
#include "micro/registry.hpp"
#include "micro/testing/stack.hpp"

namespace {

micro::testing::EtcdProcess& etcd() {
  static micro::testing::EtcdProcess server;
  static const bool started = server.start();
  if (!started) {
    std::fprintf(stderr, "registry-etcd bench: etcd did not start (see %s/etcd.log)\n",
                 server.dir().c_str());
    std::exit(1);
  }
  return server;
}

struct Fixture {
  std::unique_ptr<micro::host::Stack> stack;
  micro::Registry registry;
  micro::Service service;
};

Fixture& fixture() {
  static Fixture f = [] {
    Fixture out;
    auto built = micro::testing::build_stack(
        "[registry]\nmodule = \"registry-etcd\"\naddress = [\"" + etcd().url() + "\"]\n",
        {MICRO_KIND_REGISTRY}, MICRO_MODULE_OUTPUT_DIR);
    for (const auto& e : built.errors) std::fprintf(stderr, "%s\n", e.c_str());
    if (!built.stack) std::exit(1);
    out.stack = std::move(built.stack);
    out.registry = micro::Registry(out.stack->registry());
    out.service.name = "bench";
    out.service.version = "1.0.0";
    out.service.metadata = {{"team", "core"}};
    out.service.endpoints = {{"Greeter.Hello", "greeter.Request", "greeter.Response", {}}};
    for (int i = 0; i < 3; ++i)
      out.service.nodes.push_back(
          {"bench-" + std::to_string(i), "127.0.0.1:" + std::to_string(7000 + i), {}});
    if (!out.registry.register_service(out.service).ok()) std::exit(1);
    return out;
  }();
  return f;
}

void check(bool ok, benchmark::State& state) {
  if (!ok) state.SkipWithError("request failed");
}

// base64("/micro/registry/bench/") and its range end ("/micro/registry/bench0").
const std::string kRange =
    "{\"key\":\"L21pY3JvL3JlZ2lzdHJ5L2JlbmNoLw==\",\"range_end\":\"L21pY3JvL3JlZ2lzdHJ5L2JlbmNoMA==\"}";

void BM_raw_range(benchmark::State& state) {
  fixture();
  for (auto _ : state)
    check(micro::testing::gateway_post(etcd().client_port(), "/v3/kv/range", kRange).first == 200,
          state);
}

void BM_module_get_service(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) check(f.registry.get_service("bench").value.size() == 1, state);
}

void BM_raw_keepalive(benchmark::State& state) {
  fixture();
  auto [status, body] = micro::testing::gateway_post(etcd().client_port(), "/v3/lease/grant",
                                                     "{\"TTL\":\"60\"}");
  const std::string id = body.substr(body.find("\"ID\":\"") + 6);
  const std::string request = "{\"ID\":\"" + id.substr(0, id.find('"')) + "\"}";
  for (auto _ : state)
    check(micro::testing::gateway_post(etcd().client_port(), "/v3/lease/keepalive", request)
                  .first == 200,
          state);
}

void BM_module_register_renewal(benchmark::State& state) {
  auto& f = fixture();
  auto renewed = f.service;
  renewed.name = "bench-renewed";
  check(f.registry.register_service(renewed, micro::RegisterOptions{60'000}).ok(), state);
  for (auto _ : state)
    check(f.registry.register_service(renewed, micro::RegisterOptions{60'000}).ok(), state);
}

void BM_raw_put(benchmark::State& state) {
  fixture();
  const std::string request = "{\"key\":\"L2JlbmNoL3B1dA==\",\"value\":\"eA==\"}";
  for (auto _ : state)
    check(micro::testing::gateway_post(etcd().client_port(), "/v3/kv/put", request).first == 200,
          state);
}

void BM_module_register_one_node(benchmark::State& state) {
  auto& f = fixture();
  auto one = f.service;
  one.name = "bench-one";
  one.nodes.resize(1);
  for (auto _ : state) check(f.registry.register_service(one).ok(), state);
}

BENCHMARK(BM_raw_range)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_module_get_service)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_keepalive)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_module_register_renewal)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_raw_put)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_module_register_one_node)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
