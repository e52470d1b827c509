#include "node_records.hpp"

#include <zlib.h>

#include <boost/asio/ip/address.hpp>
#include <cstdio>
#include <map>

#include "../registry-file/node_file.hpp"

namespace micro::registry_mdns {
namespace {

constexpr size_t kMaxLabel = 63;
// TOML payloads above this are sent zlib-compressed.
constexpr size_t kCompressAbove = 512;
// Payload bytes per TXT string, leaving room for the "t12=" key.
constexpr size_t kChunk = 250;
// A compressed payload may not inflate beyond this (a zip bomb is refused, not expanded).
constexpr size_t kMaxPayloadBytes = 64 * 1024;
// All of a node's TXT strings must leave room in one 9000-byte message for its other records.
constexpr size_t kMaxTxtBytes = 7000;

std::string hash8(std::string_view s) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  char out[9];
  std::snprintf(out, sizeof out, "%08x", h);
  return out;
}

// Cuts `label` to 63 bytes, keeping it unique with a hash of the whole.
std::string fit_label(std::string label) {
  if (label.size() <= kMaxLabel) return label;
  return label.substr(0, kMaxLabel - 9) + "-" + hash8(label);
}

std::string dns_safe(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out.push_back((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ? c : '-');
  }
  return out.empty() ? "-" : out;
}

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

HostPort split_address(const std::string& address) {
  HostPort out;
  const size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string port = address.substr(colon + 1);
    unsigned long value = 0;
    bool digits = !port.empty() && port.size() <= 5;
    for (char c : port) digits = digits && c >= '0' && c <= '9';
    if (digits) value = std::stoul(port);
    if (digits && value <= 65535) out.port = static_cast<uint16_t>(value);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  out.host = host;
  return out;
}

std::map<std::string, std::string> txt_pairs(const std::vector<std::string>& strings) {
  std::map<std::string, std::string> out;
  for (const auto& s : strings) {
    const size_t eq = s.find('=');
    std::string key = s.substr(0, eq);
    if (key.empty()) continue;  // RFC 6763 §6.4: no key, ignore
    for (char& c : key)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out.emplace(key, eq == std::string::npos ? std::string() : s.substr(eq + 1));  // first wins
  }
  return out;
}

std::optional<Service> fail(std::string* why, std::string reason) {
  if (why != nullptr) *why = std::move(reason);
  return std::nullopt;
}

std::string deflate(const std::string& in) {
  uLongf size = compressBound(in.size());
  std::string out(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                reinterpret_cast<const Bytef*>(in.data()), in.size(), Z_BEST_COMPRESSION) != Z_OK)
    return {};
  out.resize(size);
  return out;
}

std::optional<std::string> inflate_bounded(const std::string& in) {
  std::string out(kMaxPayloadBytes, '\0');
  uLongf size = out.size();
  if (uncompress(reinterpret_cast<Bytef*>(out.data()), &size,
                 reinterpret_cast<const Bytef*>(in.data()), in.size()) != Z_OK)
    return std::nullopt;
  out.resize(size);
  return out;
}

}  // namespace

Name enumeration_name(const Name& domain) {
  return concat({"_services", "_dns-sd", "_udp"}, domain);
}

Name service_type(std::string_view service_name, const Name& domain) {
  return concat({fit_label("_" + dns_safe(service_name)), "_tcp"}, domain);
}

Name instance_name(std::string_view node_id, const Name& type) {
  return concat({fit_label(std::string(node_id.empty() ? "-" : node_id))}, type);
}

std::vector<Record> NodeRecords::all() const {
  std::vector<Record> out{type_ptr, enumeration_ptr, srv, txt};
  if (address) out.push_back(*address);
  return out;
}

Result<std::vector<std::string>> encode_txt(const Service& service) {
  using R = Result<std::vector<std::string>>;
  const Node& node = service.nodes.at(0);
  std::vector<std::string> out{"txtvers=1"};
  // Readable copies for other tools (dig, avahi-browse); the payload below is what micro reads.
  for (const auto& [key, value] : {std::pair<const char*, const std::string&>{"id", node.id},
                                   {"service", service.name},
                                   {"version", service.version},
                                   {"address", node.address}})
    if (std::string s = std::string(key) + "=" + value; s.size() <= 255) out.push_back(s);

  auto toml = registry_file::encode_node_file({service, 0});
  if (!toml.ok()) return {toml.error, {}};
  std::string payload = toml.value;
  if (payload.size() > kMaxPayloadBytes)
    return {Error::bad_request("mdns: node '" + node.id + "' of '" + service.name +
                               "' is over 64 KiB described; too large for mDNS"),
            {}};
  std::string key = "t";
  if (payload.size() > kCompressAbove) {
    payload = deflate(payload);
    key = "z";
    if (payload.empty()) return {Error::internal("mdns: zlib failed"), {}};
  }
  for (size_t i = 0, n = 0; i < payload.size(); i += kChunk, ++n)
    out.push_back(key + std::to_string(n) + "=" + payload.substr(i, kChunk));
  size_t total = 0;
  for (const auto& s : out) total += s.size() + 1;
  if (total > kMaxTxtBytes)
    return {Error::bad_request("mdns: node '" + node.id + "' of '" + service.name + "' needs " +
                               std::to_string(total) + " TXT bytes compressed; at most " +
                               std::to_string(kMaxTxtBytes) +
                               " fit one mDNS message (fewer endpoints or metadata)"),
            {}};
  return R{{}, out};
}

Result<NodeRecords> node_records(const Service& service, const Name& domain, uint32_t ttl) {
  if (service.nodes.size() != 1)
    return {Error::bad_request("mdns: node_records wants exactly one node"), {}};
  const Node& node = service.nodes[0];
  NodeRecords out;
  out.type = service_type(service.name, domain);
  out.instance = instance_name(node.id, out.type);

  out.type_ptr.name = out.type;
  out.type_ptr.type = kTypePtr;
  out.type_ptr.ttl = ttl;
  out.type_ptr.target = out.instance;

  out.enumeration_ptr.name = enumeration_name(domain);
  out.enumeration_ptr.type = kTypePtr;
  out.enumeration_ptr.ttl = ttl;
  out.enumeration_ptr.target = out.type;

  const HostPort hp = split_address(node.address);
  boost::system::error_code ec;
  const auto ip = boost::asio::ip::make_address(hp.host, ec);
  std::string host_label;
  if (!ec && ip.is_v4()) {
    host_label = "ip-" + dns_safe(ip.to_string());
    const auto bytes = ip.to_v4().to_bytes();
    out.address = Record{};
    out.address->type = kTypeA;
    out.address->address.assign(bytes.begin(), bytes.end());
  } else if (!ec && ip.is_v6()) {
    const auto bytes = ip.to_v6().to_bytes();
    host_label = "ip6-";
    for (unsigned char b : bytes) {
      char hex[3];
      std::snprintf(hex, sizeof hex, "%02x", b);
      host_label += hex;
    }
    out.address = Record{};
    out.address->type = kTypeAaaa;
    out.address->address.assign(bytes.begin(), bytes.end());
  } else {
    host_label = fit_label(dns_safe(hp.host));
  }
  const Name host = concat({host_label}, domain);
  if (out.address) {
    out.address->name = host;
    out.address->cache_flush = true;
    out.address->ttl = ttl;
  }

  out.srv.name = out.instance;
  out.srv.type = kTypeSrv;
  out.srv.cache_flush = true;
  out.srv.ttl = ttl;
  out.srv.port = hp.port;
  out.srv.target = host;

  auto txt = encode_txt(service);
  if (!txt.ok()) return {txt.error, {}};
  out.txt.name = out.instance;
  out.txt.type = kTypeTxt;
  out.txt.cache_flush = true;
  out.txt.ttl = ttl;
  out.txt.strings = std::move(txt.value);
  return {{}, std::move(out)};
}

std::optional<Service> node_from_records(const Name& instance, const Record& srv,
                                         const std::vector<std::string>& txt,
                                         const std::vector<std::string>& addresses,
                                         std::string* why) {
  if (instance.size() < 3)
    return fail(why, "instance name '" + to_string(instance) + "' is too short");
  const auto pairs = txt_pairs(txt);
  for (const char* key : {"t", "z"}) {
    if (pairs.count(std::string(key) + "0") == 0) continue;
    std::string payload;
    size_t chunks = 0;
    for (;; ++chunks) {
      auto it = pairs.find(key + std::to_string(chunks));
      if (it == pairs.end()) break;
      payload += it->second;
      if (payload.size() > kMaxPayloadBytes) return fail(why, "TXT payload is too large");
    }
    size_t named = 0;  // every "<key><digits>" pair, to notice a gap
    for (const auto& [k, v] : pairs)
      if (k.size() > 1 && k[0] == *key && k.find_first_not_of("0123456789", 1) == std::string::npos)
        ++named;
    if (named != chunks) return fail(why, "TXT payload chunks have a gap");
    if (*key == 'z') {
      auto inflated = inflate_bounded(payload);
      if (!inflated) return fail(why, "TXT payload does not inflate (corrupt, or over 64 KiB)");
      payload = std::move(*inflated);
    }
    std::string reason;
    auto file = registry_file::decode_node_file(payload, &reason);
    if (!file) return fail(why, "TXT payload: " + reason);
    if (file->service.nodes.size() != 1) return fail(why, "TXT payload does not hold one node");
    return file->service;
  }

  // A foreign DNS-SD instance: service "_http._tcp" is "http", the TXT pairs are metadata.
  Service out;
  std::string type = instance[1];
  if (!type.empty() && type[0] == '_') type.erase(0, 1);
  out.name = type;
  if (auto v = pairs.find("version"); v != pairs.end()) out.version = v->second;
  Node node;
  node.id = instance[0];
  std::string host = to_string(srv.target);
  for (const auto& raw : addresses) {
    if (raw.size() == 4) {
      boost::asio::ip::address_v4::bytes_type b;
      std::copy(raw.begin(), raw.end(), b.begin());
      host = boost::asio::ip::address_v4(b).to_string();
      break;  // IPv4 first: what most callers dial
    }
    if (raw.size() == 16) {
      boost::asio::ip::address_v6::bytes_type b;
      std::copy(raw.begin(), raw.end(), b.begin());
      host = "[" + boost::asio::ip::address_v6(b).to_string() + "]";
    }
  }
  node.address = host + ":" + std::to_string(srv.port);
  node.metadata = Metadata(pairs.begin(), pairs.end());
  out.nodes.push_back(std::move(node));
  return out;
}

}  // namespace micro::registry_mdns
