// registry-consul's encoding: micro services <-> the JSON of Consul's agent, health and catalog
// endpoints (README.md, "Encoding"). Pure functions; no I/O. Everything read from the network
// goes through parse_health / parse_catalog_services, which never throw and never crash.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "micro/types.hpp"

namespace micro::consul {

// One node of one service version, as a Consul service instance.
struct Instance {
  micro::Service service;     // exactly one node
  uint64_t create_index = 0;  // Consul's CreateIndex: orders nodes that appear at once
};

struct CheckSettings {
  std::chrono::milliseconds ttl{30000};
  std::chrono::milliseconds deregister_critical_after{0};  // 0: never
};

// "1500ms" / "30s": Consul's (Go's) duration syntax.
std::string go_duration(std::chrono::milliseconds d);

// The check Consul creates for service `node_id`: "service:<id>".
std::string check_id(std::string_view node_id);

// The body of PUT /v1/agent/service/register for one node of `service`; 400 when the service
// cannot be stored so that it reads back identically (invalid UTF-8, version over 512 bytes).
micro::Result<std::string> encode_registration(const micro::Service& service,
                                               const micro::Node& node, const CheckSettings& check);

// Reads a GET /v1/health/service/:name body; keeps only entries of service `name`.
micro::Result<std::vector<Instance>> parse_health(std::string_view body, std::string_view name);

// Reads a GET /v1/catalog/services body: the service names, sorted.
micro::Result<std::vector<std::string>> parse_catalog_services(std::string_view body);

// Groups instances into one Service per version (nodes ordered by id).
std::vector<micro::Service> group_by_version(const std::vector<Instance>& instances);

// Percent-encodes one URL path segment or query value.
std::string url_escape(std::string_view s);

}  // namespace micro::consul
