// nghttp2's memory for one HTTP/2 session, from free lists by size class. nghttp2 allocates for
// every stream (the stream, its frames, each received header's buffer): about 15 allocations a
// call. A session is used on its connection's strand only, so the lists need no lock. What is
// kept is bounded: up to kKeep blocks per class (about 260 KiB at most); larger blocks go to
// malloc and back. Under AddressSanitizer the session uses malloc directly, so ASan still sees
// every use after free inside nghttp2.
#pragma once

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define MICRO_H2_POOLED_MEMORY 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MICRO_H2_POOLED_MEMORY 0
#endif
#endif
#ifndef MICRO_H2_POOLED_MEMORY
#define MICRO_H2_POOLED_MEMORY 1
#endif

namespace micro::transport_http {

class H2Memory {
 public:
  H2Memory() = default;
  H2Memory(const H2Memory&) = delete;
  H2Memory& operator=(const H2Memory&) = delete;
  ~H2Memory() {
    for (auto& list : free_)
      for (void* block : list) std::free(block);
  }

  // For nghttp2_session_*_new3 (which copies it); null means nghttp2's own malloc.
  nghttp2_mem* mem() noexcept { return MICRO_H2_POOLED_MEMORY ? &mem_ : nullptr; }

  // Blocks kept now, per class (for tests).
  size_t kept() const noexcept {
    size_t n = 0;
    for (const auto& list : free_) n += list.size();
    return n;
  }

  void* allocate(size_t size) noexcept {
    const size_t c = class_of(size);
    void* block = nullptr;
    if (c < kClasses && !free_[c].empty()) {
      block = free_[c].back();
      free_[c].pop_back();
    } else {
      block = std::malloc(kHeader + (c < kClasses ? capacity(c) : size));
      if (block == nullptr) return nullptr;
    }
    *static_cast<size_t*>(block) = c < kClasses ? c : kClasses + size;  // the class, or the size
    return static_cast<char*>(block) + kHeader;
  }
  void release(void* p) noexcept {
    if (p == nullptr) return;
    void* block = static_cast<char*>(p) - kHeader;
    const size_t tag = *static_cast<size_t*>(block);
    if (tag < kClasses && free_[tag].size() < kKeep) {
      try {
        free_[tag].push_back(block);
        return;
      } catch (...) {  // no room to keep it: give it back
      }
    }
    std::free(block);
  }
  void* reallocate(void* p, size_t size) noexcept {
    if (p == nullptr) return allocate(size);
    const size_t tag = *reinterpret_cast<size_t*>(static_cast<char*>(p) - kHeader);
    const size_t has = tag < kClasses ? capacity(tag) : tag - kClasses;
    if (tag < kClasses && size <= has) return p;
    void* moved = allocate(size);
    if (moved == nullptr) return nullptr;
    std::memcpy(moved, p, std::min(has, size));
    release(p);
    return moved;
  }

 private:
  static constexpr size_t kHeader = alignof(std::max_align_t);  // keeps blocks aligned
  static constexpr size_t kClasses = 7;                          // 32, 64, ... 2048 bytes
  static constexpr size_t kKeep = 64;

  static constexpr size_t capacity(size_t c) noexcept { return size_t(32) << c; }
  static size_t class_of(size_t size) noexcept {
    for (size_t c = 0; c < kClasses; ++c)
      if (size <= capacity(c)) return c;
    return kClasses;
  }

  static void* c_malloc(size_t size, void* self) {
    return static_cast<H2Memory*>(self)->allocate(size);
  }
  static void c_free(void* p, void* self) { static_cast<H2Memory*>(self)->release(p); }
  static void* c_calloc(size_t n, size_t size, void* self) {
    if (size != 0 && n > SIZE_MAX / size) return nullptr;
    void* p = static_cast<H2Memory*>(self)->allocate(n * size);
    if (p != nullptr) std::memset(p, 0, n * size);
    return p;
  }
  static void* c_realloc(void* p, size_t size, void* self) {
    return static_cast<H2Memory*>(self)->reallocate(p, size);
  }

  std::array<std::vector<void*>, kClasses> free_;
  nghttp2_mem mem_{this, c_malloc, c_free, c_calloc, c_realloc};
};

}  // namespace micro::transport_http
