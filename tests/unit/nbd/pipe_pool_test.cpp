// PipePool: pipes of kCapacity come out empty, go back and are handed out again; a
// pipe that still holds data, or one past the retention limit, is closed instead;
// trim() gives back all but a few.
#include "server/nbd/pipe_pool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

namespace server::nbd {
namespace {

using blockcore::io::PipeBuffer;

TEST(PipePool, HandsOutEmptyPipesAndReusesThem) {
  PipePool pool(2);
  PipeBuffer a = pool.acquire();
  ASSERT_TRUE(a);
  EXPECT_GE(a.capacity(), PipePool::kCapacity);
  EXPECT_EQ(a.held(), 0u);
  const int fd = a.read_fd();
  pool.release(std::move(a));
  EXPECT_EQ(pool.retained(), 1u);
  PipeBuffer again = pool.acquire();
  EXPECT_EQ(again.read_fd(), fd);
  EXPECT_EQ(pool.retained(), 0u);
  pool.release(PipeBuffer());  // an empty handle is ignored
  EXPECT_EQ(pool.retained(), 0u);
}

TEST(PipePool, ClosesPipesThatHoldDataOrExceedTheLimit) {
  PipePool pool(2);
  PipeBuffer dirty = pool.acquire();
  ASSERT_TRUE(dirty);
  const char byte = 'x';
  ASSERT_EQ(::write(dirty.write_fd(), &byte, 1), 1);
  dirty.produced(1);
  pool.release(std::move(dirty));
  EXPECT_EQ(pool.retained(), 0u);  // a dropped reply's data never reaches another

  std::vector<PipeBuffer> many;
  for (int i = 0; i < 4; ++i) many.push_back(pool.acquire());
  for (auto& p : many) pool.release(std::move(p));
  EXPECT_EQ(pool.retained(), 2u);
  pool.trim(1);
  EXPECT_EQ(pool.retained(), 1u);
  pool.trim(5);
  EXPECT_EQ(pool.retained(), 1u);
  EXPECT_EQ(pool.refusals(), 0u);
}

}  // namespace
}  // namespace server::nbd
