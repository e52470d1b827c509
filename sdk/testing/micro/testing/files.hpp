// Small file helpers for tests.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace micro::testing {

// The whole file as bytes; empty when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace micro::testing
