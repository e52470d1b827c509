// What EchoCodec answers with, shared by the module, the direct build and the bench.
#pragma once

#include <string_view>

namespace micro_bench {

inline constexpr std::string_view kEchoContentType = "application/x-bench-echo";
inline constexpr std::string_view kEchoPayload = "0123456789abcdef";  // 16 bytes

}  // namespace micro_bench
