// registry-mdns's packet reader: bytes off the multicast group -> a DNS message (ldns underneath)
// -> nodes (the TXT payload: zlib + registry-file's TOML node file). Beyond "no crash": a message
// that decodes encodes again (unless it is too large for mDNS) and decodes to the same records.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "dns_message.hpp"
#include "node_records.hpp"

using namespace micro::registry_mdns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string why;
  auto message = decode_message(data, size, &why);
  if (!message) {
    if (why.empty()) std::abort();  // every refusal says why
    return 0;
  }
  // Every SRV with every TXT of the message, as the cache pairs them.
  std::vector<std::string> addresses;
  for (const auto& r : message->additionals)
    if (r.type == kTypeA || r.type == kTypeAaaa) addresses.push_back(r.address);
  for (const auto& srv : message->answers) {
    if (srv.type != kTypeSrv) continue;
    for (const auto& txt : message->answers)
      if (txt.type == kTypeTxt)
        (void)node_from_records(srv.name, srv, txt.strings, addresses, &why);
  }
  for (auto& q : message->questions)
    if (q.name.empty()) return 0;  // the root: nothing we could ask for
  for (const auto* section : {&message->answers, &message->additionals})
    for (const auto& r : *section)
      if (r.name.empty() || ((r.type == kTypePtr || r.type == kTypeSrv) && r.target.empty()))
        return 0;
  auto wire = encode_message(*message);
  if (!wire.ok()) return 0;  // e.g. over 9000 bytes once the skipped records' room is reused
  auto again = decode_message(wire.value.data(), wire.value.size(), &why);
  if (!again || again->answers.size() != message->answers.size() ||
      again->additionals.size() != message->additionals.size() ||
      again->questions.size() != message->questions.size())
    std::abort();
  return 0;
}
