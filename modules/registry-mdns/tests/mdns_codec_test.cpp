// The DNS codec and the node <-> records mapping, without a network: round trips, the mDNS class
// bits, and every kind of bad packet the parser must refuse without crashing.
#include <gtest/gtest.h>
#include <zlib.h>

#include <string>
#include <vector>

#include "dns_message.hpp"
#include "foreign_packet.hpp"
#include "node_records.hpp"

namespace {

using namespace micro::registry_mdns;
using Bytes = std::vector<uint8_t>;

// ---- hand-built packets (RFC 1035 §4.1) ------------------------------------------------------

void put16(Bytes& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, uint16_t(v >> 16));
  put16(b, uint16_t(v));
}
void put_name(Bytes& b, const std::string& dotted) {
  for (const auto& label : parse_name(dotted)) {
    b.push_back(uint8_t(label.size()));
    b.insert(b.end(), label.begin(), label.end());
  }
  b.push_back(0);
}
Bytes header(uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns = 0,
             uint16_t ar = 0) {
  Bytes b;
  for (uint16_t v : {id, flags, qd, an, ns, ar}) put16(b, v);
  return b;
}
// One resource record with the given owner bytes and rdata.
void put_rr(Bytes& b, const Bytes& owner, uint16_t type, uint16_t rclass, uint32_t ttl,
            const Bytes& rdata) {
  b.insert(b.end(), owner.begin(), owner.end());
  put16(b, type);
  put16(b, rclass);
  put32(b, ttl);
  put16(b, uint16_t(rdata.size()));
  b.insert(b.end(), rdata.begin(), rdata.end());
}
Bytes name_bytes(const std::string& dotted) {
  Bytes b;
  put_name(b, dotted);
  return b;
}

Record rec(const std::string& name, uint16_t type, bool cache_flush, uint32_t ttl,
           const std::string& target = "") {
  Record r;
  r.name = parse_name(name);
  r.type = type;
  r.cache_flush = cache_flush;
  r.ttl = ttl;
  r.target = parse_name(target);
  return r;
}

std::optional<Message> decode(const Bytes& b, std::string* why = nullptr) {
  return decode_message(b.data(), b.size(), why);
}

Bytes foreign_printer_announcement() { return mdns_test::printer_announcement(); }

micro::Service sample_service() {
  micro::Service s;
  s.name = "greeter";
  s.version = "1.2.0";
  s.metadata = {{"team", "core"}, {"unicode", "grüße ✓"}};
  s.endpoints = {{"Greeter.Hello", "greeter.Request", "greeter.Response", {{"stream", "false"}}}};
  s.nodes = {{"greeter-1", "127.0.0.1:9000", {{"server", "rpc"}}}};
  return s;
}

// ---- round trips -----------------------------------------------------------------------------

TEST(DnsMessage, EveryRecordKindSurvivesARoundTripWithItsMdnsBits) {
  Message m;
  m.id = 77;
  m.response = true;
  m.questions = {{parse_name("_greeter._tcp.local"), kTypePtr, true}};
  Record ptr = rec("_greeter._tcp.local", kTypePtr, false, 120, "a._greeter._tcp.local");
  Record srv = rec("a._greeter._tcp.local", kTypeSrv, true, 120, "ip-127-0-0-1.local");
  srv.priority = 1;
  srv.weight = 2;
  srv.port = 9000;
  Record txt = rec("a._greeter._tcp.local", kTypeTxt, true, 120);
  txt.strings = {"txtvers=1", "k=v", std::string(255, 'x')};
  Record a = rec("ip-127-0-0-1.local", kTypeA, true, 120);
  a.address = std::string("\x7f\x00\x00\x01", 4);
  Record aaaa = rec("ip6-host.local", kTypeAaaa, false, 0);
  aaaa.address = std::string(15, '\0') + "\x01";
  m.answers = {ptr, srv, txt};
  m.additionals = {a, aaaa};

  auto wire = encode_message(m);
  ASSERT_TRUE(wire.ok()) << wire.error.detail();
  // Compression: "_greeter._tcp.local" is written once, then pointed to.
  size_t bound = 12 + 25;
  for (const auto& r : m.answers) bound += encoded_size_bound(r);
  for (const auto& r : m.additionals) bound += encoded_size_bound(r);
  EXPECT_LT(wire.value.size(), bound - 40);

  std::string why;
  auto back = decode(wire.value, &why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(back->id, 77);
  EXPECT_TRUE(back->response);
  ASSERT_EQ(back->questions.size(), 1u);
  EXPECT_TRUE(back->questions[0].unicast_response);
  EXPECT_EQ(back->questions[0].type, kTypePtr);
  ASSERT_EQ(back->answers.size(), 3u);
  EXPECT_EQ(name_key(back->answers[0].target), "a._greeter._tcp.local");
  EXPECT_FALSE(back->answers[0].cache_flush);
  EXPECT_TRUE(back->answers[1].cache_flush);
  EXPECT_EQ(back->answers[1].port, 9000);
  EXPECT_EQ(back->answers[1].priority, 1);
  EXPECT_EQ(back->answers[1].weight, 2);
  EXPECT_EQ(back->answers[2].strings, txt.strings);
  ASSERT_EQ(back->additionals.size(), 2u);
  EXPECT_EQ(back->additionals[0].address, a.address);
  EXPECT_EQ(back->additionals[1].address, aaaa.address);
  EXPECT_EQ(back->additionals[1].ttl, 0u);
}

TEST(DnsMessage, EncodeRefusesWhatDnsCannotCarry) {
  Message m;
  m.questions = {{{std::string(64, 'a'), "local"}, kTypePtr, false}};
  EXPECT_EQ(encode_message(m).error.code(), 400);
  m.questions = {{{std::string(63, 'a'), std::string(63, 'b'), std::string(63, 'c'),
                   std::string(63, 'd'), "local"},
                  kTypePtr,
                  false}};
  EXPECT_EQ(encode_message(m).error.code(), 400);
  Message t;
  Record txt = rec("x.local", kTypeTxt, false, 1);
  txt.strings = {std::string(256, 'x')};
  t.answers = {txt};
  EXPECT_EQ(encode_message(t).error.code(), 400);
}

// ---- bad input -------------------------------------------------------------------------------

TEST(DnsParser, EveryTruncationOfAValidPacketIsRefusedCleanly) {
  const Bytes whole = foreign_printer_announcement();
  ASSERT_TRUE(decode(whole));
  for (size_t n = 0; n < whole.size(); ++n) {
    Bytes cut(whole.begin(), whole.begin() + long(n));
    std::string why;
    EXPECT_FALSE(decode(cut, &why)) << "prefix of " << n << " bytes was accepted";
    EXPECT_FALSE(why.empty());
  }
}

TEST(DnsParser, CompressionPointerLoopsAreRefused) {
  // A question whose name is a pointer to itself.
  Bytes self = header(0, 0, 1, 0);
  self.push_back(0xC0);
  self.push_back(12);
  put16(self, kTypePtr);
  put16(self, kClassIn);
  EXPECT_FALSE(decode(self));
  // Two names pointing at each other.
  Bytes pair = header(0, 0, 2, 0);
  pair.insert(pair.end(), {1, 'a', 0xC0, 20});  // offset 12: "a" -> 20
  put16(pair, kTypePtr);
  put16(pair, kClassIn);
  pair.insert(pair.end(), {1, 'b', 0xC0, 12});  // offset 20: "b" -> 12
  put16(pair, kTypePtr);
  put16(pair, kClassIn);
  EXPECT_FALSE(decode(pair));
  // A pointer past the end.
  Bytes past = header(0, 0, 1, 0);
  past.insert(past.end(), {0xC3, 0xFF});
  put16(past, kTypePtr);
  put16(past, kClassIn);
  EXPECT_FALSE(decode(past));
}

TEST(DnsParser, LabelsOver63AndNamesOver255AreRefused) {
  Bytes label = header(0, 0, 1, 0);
  label.push_back(64);
  label.insert(label.end(), 64, 'a');
  label.push_back(0);
  put16(label, kTypePtr);
  put16(label, kClassIn);
  EXPECT_FALSE(decode(label));

  Bytes name = header(0, 0, 1, 0);
  for (int i = 0; i < 5; ++i) {  // 5 * 64 = 320 > 255
    name.push_back(63);
    name.insert(name.end(), 63, 'a');
  }
  name.push_back(0);
  put16(name, kTypePtr);
  put16(name, kClassIn);
  EXPECT_FALSE(decode(name));
}

TEST(DnsParser, CountsThatLieAreRefused) {
  // Says 5 answers, carries 4.
  Bytes more = foreign_printer_announcement();
  more[7] = 5;
  EXPECT_FALSE(decode(more));
  // Promises 65535 of each section in a 12-byte packet: refused before anything is allocated.
  Bytes huge = header(0, 0x8400, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF);
  std::string why;
  EXPECT_FALSE(decode(huge, &why));
  EXPECT_NE(why.find("counts"), std::string::npos) << why;
}

TEST(DnsParser, HugeTxtSetsAreBoundedByTheMessageSize) {
  // 34 strings of 255 bytes: 8704 bytes of TXT in one record, within the 9000-byte limit.
  Bytes big = header(0, 0x8400, 0, 1);
  Bytes txt;
  for (int i = 0; i < 34; ++i) {
    txt.push_back(255);
    txt.insert(txt.end(), 255, 'x');
  }
  put_rr(big, name_bytes("a._x._tcp.local"), kTypeTxt, kClassIn, 120, txt);
  auto m = decode(big);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->answers.size(), 1u);
  EXPECT_EQ(m->answers[0].strings.size(), 34u);
  // Past 9000 bytes the datagram is refused whole.
  Bytes bigger = header(0, 0x8400, 0, 1);
  txt.insert(txt.end(), 300, 'x');
  put_rr(bigger, name_bytes("a._x._tcp.local"), kTypeTxt, kClassIn, 120, txt);
  EXPECT_FALSE(decode(bigger));
}

TEST(DnsParser, WrongRdataShapesAndOtherOpcodesAreRefusedOrSkipped) {
  // An A record of 3 bytes: ldns refuses the packet.
  Bytes a = header(0, 0x8400, 0, 1);
  put_rr(a, name_bytes("h.local"), kTypeA, kClassIn, 120, {1, 2, 3});
  auto m = decode(a);
  EXPECT_TRUE(!m || m->answers.empty());
  // Opcode 5 (UPDATE) is not mDNS (RFC 6762 §18.3).
  Bytes update = header(0, 5 << 11, 0, 0);
  EXPECT_FALSE(decode(update));
  // A record of class CH is skipped, not read as IN.
  Bytes chaos = header(0, 0x8400, 0, 1);
  put_rr(chaos, name_bytes("h.local"), kTypeA, 3, 120, {1, 2, 3, 4});
  auto c = decode(chaos);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->answers.empty());
}

TEST(DnsParser, RandomBytesNeverCrash) {
  uint32_t state = 12345;
  for (int round = 0; round < 20000; ++round) {
    Bytes b(12 + state % 200);
    for (auto& byte : b) {
      state = state * 1103515245u + 12345u;
      byte = uint8_t(state >> 16);
    }
    b[4] = b[6] = b[8] = b[10] = 0;  // small counts, so ldns reads records at all
    (void)decode(b);
  }
}

// ---- nodes -----------------------------------------------------------------------------------

std::optional<micro::Service> read_back(const NodeRecords& r) {
  std::vector<std::string> addresses;
  if (r.address) addresses.push_back(r.address->address);
  std::string why;
  auto s = node_from_records(r.instance, r.srv, r.txt.strings, addresses, &why);
  EXPECT_TRUE(s) << why;
  return s;
}

TEST(NodeRecords, AMicroNodeComesBackExactlyAndReadablyToOtherTools) {
  const auto service = sample_service();
  auto records = node_records(service, parse_name("local"), 120);
  ASSERT_TRUE(records.ok()) << records.error.detail();
  EXPECT_EQ(name_key(records.value.type), "_greeter._tcp.local");
  EXPECT_EQ(name_key(records.value.instance), "greeter-1._greeter._tcp.local");
  EXPECT_EQ(records.value.srv.port, 9000);
  EXPECT_EQ(name_key(records.value.srv.target), "ip-127-0-0-1.local");
  ASSERT_TRUE(records.value.address);
  EXPECT_EQ(records.value.address->address, std::string("\x7f\x00\x00\x01", 4));
  const auto& txt = records.value.txt.strings;
  EXPECT_EQ(txt.at(0), "txtvers=1");
  EXPECT_NE(std::find(txt.begin(), txt.end(), "version=1.2.0"), txt.end());
  for (const auto& s : txt) EXPECT_LE(s.size(), 255u);
  auto back = read_back(records.value);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, service);
}

TEST(NodeRecords, ALargeServiceIsCompressedAndSplitAcrossStrings) {
  auto service = sample_service();
  for (int i = 0; i < 60; ++i)
    service.endpoints.push_back({"Greeter.Method" + std::to_string(i),
                                 "greeter.Request",
                                 "greeter.Response",
                                 {{"stream", i % 2 ? "true" : "false"}}});
  auto records = node_records(service, parse_name("local"), 120);
  ASSERT_TRUE(records.ok()) << records.error.detail();
  bool compressed = false;
  for (const auto& s : records.value.txt.strings) {
    EXPECT_LE(s.size(), 255u);
    compressed = compressed || s.rfind("z1=", 0) == 0;
  }
  EXPECT_TRUE(compressed);
  auto back = read_back(records.value);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, service);
  // And it still fits one message with the node's other records.
  Message m;
  m.response = true;
  m.answers = records.value.all();
  EXPECT_TRUE(encode_message(m).ok());
}

TEST(NodeRecords, ATooLargeServiceIsRefusedWithItsName) {
  auto service = sample_service();
  uint32_t state = 1;
  for (int i = 0; i < 400; ++i) {  // incompressible metadata
    std::string value;
    for (int j = 0; j < 40; ++j) {
      state = state * 1103515245u + 12345u;
      value.push_back(char('a' + (state >> 16) % 26));
    }
    service.metadata["k" + std::to_string(i)] = value;
  }
  auto records = node_records(service, parse_name("local"), 120);
  EXPECT_EQ(records.error.code(), 400);
  EXPECT_NE(records.error.detail().find("greeter"), std::string::npos);
}

TEST(NodeRecords, LongAndOddNamesBecomeValidLabels) {
  const std::string long_name(100, 'n');
  const Name type = service_type("Go.Micro.Srv." + long_name, parse_name("local"));
  EXPECT_LE(type[0].size(), 63u);
  EXPECT_EQ(type[0].rfind("_go-micro-srv-", 0), 0u);
  EXPECT_NE(service_type("a" + long_name, {"local"})[0],
            service_type("b" + long_name, {"local"})[0]);
  const Name instance = instance_name(std::string(80, 'i'), type);
  EXPECT_LE(instance[0].size(), 63u);
  auto service = sample_service();
  service.name = "Go.Micro.Srv." + long_name;
  service.nodes[0].id = std::string(80, 'i');
  auto records = node_records(service, parse_name("local"), 120);
  ASSERT_TRUE(records.ok());
  auto back = read_back(records.value);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, service);  // the full names travel in the TXT payload
}

TEST(NodeRecords, AForeignAnnouncementBecomesANode) {
  auto m = decode(foreign_printer_announcement());
  ASSERT_TRUE(m);
  ASSERT_EQ(m->answers.size(), 4u);
  const Record& ptr = m->answers[0];
  const Record& srv = m->answers[1];
  const Record& txt = m->answers[2];
  const Record& a = m->answers[3];
  EXPECT_EQ(to_string(ptr.target), "My Printer._ipp._tcp.local");
  EXPECT_EQ(to_string(srv.name), "My Printer._ipp._tcp.local");
  std::string why;
  auto node = node_from_records(srv.name, srv, txt.strings, {a.address}, &why);
  ASSERT_TRUE(node) << why;
  EXPECT_EQ(node->name, "ipp");
  ASSERT_EQ(node->nodes.size(), 1u);
  EXPECT_EQ(node->nodes[0].id, "My Printer");
  EXPECT_EQ(node->nodes[0].address, "192.0.2.7:631");
  EXPECT_EQ(node->nodes[0].metadata.at("rp"), "queues/main");
  EXPECT_EQ(node->nodes[0].metadata.at("note"), "2nd floor");
  EXPECT_EQ(node->nodes[0].metadata.at("color"), "");  // a boolean attribute (RFC 6763 §6.4)
}

TEST(NodeRecords, CorruptOrBombPayloadsAreRefused) {
  const Name instance = parse_name("n._greeter._tcp.local");
  Record srv = rec("n._greeter._tcp.local", kTypeSrv, true, 120, "h.local");
  std::string why;
  EXPECT_FALSE(node_from_records(instance, srv, {"t0=not toml at all ["}, {}, &why));
  EXPECT_FALSE(why.empty());
  EXPECT_FALSE(node_from_records(instance, srv, {"z0=\x78\x9c garbage"}, {}, &why));
  // A lost chunk: t0 and t2 without t1.
  auto good = encode_txt(sample_service());
  ASSERT_TRUE(good.ok());
  std::vector<std::string> gapped;
  for (const auto& s : good.value)
    if (s.rfind("t0=", 0) == 0) {
      gapped.push_back("t0=" + s.substr(3, 10));
      gapped.push_back("t2=" + s.substr(13));
    } else if (s[0] != 't') {
      gapped.push_back(s);
    }
  EXPECT_FALSE(node_from_records(instance, srv, gapped, {}, &why));
  EXPECT_NE(why.find("gap"), std::string::npos) << why;
  // 1 MiB of zeros deflates to ~1 KiB; inflating it is stopped at 64 KiB.
  const std::string zeros(1 << 20, '0');
  std::string bomb(compressBound(zeros.size()), '\0');
  uLongf size = bomb.size();
  ASSERT_EQ(compress2(reinterpret_cast<Bytef*>(bomb.data()), &size,
                      reinterpret_cast<const Bytef*>(zeros.data()), zeros.size(), 9),
            Z_OK);
  bomb.resize(size);
  std::vector<std::string> txt;
  for (size_t i = 0, n = 0; i < bomb.size(); i += 200, ++n)
    txt.push_back("z" + std::to_string(n) + "=" + bomb.substr(i, 200));
  EXPECT_FALSE(node_from_records(instance, srv, txt, {}, &why));
  EXPECT_NE(why.find("64 KiB"), std::string::npos) << why;
}

}  // namespace
