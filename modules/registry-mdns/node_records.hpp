// How a micro node becomes DNS-SD records and back (the encoding is described in README.md).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dns_message.hpp"
#include "micro/types.hpp"

namespace micro::registry_mdns {

// _services._dns-sd._udp.<domain> (RFC 6763 §9).
Name enumeration_name(const Name& domain);
// _<service>._tcp.<domain>: the service name made a label (see README: characters outside
// [a-z0-9-] become '-', a long name is cut and given a hash).
Name service_type(std::string_view service_name, const Name& domain);
// <node id>.<type>, the id cut and hashed if longer than 63 bytes.
Name instance_name(std::string_view node_id, const Name& type);

// The records that announce `service` (exactly one node): PTR type -> instance, PTR enumeration
// -> type, SRV, TXT and, when the node's host is an IP literal, A or AAAA. `ttl` in seconds.
struct NodeRecords {
  Name type, instance;
  Record type_ptr, enumeration_ptr, srv, txt;
  std::optional<Record> address;
  std::vector<Record> all() const;
};
// Fails with 400 when the node cannot be announced (no node, or TXT too large for one message).
Result<NodeRecords> node_records(const Service& service, const Name& domain, uint32_t ttl);

// The TXT strings for `service` (exactly one node); exposed for tests.
Result<std::vector<std::string>> encode_txt(const Service& service);

// A node read back from an instance's SRV and TXT and its host's addresses (raw A/AAAA bytes).
// A micro node comes back exactly as registered; a foreign one is named after its service type,
// with its TXT pairs as node metadata. Nothing (and why) if the TXT is unusable.
std::optional<Service> node_from_records(const Name& instance, const Record& srv,
                                         const std::vector<std::string>& txt,
                                         const std::vector<std::string>& addresses,
                                         std::string* why);

}  // namespace micro::registry_mdns
