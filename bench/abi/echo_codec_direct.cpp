// EchoCodec for in-process calls, made in its own translation unit so the compiler cannot see the
// concrete type at the call site: the bench's call stays a real virtual call.
#include <memory>

#include "echo_codec.hpp"

namespace micro_bench {

std::unique_ptr<micro::CodecPlugin> make_direct_echo_codec() {
  return std::make_unique<EchoCodec>();
}

}  // namespace micro_bench
