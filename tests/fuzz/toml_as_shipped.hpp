// Force-included into fuzz_config: toml++ as micro gets it from Debian (libtomlplusplus3, built by
// g++ with NDEBUG), where its internal assertions are compiled out and its preconditions are not
// assumed either (g++ has no __builtin_assume).
//
// toml++ 3.3.0 breaks several of those preconditions on malformed input, then reports a clean
// syntax error, as `micro config check` does on each: "[=]" and "[[[1]]]" (parse_key;
// marzer/tomlplusplus#294, fixed upstream by PR #301), "a = [}]" (parse_value), an hour that is
// not a digit in a date-time (parse_time). Asserting them would stop the fuzzer at bugs that do
// not exist in what micro runs; assuming them (a clang NDEBUG build) would make them undefined
// behaviour. The sanitizers still see every memory and UB fault in the parser.
#pragma once

#define TOML_ASSERT(expr) static_cast<void>(0)
