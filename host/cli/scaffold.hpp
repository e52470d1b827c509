// `micro new module`: writes an out-of-tree module project that builds against the installed SDK.
#pragma once

#include <string>

namespace micro::cli {

// Creates DIR with CMakeLists.txt, src/<name>.cpp (a plugin class of `kind` whose methods answer
// 501 until written) and README.md. Returns 0, or prints why not and returns non-zero.
int new_module(const std::string& kind, const std::string& name, const std::string& dir);

}  // namespace micro::cli
