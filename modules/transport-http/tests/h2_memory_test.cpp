// H2Memory (h2_memory.hpp): nghttp2's allocator for one session hands freed blocks back out by
// size class, keeps what realloc moves, zeroes calloc's, and keeps a bounded number of blocks.
#include "h2_memory.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

using micro::transport_http::H2Memory;

TEST(H2Memory, AFreedBlockServesTheNextAllocationOfItsClass) {
  H2Memory memory;
  void* a = memory.allocate(40);  // the 64-byte class
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % alignof(std::max_align_t), 0u);
  memory.release(a);
  EXPECT_EQ(memory.kept(), 1u);
  EXPECT_EQ(memory.allocate(64), a) << "same class: the kept block";
  void* other = memory.allocate(65);  // the next class: a block of its own
  EXPECT_NE(other, a);
  memory.release(other);
  memory.release(a);
  EXPECT_EQ(memory.kept(), 2u);
}

TEST(H2Memory, ReallocKeepsTheBytesAcrossClassesAndBeyondThem) {
  H2Memory memory;
  auto* p = static_cast<char*>(memory.reallocate(nullptr, 20));
  const std::string text = "nineteen characters";
  std::memcpy(p, text.c_str(), text.size() + 1);
  EXPECT_EQ(memory.reallocate(p, 32), p) << "still fits its class: not moved";
  p = static_cast<char*>(memory.reallocate(p, 1000));
  EXPECT_STREQ(p, text.c_str());
  p = static_cast<char*>(memory.reallocate(p, 100000));  // past the largest class
  EXPECT_STREQ(p, text.c_str());
  p[99999] = 'x';
  p = static_cast<char*>(memory.reallocate(p, 200000));
  EXPECT_STREQ(p, text.c_str());
  EXPECT_EQ(p[99999], 'x');
  memory.release(p);
}

TEST(H2Memory, CallocZeroesARecycledBlock) {
  H2Memory memory;
  nghttp2_mem* mem = memory.mem();
  void* dirty = memory.allocate(100);
  std::memset(dirty, 0xab, 100);
  memory.release(dirty);
  if (mem == nullptr) GTEST_SKIP() << "built with AddressSanitizer: nghttp2 uses malloc";
  auto* zeroed = static_cast<unsigned char*>(mem->calloc(10, 10, mem->mem_user_data));
  ASSERT_NE(zeroed, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(zeroed[i], 0) << "at " << i;
  EXPECT_EQ(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data), nullptr) << "overflow";
  mem->free(zeroed, mem->mem_user_data);
}

TEST(H2Memory, WhatIsKeptIsBounded) {
  H2Memory memory;
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) blocks.push_back(memory.allocate(100));
  for (void* b : blocks) memory.release(b);
  EXPECT_EQ(memory.kept(), 64u);
  for (int i = 0; i < 10; ++i) memory.release(memory.allocate(1 << 20));  // never kept
  EXPECT_EQ(memory.kept(), 64u);
}

}  // namespace
