// The DNS messages registry-mdns sends and reads, as plain C++ values. The wire format (name
// compression included) is NLnet Labs' ldns; this layer keeps only the records mDNS/DNS-SD needs
// and enforces this module's limits. The only place the module touches ldns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "micro/types.hpp"

namespace micro::registry_mdns {

// A domain name as its labels (raw bytes, no trailing root label).
using Name = std::vector<std::string>;

// DNS compares names ASCII case-insensitively; this key is the lower-cased dotted form.
std::string name_key(const Name& name);
// Dotted form for logs ("a.b.local").
std::string to_string(const Name& name);
// Splits a dotted name ("local", "_greeter._tcp.local"); empty labels are dropped.
Name parse_name(std::string_view dotted);
Name concat(Name a, const Name& b);

enum RecordType : uint16_t {
  kTypeA = 1,
  kTypePtr = 12,
  kTypeTxt = 16,
  kTypeAaaa = 28,
  kTypeSrv = 33,
  kTypeAny = 255,
};
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kClassAny = 255;
// mDNS reuses the top bit of the class: "unicast response" in questions, "cache flush" in
// records (RFC 6762 §5.4, §10.2).
constexpr uint16_t kClassTopBit = 0x8000;

struct Question {
  Name name;
  uint16_t type = 0;
  bool unicast_response = false;
};

struct Record {
  Name name;
  uint16_t type = 0;
  bool cache_flush = false;
  uint32_t ttl = 0;                             // seconds; 0 is a goodbye
  Name target;                                  // PTR, SRV
  uint16_t priority = 0, weight = 0, port = 0;  // SRV
  std::vector<std::string> strings;             // TXT, each <= 255 bytes
  std::string address;                          // A: 4 raw bytes, AAAA: 16
};

struct Message {
  uint16_t id = 0;
  bool response = false;
  std::vector<Question> questions;
  std::vector<Record> answers;      // answer and authority sections (known answers in queries)
  std::vector<Record> additionals;  // additional section
};

// The largest mDNS message (RFC 6762 §17); bigger datagrams are cut here and then refused.
inline constexpr size_t kMaxMessageBytes = 9000;

// Reads a datagram. Malformed input (truncated, pointer loops, labels > 63, names > 255, lying
// counts, opcode or rcode != 0) yields nothing and the reason in `why`. Records of other types or
// classes are skipped.
std::optional<Message> decode_message(const uint8_t* data, size_t size, std::string* why);

// Encodes with name compression. Fails with 400 on a label > 63 bytes, a name > 255 bytes, a TXT
// string > 255 bytes or a message > kMaxMessageBytes.
Result<std::vector<uint8_t>> encode_message(const Message& message);

// An upper bound of the encoded size of `record` without name compression.
size_t encoded_size_bound(const Record& record);

}  // namespace micro::registry_mdns
