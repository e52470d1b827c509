// registry-consul's parsers on arbitrary bytes: the bodies of GET /v1/health/service/web and
// GET /v1/catalog/services (the first byte chooses which; the rest is the body). Beyond "no
// crash, hang, leak or sanitizer report":
//  - a body that does not parse is a 502 whose detail names the endpoint;
//  - every instance read has one node with an id and belongs to service "web"; grouping by
//    version keeps every node; the watch diff from nothing creates every node and from itself
//    reports nothing;
//  - catalog names come out sorted and unique.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>

#include "consul_json.hpp"
#include "watcher.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_consul_response: %s\n", what);
  std::abort();
}

void health(std::string_view body) {
  auto parsed = micro::consul::parse_health(body, "web");
  if (!parsed.ok()) {
    if (parsed.error.code() != 502 ||
        parsed.error.detail().find("/v1/health/service/web") == std::string::npos)
      fail("an unreadable health answer is not a 502 naming the endpoint");
    return;
  }
  std::map<std::string, micro::consul::Instance> by_id;
  for (const auto& instance : parsed.value) {
    if (instance.service.nodes.size() != 1 || instance.service.nodes[0].id.empty())
      fail("an instance without exactly one node with an id");
    if (instance.service.name != "web") fail("an instance of another service");
    by_id.insert_or_assign(instance.service.nodes[0].id, instance);
  }
  size_t nodes = 0;
  for (const auto& service : micro::consul::group_by_version(parsed.value))
    nodes += service.nodes.size();
  if (nodes != parsed.value.size()) fail("grouping by version lost or added nodes");
  if (micro::consul::diff({}, by_id).size() != by_id.size())
    fail("the diff from nothing is not one event per node");
  if (!micro::consul::diff(by_id, by_id).empty())
    fail("the diff of a state with itself is not empty");
}

void catalog(std::string_view body) {
  auto names = micro::consul::parse_catalog_services(body);
  if (!names.ok()) {
    if (names.error.code() != 502 ||
        names.error.detail().find("/v1/catalog/services") == std::string::npos)
      fail("an unreadable catalog answer is not a 502 naming the endpoint");
    return;
  }
  for (size_t i = 1; i < names.value.size(); ++i)
    if (!(names.value[i - 1] < names.value[i])) fail("catalog names not sorted and unique");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1)
    catalog(body);
  else
    health(body);
  return 0;
}
