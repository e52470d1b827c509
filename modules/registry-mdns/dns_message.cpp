#include "dns_message.hpp"

#include <ldns/ldns.h>

#include <cstdlib>
#include <memory>

namespace micro::registry_mdns {
namespace {

struct PacketFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using PacketPtr = std::unique_ptr<ldns_pkt, PacketFree>;

constexpr size_t kMaxLabel = 63;
constexpr size_t kMaxName = 255;  // wire length, root label included
// More records than fit in kMaxMessageBytes at their smallest (11 bytes each) cannot be real.
constexpr size_t kMaxRecords = kMaxMessageBytes / 11;

// A DNAME rdf's data is the uncompressed wire form: length-prefixed labels, then 0.
std::optional<Name> name_from_rdf(const ldns_rdf* rdf) {
  if (rdf == nullptr || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME) return std::nullopt;
  const uint8_t* data = ldns_rdf_data(rdf);
  const size_t size = ldns_rdf_size(rdf);
  if (size == 0 || size > kMaxName) return std::nullopt;
  Name out;
  size_t pos = 0;
  while (pos < size) {
    const size_t len = data[pos++];
    if (len == 0) return pos == size ? std::optional<Name>(std::move(out)) : std::nullopt;
    if (len > kMaxLabel || pos + len > size) return std::nullopt;
    out.emplace_back(reinterpret_cast<const char*>(data + pos), len);
    pos += len;
  }
  return std::nullopt;  // no root label
}

Result<std::string> name_wire(const Name& name) {
  std::string wire;
  for (const auto& label : name) {
    if (label.empty() || label.size() > kMaxLabel)
      return {Error::bad_request("mdns: label of " + std::to_string(label.size()) + " bytes in '" +
                                 to_string(name) + "' (1 to 63 allowed)"),
              {}};
    wire.push_back(static_cast<char>(label.size()));
    wire += label;
  }
  wire.push_back('\0');
  if (wire.size() > kMaxName)
    return {Error::bad_request("mdns: name '" + to_string(name) + "' is longer than 255 bytes"),
            {}};
  return {{}, wire};
}

ldns_rdf* dname_rdf(const std::string& wire) {
  return ldns_dname_new_frm_data(static_cast<uint16_t>(wire.size()), wire.data());
}

bool read_record(const ldns_rr* rr, Record* out) {
  const auto name = name_from_rdf(ldns_rr_owner(rr));
  if (!name) return false;
  const uint16_t rclass = static_cast<uint16_t>(ldns_rr_get_class(rr));
  if ((rclass & ~kClassTopBit) != kClassIn) return false;
  out->name = *name;
  out->type = static_cast<uint16_t>(ldns_rr_get_type(rr));
  out->cache_flush = (rclass & kClassTopBit) != 0;
  out->ttl = ldns_rr_ttl(rr);
  const size_t count = ldns_rr_rd_count(rr);
  switch (out->type) {
    case kTypePtr: {
      if (count != 1) return false;
      auto target = name_from_rdf(ldns_rr_rdf(rr, 0));
      if (!target) return false;
      out->target = std::move(*target);
      return true;
    }
    case kTypeSrv: {
      if (count != 4) return false;
      for (size_t i = 0; i < 3; ++i)
        if (ldns_rdf_size(ldns_rr_rdf(rr, i)) != 2) return false;
      out->priority = ldns_rdf2native_int16(ldns_rr_rdf(rr, 0));
      out->weight = ldns_rdf2native_int16(ldns_rr_rdf(rr, 1));
      out->port = ldns_rdf2native_int16(ldns_rr_rdf(rr, 2));
      auto target = name_from_rdf(ldns_rr_rdf(rr, 3));
      if (!target) return false;
      out->target = std::move(*target);
      return true;
    }
    case kTypeTxt:
      for (size_t i = 0; i < count; ++i) {
        const ldns_rdf* rdf = ldns_rr_rdf(rr, i);
        const size_t size = ldns_rdf_size(rdf);
        const uint8_t* data = ldns_rdf_data(rdf);
        if (size == 0 || data[0] != size - 1) return false;  // a <character-string>
        if (size > 1) out->strings.emplace_back(reinterpret_cast<const char*>(data + 1), size - 1);
      }
      return true;
    case kTypeA:
    case kTypeAaaa: {
      const size_t want = out->type == kTypeA ? 4 : 16;
      if (count != 1 || ldns_rdf_size(ldns_rr_rdf(rr, 0)) != want) return false;
      out->address.assign(reinterpret_cast<const char*>(ldns_rdf_data(ldns_rr_rdf(rr, 0))), want);
      return true;
    }
    default:
      return false;  // NSEC, HINFO, OPT, ...: not ours
  }
}

void read_section(const ldns_rr_list* list, std::vector<Record>* out) {
  for (size_t i = 0; list != nullptr && i < ldns_rr_list_rr_count(list); ++i) {
    Record record;
    if (read_record(ldns_rr_list_rr(list, i), &record)) out->push_back(std::move(record));
  }
}

}  // namespace

std::string name_key(const Name& name) {
  std::string out = to_string(name);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string to_string(const Name& name) {
  std::string out;
  for (const auto& label : name) {
    if (!out.empty()) out.push_back('.');
    out += label;
  }
  return out;
}

Name parse_name(std::string_view dotted) {
  Name out;
  while (!dotted.empty()) {
    const size_t dot = dotted.find('.');
    if (dot != 0) out.emplace_back(dotted.substr(0, dot));
    if (dot == std::string_view::npos) break;
    dotted.remove_prefix(dot + 1);
  }
  return out;
}

Name concat(Name a, const Name& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::optional<Message> decode_message(const uint8_t* data, size_t size, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<Message> {
    if (why != nullptr) *why = std::move(reason);
    return std::nullopt;
  };
  if (data == nullptr || size < 12) return fail("shorter than a DNS header");
  if (size > kMaxMessageBytes) return fail("longer than 9000 bytes");
  // Counts that promise more records than the datagram can hold are refused before ldns
  // allocates for them.
  const size_t counts = size_t(data[4] << 8 | data[5]) + size_t(data[6] << 8 | data[7]) +
                        size_t(data[8] << 8 | data[9]) + size_t(data[10] << 8 | data[11]);
  if (counts > kMaxRecords) return fail("record counts exceed what the datagram can hold");
  ldns_pkt* raw = nullptr;
  const ldns_status status = ldns_wire2pkt(&raw, data, size);
  PacketPtr packet(raw);
  if (status != LDNS_STATUS_OK || !packet) return fail(ldns_get_errorstr_by_id(status));
  if (ldns_pkt_get_opcode(packet.get()) != LDNS_PACKET_QUERY) return fail("opcode is not 0");
  if (ldns_pkt_get_rcode(packet.get()) != LDNS_RCODE_NOERROR) return fail("rcode is not 0");

  Message out;
  out.id = ldns_pkt_id(packet.get());
  out.response = ldns_pkt_qr(packet.get());
  const ldns_rr_list* questions = ldns_pkt_question(packet.get());
  for (size_t i = 0; questions != nullptr && i < ldns_rr_list_rr_count(questions); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(questions, i);
    auto name = name_from_rdf(ldns_rr_owner(rr));
    const uint16_t rclass = static_cast<uint16_t>(ldns_rr_get_class(rr));
    const uint16_t plain = rclass & ~kClassTopBit;
    if (!name || (plain != kClassIn && plain != kClassAny)) continue;
    out.questions.push_back({std::move(*name), static_cast<uint16_t>(ldns_rr_get_type(rr)),
                             (rclass & kClassTopBit) != 0});
  }
  read_section(ldns_pkt_answer(packet.get()), &out.answers);
  read_section(ldns_pkt_authority(packet.get()), &out.answers);
  read_section(ldns_pkt_additional(packet.get()), &out.additionals);
  return out;
}

size_t encoded_size_bound(const Record& record) {
  auto name_size = [](const Name& n) {
    size_t s = 1;
    for (const auto& l : n) s += 1 + l.size();
    return s;
  };
  size_t rdata = 0;
  switch (record.type) {
    case kTypePtr:
      rdata = name_size(record.target);
      break;
    case kTypeSrv:
      rdata = 6 + name_size(record.target);
      break;
    case kTypeTxt:
      for (const auto& s : record.strings) rdata += 1 + s.size();
      if (record.strings.empty()) rdata = 1;
      break;
    default:
      rdata = record.address.size();
      break;
  }
  return name_size(record.name) + 10 + rdata;
}

Result<std::vector<uint8_t>> encode_message(const Message& message) {
  using R = Result<std::vector<uint8_t>>;
  PacketPtr packet(ldns_pkt_new());
  if (!packet) return {Error::internal("mdns: out of memory"), {}};
  ldns_pkt_set_id(packet.get(), message.id);
  ldns_pkt_set_qr(packet.get(), message.response);
  ldns_pkt_set_aa(packet.get(), message.response);
  ldns_pkt_set_opcode(packet.get(), LDNS_PACKET_QUERY);
  ldns_pkt_set_rcode(packet.get(), LDNS_RCODE_NOERROR);

  for (const auto& q : message.questions) {
    auto owner = name_wire(q.name);
    if (!owner.ok()) return {owner.error, {}};
    ldns_rr* rr = ldns_rr_new();
    ldns_rr_set_question(rr, true);
    ldns_rr_set_owner(rr, dname_rdf(owner.value));
    ldns_rr_set_type(rr, static_cast<ldns_rr_type>(q.type));
    ldns_rr_set_class(
        rr, static_cast<ldns_rr_class>(kClassIn | (q.unicast_response ? kClassTopBit : 0)));
    ldns_pkt_push_rr(packet.get(), LDNS_SECTION_QUESTION, rr);
  }

  auto push = [&](const Record& r, ldns_pkt_section section) -> Error {
    auto owner = name_wire(r.name);
    if (!owner.ok()) return owner.error;
    ldns_rr* rr = ldns_rr_new();
    ldns_rr_set_owner(rr, dname_rdf(owner.value));
    ldns_rr_set_type(rr, static_cast<ldns_rr_type>(r.type));
    ldns_rr_set_class(rr,
                      static_cast<ldns_rr_class>(kClassIn | (r.cache_flush ? kClassTopBit : 0)));
    ldns_rr_set_ttl(rr, r.ttl);
    // The rr is owned by the packet from here on, so an early return cannot leak it.
    ldns_pkt_push_rr(packet.get(), section, rr);
    switch (r.type) {
      case kTypePtr:
      case kTypeSrv: {
        auto target = name_wire(r.target);
        if (!target.ok()) return target.error;
        if (r.type == kTypeSrv) {
          ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, r.priority));
          ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, r.weight));
          ldns_rr_push_rdf(rr, ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, r.port));
        }
        ldns_rr_push_rdf(rr, dname_rdf(target.value));
        return {};
      }
      case kTypeTxt: {
        // An empty TXT record is one empty string (RFC 6763 §6.1).
        const std::vector<std::string> empty{std::string()};
        for (const auto& s : r.strings.empty() ? empty : r.strings) {
          if (s.size() > 255)
            return Error::bad_request("mdns: TXT string of " + std::to_string(s.size()) +
                                      " bytes (255 allowed)");
          std::string data(1, static_cast<char>(s.size()));
          data += s;
          ldns_rr_push_rdf(rr, ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, data.size(), data.data()));
        }
        return {};
      }
      case kTypeA:
      case kTypeAaaa: {
        const size_t want = r.type == kTypeA ? 4 : 16;
        if (r.address.size() != want) return Error::bad_request("mdns: bad address record size");
        ldns_rr_push_rdf(
            rr, ldns_rdf_new_frm_data(r.type == kTypeA ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA, want,
                                      r.address.data()));
        return {};
      }
      default:
        return Error::bad_request("mdns: cannot encode record type " + std::to_string(r.type));
    }
  };
  for (const auto& r : message.answers)
    if (Error e = push(r, LDNS_SECTION_ANSWER); !e.ok()) return {e, {}};
  for (const auto& r : message.additionals)
    if (Error e = push(r, LDNS_SECTION_ADDITIONAL); !e.ok()) return {e, {}};

  uint8_t* wire = nullptr;
  size_t size = 0;
  const ldns_status status = ldns_pkt2wire(&wire, packet.get(), &size);
  std::unique_ptr<uint8_t, decltype(&std::free)> owned(wire,
                                                       &std::free);  // ldns allocates with malloc
  if (status != LDNS_STATUS_OK)
    return {
        Error::internal(std::string("mdns: encoding failed: ") + ldns_get_errorstr_by_id(status)),
        {}};
  if (size > kMaxMessageBytes)
    return {Error::bad_request("mdns: message of " + std::to_string(size) +
                               " bytes exceeds the 9000-byte mDNS limit"),
            {}};
  return R{{}, std::vector<uint8_t>(wire, wire + size)};
}

}  // namespace micro::registry_mdns
