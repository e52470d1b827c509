// A bump allocator over a fixed buffer, for the fields of one parsed head: a reader holds the
// buffer, Beast's basic_fields allocates its elements from it, and nothing is freed one by one
// (the buffer goes with the reader). What does not fit comes from the heap, as usual.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace micro::transport_http {

class Arena {
 public:
  Arena(char* begin, size_t size) noexcept : begin_(begin), size_(size) {}
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* allocate(size_t bytes, size_t align) {
    const auto base = reinterpret_cast<uintptr_t>(begin_);
    const uintptr_t at = (base + used_ + align - 1) & ~(uintptr_t(align) - 1);
    if (at + bytes <= base + size_) {
      used_ = at + bytes - base;
      return reinterpret_cast<void*>(at);
    }
    return ::operator new(bytes);
  }
  void deallocate(void* p) noexcept {
    if (!owns(p)) ::operator delete(p);
  }
  // Forgets what was allocated: only when none of it is in use.
  void reset() noexcept { used_ = 0; }
  bool owns(const void* p) const noexcept {
    const auto* c = static_cast<const char*>(p);
    return c >= begin_ && c < begin_ + size_;
  }

 private:
  char* const begin_;
  const size_t size_;
  size_t used_ = 0;
};

// The standard allocator interface over an Arena (which must outlive every copy).
template <class T>
class ArenaAllocator {
 public:
  using value_type = T;
  template <class U>
  struct rebind {
    using other = ArenaAllocator<U>;
  };

  explicit ArenaAllocator(Arena& arena) noexcept : arena_(&arena) {}
  template <class U>
  ArenaAllocator(const ArenaAllocator<U>& other) noexcept : arena_(other.arena()) {}  // NOLINT

  T* allocate(size_t n) {
    static_assert(alignof(T) <= alignof(std::max_align_t));
    return static_cast<T*>(arena_->allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, size_t) noexcept { arena_->deallocate(p); }

  Arena* arena() const noexcept { return arena_; }
  template <class U>
  bool operator==(const ArenaAllocator<U>& other) const noexcept {
    return arena_ == other.arena();
  }
  template <class U>
  bool operator!=(const ArenaAllocator<U>& other) const noexcept {
    return arena_ != other.arena();
  }

 private:
  Arena* arena_;
};

}  // namespace micro::transport_http
