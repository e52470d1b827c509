// codec-json's two parsers on arbitrary bytes: decode reads JSON (typed as microtest.Person, and
// untyped), encode reads the protobuf binary a typed handler wrote. Beyond "no crash, no sanitizer
// report, a failure is an error with a detail (4xx from decode)":
//  - untyped JSON that decodes passes through unchanged;
//  - typed JSON that decodes encodes back to JSON, and that JSON decodes again (what a server
//    writes, a client can read).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "codec_harness.hpp"

namespace {

constexpr std::string_view kJson = "application/json";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static micro::fuzz::CodecUnderTest codec;
  static const micro_schema_t person = micro::fuzz::test_schema("microtest.Person");
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::string json;
  (void)codec.encode(kJson, input, &person, json);  // the input as a handler's protobuf binary

  std::string untyped;
  if (codec.decode(kJson, input, nullptr, untyped) && untyped != input)
    micro::fuzz::fail("untyped JSON did not pass through unchanged");

  std::string canonical;
  if (!codec.decode(kJson, input, &person, canonical)) return 0;
  std::string encoded;
  std::string why;
  if (!codec.encode(kJson, canonical, &person, encoded, &why))
    micro::fuzz::fail("a Person that decoded does not encode: " + why);
  std::string again;
  if (!codec.decode(kJson, encoded, &person, again))
    micro::fuzz::fail("the JSON codec-json wrote does not decode: " + encoded);
  return 0;
}
