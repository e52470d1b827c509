// A double of the Consul agent's HTTP API, for registry-consul's tests (Consul itself is in no
// package registry this project can reach). It serves exactly what the module uses, with
// Consul's documented semantics:
//   PUT /v1/agent/service/register, PUT /v1/agent/service/deregister/:id,
//   PUT /v1/agent/check/pass/:check_id,
//   GET /v1/health/service/:service (?passing, ?dc), GET /v1/catalog/services (?dc),
// both GETs as blocking queries (?index, ?wait, X-Consul-Index); TTL checks turn critical when
// not passed in time and DeregisterCriticalServiceAfter removes their service; errors (400,
// 403, 404, 405, 500) carry Consul's texts. Faults can be injected: answer 500, answer garbage,
// answer slowly, stop and start again (keeping or losing the state).
//
// Runs on a thread of its own; every public method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace micro::consul::testing {

class ConsulDouble {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 0;  // 0: a free port
    std::string datacenter = "dc1";
    std::string token;  // when set, every request must send it (X-Consul-Token)
  };
  enum class Fault { none, error_500, garbage, slow };

  ConsulDouble();
  explicit ConsulDouble(Options options);
  ~ConsulDouble();
  ConsulDouble(const ConsulDouble&) = delete;
  ConsulDouble& operator=(const ConsulDouble&) = delete;

  // "127.0.0.1:PORT"; the port stays the same across stop() and start().
  std::string address() const;
  uint16_t port() const;

  // Every request from now on: answered normally, with 500, with a 200 whose body is not JSON,
  // or normally after `delay`.
  void set_fault(Fault fault, std::chrono::milliseconds delay = std::chrono::milliseconds(0));
  // Closes the listener and every connection, as a killed agent.
  void stop();
  // Listens again on the same port; `keep_state` false forgets every service (and the index
  // starts again from 1), as a restarted dev agent.
  void start(bool keep_state);

  // Inspection for tests.
  bool has_service(const std::string& id) const;
  std::string check_status(const std::string& id) const;  // "" when unknown
  size_t service_count() const;
  uint64_t requests_served() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace micro::consul::testing
