// micro::host::parse_config on arbitrary text: it never crashes, hangs or trips a sanitizer, every
// error it reports has a message and a line inside the text, and a config it accepts names its
// service.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "micro/host/config.hpp"

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\nPROPERTY BROKEN: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const micro::host::ConfigResult result = micro::host::parse_config(text, "fuzz.toml");
  const long lines = std::count(text.begin(), text.end(), '\n') + 1;
  for (const auto& error : result.errors) {
    if (error.message.empty()) fail("an error with no message: " + error.to_string());
    if (error.file != "fuzz.toml") fail("an error naming another file: " + error.to_string());
    if (error.line < 0 || error.line > lines)
      fail("an error on line " + std::to_string(error.line) + " of a " + std::to_string(lines) +
           "-line text: " + error.to_string());
  }
  if (result.ok() && result.config.service.name.empty())
    fail("a config with no service name was accepted");
  return 0;
}
