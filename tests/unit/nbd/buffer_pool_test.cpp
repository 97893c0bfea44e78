// BufferPool: size classes, alignment, reuse without new allocations, retention limits.
#include "server/nbd/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace server::nbd {
namespace {

TEST(BufferPool, SizeClassesAndAlignment) {
  BufferPool pool;
  EXPECT_FALSE(pool.acquire(0));
  for (size_t n : {size_t{1}, size_t{4096}, size_t{4097}, size_t{1} << 20, (size_t{1} << 20) + 1,
                   size_t{32} << 20}) {
    Buffer b = pool.acquire(n);
    ASSERT_TRUE(b);
    EXPECT_GE(b.capacity(), n);
    EXPECT_LT(b.capacity(), 2 * std::max<size_t>(n, 4096) + 1);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % BufferPool::kAlignment, 0u);
  }
}

TEST(BufferPool, ReusesReleasedBuffers) {
  BufferPool pool;
  std::byte* first;
  {
    Buffer b = pool.acquire(1 << 20);
    first = b.data();
  }
  EXPECT_EQ(pool.retained_bytes(), size_t{1} << 20);
  const uint64_t allocs = pool.allocations();
  for (int i = 0; i < 100; ++i) {
    Buffer b = pool.acquire((1 << 20) - i);
    EXPECT_EQ(b.data(), first);
  }
  EXPECT_EQ(pool.allocations(), allocs);
}

TEST(BufferPool, RespectsRetentionLimits) {
  BufferPool pool(2u << 20, 1);
  {
    Buffer a = pool.acquire(1 << 20);
    Buffer b = pool.acquire(1 << 20);
  }
  EXPECT_EQ(pool.retained_bytes(), size_t{1} << 20);  // one per class
  { Buffer c = pool.acquire(4 << 20); }
  EXPECT_EQ(pool.retained_bytes(), size_t{1} << 20);  // over the byte budget: freed
}

TEST(BufferPool, MoveAndReset) {
  BufferPool pool;
  Buffer a = pool.acquire(100);
  Buffer b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_TRUE(b);
  b.reset();
  EXPECT_FALSE(b);
  EXPECT_EQ(pool.retained_bytes(), 4096u);
}

}  // namespace
}  // namespace server::nbd
