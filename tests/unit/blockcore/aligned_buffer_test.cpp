#include "blockcore/io/aligned_buffer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>
#include <vector>

namespace blockcore::io {
namespace {

TEST(AlignedBufferTest, AllocatesAligned) {
  for (size_t align : {size_t{512}, size_t{4096}, size_t{65536}}) {
    AlignedBuffer b = AlignedBuffer::allocate(12345, align);
    ASSERT_FALSE(b.empty());
    EXPECT_EQ(b.size(), 12345u);
    EXPECT_EQ(b.alignment(), align);
    EXPECT_TRUE(is_aligned(b.data(), align));
    std::fill(b.span().begin(), b.span().end(), std::byte{0x5a});  // writable
  }
}

TEST(AlignedBufferTest, MoveTransfersOwnership) {
  AlignedBuffer a = AlignedBuffer::allocate(4096);
  std::byte* p = a.data();
  AlignedBuffer b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): checking moved-from state
  EXPECT_EQ(b.data(), p);
  AlignedBuffer c;
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  c.reset();
  EXPECT_TRUE(c.empty());
  EXPECT_EQ(c.size(), 0u);
}

TEST(AlignedBufferTest, ImpossibleAllocationIsEmptyNotAThrow) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers abort on impossible allocations (allocator_may_return_null=0)";
#endif
  AlignedBuffer b = AlignedBuffer::allocate(size_t{1} << 62);
  EXPECT_TRUE(b.empty());
}

TEST(AlignedBufferTest, IsAlignedHelpers) {
  EXPECT_TRUE(is_aligned(uint64_t{8192}, 4096));
  EXPECT_FALSE(is_aligned(uint64_t{8193}, 4096));
  EXPECT_TRUE(is_aligned(uint64_t{3}, 1));
}

TEST(AlignedBufferPoolTest, RecyclesBuffers) {
  AlignedBufferPool pool(65536, 4096, 2);
  std::byte* first;
  {
    AlignedBufferPool::Lease l = pool.acquire();
    ASSERT_FALSE(l.empty());
    EXPECT_EQ(l.size(), 65536u);
    EXPECT_TRUE(is_aligned(l.data(), 4096));
    first = l.data();
    EXPECT_EQ(pool.cached(), 0u);
  }
  EXPECT_EQ(pool.cached(), 1u);
  AlignedBufferPool::Lease again = pool.acquire();
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(pool.cached(), 0u);
}

TEST(AlignedBufferPoolTest, KeepsAtMostMaxCached) {
  AlignedBufferPool pool(4096, 4096, 2);
  {
    std::vector<AlignedBufferPool::Lease> leases;
    for (int i = 0; i < 5; ++i) leases.push_back(pool.acquire());
  }
  EXPECT_EQ(pool.cached(), 2u);
}

TEST(AlignedBufferPoolTest, LeaseMoveAssignmentReturnsTheOldBuffer) {
  AlignedBufferPool pool(4096, 4096, 4);
  AlignedBufferPool::Lease a = pool.acquire();
  AlignedBufferPool::Lease b = pool.acquire();
  a = std::move(b);  // a's old buffer goes back to the pool
  EXPECT_EQ(pool.cached(), 1u);
}

TEST(AlignedBufferPoolTest, ConcurrentUse) {
  AlignedBufferPool pool(4096, 4096, 4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        AlignedBufferPool::Lease l = pool.acquire();
        ASSERT_FALSE(l.empty());
        l.data()[0] = std::byte{1};
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(pool.cached(), 4u);
}

TEST(ZeroBufferTest, IsZeroAlignedAndShared) {
  auto z = zero_buffer();
  EXPECT_EQ(z.size(), kZeroBufferSize);
  EXPECT_TRUE(is_aligned(z.data(), kDirectIoAlignment));
  EXPECT_TRUE(std::all_of(z.begin(), z.end(), [](std::byte b) { return b == std::byte{0}; }));
  EXPECT_EQ(zero_buffer().data(), z.data());
}

}  // namespace
}  // namespace blockcore::io
