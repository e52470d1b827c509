#include "consul_json.hpp"

#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>

#include <algorithm>
#include <map>

#include "registry_consul.pb.h"

namespace micro::consul {
namespace {

namespace pb = google::protobuf;

// Meta keys registry-consul sets; everything else in Meta of a foreign service is node metadata.
constexpr const char* kMarkerKey = "micro_registry";  // "1": registered by registry-consul
constexpr const char* kVersionKey = "version";
constexpr const char* kAddressKey = "micro_address";  // the node address, when host:port loses it
constexpr size_t kMetaValueMax = 512;                 // Consul's limit on a Meta value

std::string to_json(const pb::Message& message) {
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!pb::util::MessageToJsonString(message, &out, options).ok()) return {};
  return out;
}

bool from_json(std::string_view json, pb::Message* message, std::string* why) {
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = pb::util::JsonStringToMessage(json, message, options);
  if (!status.ok()) *why = std::string(status.message());
  return status.ok();
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : size_t(n));
  return out;
}

bool unbase64(std::string_view text, std::string* out) {
  if (text.size() % 4 != 0) return false;
  out->assign(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out->data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return false;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t size = size_t(n);
  for (size_t i = text.size(); i > 0 && text[i - 1] == '=' && size > 0; --i) --size;
  out->resize(size);
  return true;
}

std::string metadata_tag(char prefix, const micro::Metadata& metadata) {
  MetadataTag tag;
  for (const auto& [k, v] : metadata) (*tag.mutable_metadata())[k] = v;
  return std::string(1, prefix) + "-" + base64(to_json(tag));
}

// Reads a tag "<prefix>-<base64 of JSON>" into `message`; false when it is not one.
bool read_tag(std::string_view tag, char prefix, pb::Message* message) {
  if (tag.size() < 2 || tag[0] != prefix || tag[1] != '-') return false;
  std::string json, why;
  return unbase64(tag.substr(2), &json) && from_json(json, message, &why);
}

micro::Metadata to_metadata(const pb::Map<std::string, std::string>& map) {
  return micro::Metadata(map.begin(), map.end());
}

// "host:port" -> (host, port); an IPv6 host loses its brackets. Port 0 when there is none.
std::pair<std::string, int> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return {address, 0};
  const std::string port_text = address.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return {address, 0};
  const int port = std::stoi(port_text);
  if (port > 65535) return {address, 0};
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return {host, port};
}

std::string join_address(const std::string& host, int port) {
  if (port <= 0) return host;
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Instance decode(const HealthEntry& entry) {
  const HealthService& s = entry.service();
  Instance out;
  out.create_index = s.createindex();
  micro::Service& service = out.service;
  service.name = s.service();
  micro::Node node;
  node.id = s.id();
  const std::string host = s.address().empty() ? entry.node().address() : s.address();
  node.address = join_address(host, s.port());
  const auto& meta = s.meta();
  const auto version = meta.find(kVersionKey);
  if (version != meta.end()) service.version = version->second;
  if (meta.count(kMarkerKey) == 0) {
    // A service registered by someone else: its Meta is all we know about the node.
    node.metadata = to_metadata(meta);
    node.metadata.erase(kVersionKey);
  } else {
    const auto address = meta.find(kAddressKey);
    if (address != meta.end()) node.address = address->second;
    std::vector<std::pair<uint32_t, micro::Endpoint>> endpoints;
    for (const auto& tag : s.tags()) {
      MetadataTag m;
      EndpointTag e;
      if (read_tag(tag, 'm', &m)) {
        service.metadata = to_metadata(m.metadata());
      } else if (read_tag(tag, 'n', &m)) {
        node.metadata = to_metadata(m.metadata());
      } else if (read_tag(tag, 'e', &e)) {
        endpoints.push_back(
            {e.index(), {e.name(), e.request(), e.response(), to_metadata(e.metadata())}});
      }
    }
    std::stable_sort(endpoints.begin(), endpoints.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [index, endpoint] : endpoints) service.endpoints.push_back(std::move(endpoint));
  }
  service.nodes.push_back(std::move(node));
  return out;
}

// The first character that is not JSON whitespace, or 0.
char first_char(std::string_view body) {
  const auto at = body.find_first_not_of(" \t\r\n");
  return at == std::string_view::npos ? '\0' : body[at];
}

// Consul's JSON arrays and objects are read as a field of a wrapping message.
std::string wrap(const char* field, std::string_view body) {
  std::string json = "{\"";
  json += field;
  json += "\":";
  json.append(body.data(), body.size());
  json += "}";
  return json;
}

}  // namespace

std::string go_duration(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

std::string check_id(std::string_view node_id) { return "service:" + std::string(node_id); }

micro::Result<std::string> encode_registration(const micro::Service& service,
                                               const micro::Node& node,
                                               const CheckSettings& check) {
  micro::Result<std::string> out;
  auto refuse = [&](const std::string& why) {
    out.error = micro::Error::bad_request("registry-consul cannot store node '" + node.id +
                                          "' of service '" + service.name + "': " + why);
    return out;
  };
  if (service.name.empty()) return refuse("the service has no name");
  if (node.id.empty()) return refuse("the node has no id");
  if (service.version.size() > kMetaValueMax)
    return refuse("its version is longer than Consul's 512-byte Meta value limit");
  AgentServiceRegistration r;
  r.set_id(node.id);
  r.set_name(service.name);
  const auto [host, port] = split_address(node.address);
  r.set_address(host);
  r.set_port(port);
  auto& meta = *r.mutable_meta();
  meta[kMarkerKey] = "1";
  meta[kVersionKey] = service.version;
  // An empty host would read back as the agent's node address (Consul's rule), so it is kept too.
  if (host.empty() || join_address(host, port) != node.address) {
    if (node.address.size() > kMetaValueMax)
      return refuse("its address is longer than Consul's 512-byte Meta value limit");
    meta[kAddressKey] = node.address;
  }
  if (!service.metadata.empty()) r.add_tags(metadata_tag('m', service.metadata));
  if (!node.metadata.empty()) r.add_tags(metadata_tag('n', node.metadata));
  for (size_t i = 0; i < service.endpoints.size(); ++i) {
    const auto& e = service.endpoints[i];
    EndpointTag tag;
    tag.set_name(e.name);
    tag.set_request(e.request);
    tag.set_response(e.response);
    tag.set_index(static_cast<uint32_t>(i));
    for (const auto& [k, v] : e.metadata) (*tag.mutable_metadata())[k] = v;
    r.add_tags("e-" + base64(to_json(tag)));
  }
  AgentCheck* c = r.mutable_check();
  c->set_checkid(check_id(node.id));
  c->set_name("micro TTL check of " + node.id);
  c->set_ttl(go_duration(check.ttl));
  // Registered passing: registering again (a renewal after the agent lost the node, or new
  // metadata) must not make a live node critical, even for a moment, as the default would.
  c->set_status("passing");
  if (check.deregister_critical_after.count() > 0)
    c->set_deregistercriticalserviceafter(go_duration(check.deregister_critical_after));
  out.value = to_json(r);

  // What Consul will hand back must read back as what we were given, byte for byte (this
  // refuses strings that are not UTF-8, which JSON cannot carry).
  HealthEntry entry;
  std::string why;
  if (out.value.empty() || !from_json(out.value, entry.mutable_service(), &why))
    return refuse("it does not encode as JSON (strings must be UTF-8)");
  entry.mutable_service()->set_service(r.name());
  micro::Service expected = service;
  expected.nodes = {node};
  if (!(decode(entry).service == expected))
    return refuse("it would not read back identically (strings must be valid UTF-8)");
  return out;
}

micro::Result<std::vector<Instance>> parse_health(std::string_view body, std::string_view name) {
  micro::Result<std::vector<Instance>> out;
  HealthEntries entries;
  std::string why = "it does not start with '['";
  if (first_char(body) != '[' || !from_json(wrap("entries", body), &entries, &why)) {
    out.error = micro::Error(502, "consul's answer to GET /v1/health/service/" + std::string(name) +
                                      " is not a list of health entries: " + why);
    return out;
  }
  for (const auto& entry : entries.entries()) {
    if (entry.service().service() != name || entry.service().id().empty()) continue;
    out.value.push_back(decode(entry));
  }
  return out;
}

micro::Result<std::vector<std::string>> parse_catalog_services(std::string_view body) {
  micro::Result<std::vector<std::string>> out;
  CatalogServices services;
  std::string why = "it does not start with '{'";
  if (first_char(body) != '{' || !from_json(wrap("services", body), &services, &why)) {
    out.error = micro::Error(
        502, "consul's answer to GET /v1/catalog/services is not an object of services: " + why);
    return out;
  }
  for (const auto& [name, tags] : services.services()) out.value.push_back(name);
  std::sort(out.value.begin(), out.value.end());
  return out;
}

std::vector<micro::Service> group_by_version(const std::vector<Instance>& instances) {
  std::map<std::string, micro::Service> by_version;
  for (const auto& instance : instances) {
    const micro::Service& s = instance.service;
    auto [it, inserted] = by_version.try_emplace(s.version, s);
    if (!inserted) it->second.nodes.insert(it->second.nodes.end(), s.nodes.begin(), s.nodes.end());
  }
  std::vector<micro::Service> out;
  for (auto& [version, service] : by_version) {
    std::sort(service.nodes.begin(), service.nodes.end(),
              [](const micro::Node& a, const micro::Node& b) { return a.id < b.id; });
    out.push_back(std::move(service));
  }
  return out;
}

std::string url_escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace micro::consul
