// A DNS-SD announcement built byte by byte as another responder (a printer's firmware, say)
// would send it: the RFC 6763 §4 shape for "My Printer._ipp._tcp.local", with name compression.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mdns_test {

inline void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}

inline void put_labels(std::vector<uint8_t>& b, std::initializer_list<std::string> labels) {
  for (const auto& l : labels) {
    b.push_back(uint8_t(l.size()));
    b.insert(b.end(), l.begin(), l.end());
  }
  b.push_back(0);
}

// Offsets: header 12; "_ipp._tcp.local" at 12 (17 bytes); the PTR's rdata at 39.
inline std::vector<uint8_t> printer_announcement(uint32_t ttl = 120) {
  std::vector<uint8_t> b;
  for (uint16_t v : {0, 0x8400, 0, 4, 0, 0}) put16(b, uint16_t(v));
  auto rr = [&](const std::vector<uint8_t>& owner, uint16_t type, uint16_t rclass,
                const std::vector<uint8_t>& rdata) {
    b.insert(b.end(), owner.begin(), owner.end());
    put16(b, type);
    put16(b, rclass);
    put16(b, uint16_t(ttl >> 16));
    put16(b, uint16_t(ttl));
    put16(b, uint16_t(rdata.size()));
    b.insert(b.end(), rdata.begin(), rdata.end());
  };
  std::vector<uint8_t> type_name;
  put_labels(type_name, {"_ipp", "_tcp", "local"});
  std::vector<uint8_t> ptr{10};
  for (char c : std::string("My Printer")) ptr.push_back(uint8_t(c));
  ptr.insert(ptr.end(), {0xC0, 12});
  rr(type_name, 12, 1, ptr);
  const std::vector<uint8_t> instance{0xC0, 39};
  std::vector<uint8_t> srv;
  put16(srv, 0);
  put16(srv, 0);
  put16(srv, 631);
  put_labels(srv, {"printer", "local"});
  rr(instance, 33, 0x8001, srv);
  std::vector<uint8_t> txt;
  for (std::string s : {"txtvers=1", "rp=queues/main", "note=2nd floor", "Color"}) {
    txt.push_back(uint8_t(s.size()));
    txt.insert(txt.end(), s.begin(), s.end());
  }
  rr(instance, 16, 0x8001, txt);
  std::vector<uint8_t> host;
  put_labels(host, {"printer", "local"});
  rr(host, 1, 0x8001, {192, 0, 2, 7});
  return b;
}

}  // namespace mdns_test
