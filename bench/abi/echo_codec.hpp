// The smallest codec there is: encode and decode append the same 16 bytes and succeed. Compiled
// twice: into bench-echo-codec.so (behind the C ABI) and into the bench itself (called directly),
// so the two measurements run exactly the same plugin code.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "echo_payload.hpp"
#include "micro/codec.hpp"

namespace micro_bench {

class EchoCodec : public micro::CodecPlugin {
 public:
  EchoCodec() = default;
  explicit EchoCodec(const micro::CreateContext&) {}

  std::vector<std::string> content_types() override { return {std::string(kEchoContentType)}; }
  micro::Error decode(std::string_view, std::string_view, const micro::SchemaRef*,
                      std::string& out) override {
    out.append(kEchoPayload);
    return {};
  }
  micro::Error encode(std::string_view, std::string_view, const micro::SchemaRef*,
                      std::string& out) override {
    out.append(kEchoPayload);
    return {};
  }
};

}  // namespace micro_bench
