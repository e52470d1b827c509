// The two ways selector-default chooses among a service's nodes, and the per-thread random source
// behind "random".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace selector_default {

enum class Strategy { random, round_robin };

// "random" or "round_robin"; nullopt for anything else.
inline std::optional<Strategy> parse_strategy(std::string_view name) noexcept {
  if (name == "random") return Strategy::random;
  if (name == "round_robin") return Strategy::round_robin;
  return std::nullopt;
}

// splitmix64: a good 64-bit mix that makes consecutive states look independent.
inline uint64_t mix64(uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A fresh seed, different on every call and in every process.
inline uint64_t new_seed() noexcept {
  static std::atomic<uint64_t> calls{0};
  const auto now =
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return mix64(now ^ mix64(calls.fetch_add(1, std::memory_order_relaxed) + 1));
}

// A uniform integer in [0, bound), bound > 0. Lock-free and allocation-free: each thread has its
// own splitmix64 stream. The thread state is a plain integer, so (unlike a thread_local
// std::mt19937) it registers no destructor that would pin the module in memory.
inline uint64_t random_below(uint64_t bound) noexcept {
  thread_local uint64_t state = 0;
  if (state == 0) state = new_seed() | 1;
  state += 0x9E3779B97F4A7C15ull;
  // Lemire's multiply-shift: maps 64 random bits onto [0, bound) without a division.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(mix64(state)) * bound) >> 64);
}

}  // namespace selector_default
