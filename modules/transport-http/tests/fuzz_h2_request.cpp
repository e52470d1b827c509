// libFuzzer target: transport-http's HTTP/2 server side on arbitrary bytes. nghttp2 does the
// framing and HPACK (it is not the target); what is fuzzed is ours: the callbacks that turn its
// streams into server sockets (headers -> Message, the limits, micro-stream detection, DATA ->
// a unary body or stream frames, END_STREAM and RST_STREAM), a reader on every socket, and the
// teardown. The input follows the HTTP/2 client preface, as if read after the TLS handshake.
// Beyond "no crash, no hang, no leak, no sanitizer report" there is nothing to compare against.
// Build (clang++): see tests/fuzz/CMakeLists.txt. Seeds: tests/fuzz/corpus/fuzz_h2_request/.
#include <cstddef>
#include <cstdint>
#include <string>

#include "h2.hpp"
#include "runtime.hpp"

namespace {

using namespace micro::transport_http;

Runtime& runtime() {
  static Runtime* rt = [] {
    Settings settings;
    settings.threads = 1;
    settings.limits.max_header_bytes = 4096;
    settings.limits.max_body_bytes = 65536;
    return new Runtime(settings, micro::Logger());
  }();
  return *rt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::string bytes = preface;
  bytes.append(reinterpret_cast<const char*>(data), size);
  h2_feed_server(runtime(), bytes);
  return 0;
}
