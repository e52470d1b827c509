// codec-proto's decode on arbitrary bytes, with the microtest.Person schema and without. Beyond
// "no crash, no sanitizer report, errors are 4xx with a detail": bytes that decode pass through
// byte for byte (codec-proto never transcodes).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "codec_harness.hpp"

namespace {

constexpr std::string_view kProto = "application/protobuf";

void require_unchanged(micro::fuzz::CodecUnderTest& codec, std::string_view wire,
                       const micro_schema_t* schema) {
  std::string out;
  if (codec.decode(kProto, wire, schema, out) && out != wire)
    micro::fuzz::fail(std::string("decode changed the bytes it accepted (") +
                      (schema != nullptr ? "typed" : "untyped") + ")");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static micro::fuzz::CodecUnderTest codec;
  static const micro_schema_t person = micro::fuzz::test_schema("microtest.Person");
  const std::string_view wire(reinterpret_cast<const char*>(data), size);
  require_unchanged(codec, wire, &person);
  require_unchanged(codec, wire, nullptr);
  return 0;
}
