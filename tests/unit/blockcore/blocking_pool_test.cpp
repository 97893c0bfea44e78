#include "blockcore/io/blocking_pool.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "blockcore/base/status.h"
#include "testing/run_task.h"

namespace blockcore::io {
namespace {

using fleece_test::run_task;

Task<std::thread::id> where_does_it_run(BlockingPool& pool, std::thread::id* resumed_on) {
  std::thread::id ran_on = co_await pool.run([] { return std::this_thread::get_id(); });
  *resumed_on = std::this_thread::get_id();
  co_return ran_on;
}

TEST(BlockingPoolTest, ZeroThreadsRunsInline) {
  BlockingPool pool(0);
  EXPECT_EQ(pool.threads(), 0u);
  std::thread::id resumed;
  const std::thread::id ran = run_task(where_does_it_run(pool, &resumed));
  EXPECT_EQ(ran, std::this_thread::get_id());
  EXPECT_EQ(resumed, std::this_thread::get_id());
}

TEST(BlockingPoolTest, ThreadsRunOffTheCallerAndResumeOnIt) {
  BlockingPool pool(2);
  EXPECT_EQ(pool.threads(), 2u);
  std::thread::id resumed;
  const std::thread::id ran = run_task(where_does_it_run(pool, &resumed));
  EXPECT_NE(ran, std::this_thread::get_id());
  EXPECT_EQ(resumed, std::this_thread::get_id());  // back on the io_context thread
}

TEST(BlockingPoolTest, ReturnsMoveOnlyAndStatusValues) {
  BlockingPool pool(2);
  Status s = run_task([&]() -> Task<Status> {
    co_return co_await pool.run([] { return Status::from_errno(EIO, "x"); });
  }());
  EXPECT_EQ(s.code(), EIO);
  auto p = run_task([&]() -> Task<std::unique_ptr<int>> {
    co_return co_await pool.run([] { return std::make_unique<int>(42); });
  }());
  EXPECT_EQ(*p, 42);
}

TEST(BlockingPoolTest, ManyConcurrentCallsAllComplete) {
  asio::io_context ctx;  // declared first: destroyed after the pool's threads are joined
  BlockingPool pool(2);
  std::atomic<int> sum{0};
  int completed = 0;
  constexpr int kCalls = 200;
  for (int i = 0; i < kCalls; ++i) {
    asio::co_spawn(
        ctx,
        [&, i]() -> Task<void> {
          const int v = co_await pool.run([i] { return i; });
          sum += v;
          ++completed;  // resumed on ctx's single thread
        },
        asio::detached);
  }
  ctx.run();
  EXPECT_EQ(completed, kCalls);
  EXPECT_EQ(sum.load(), kCalls * (kCalls - 1) / 2);
}

// Jobs of one lane never overlap and run in the order they were submitted, while jobs
// of another lane (and plain run() calls) still run beside them.
TEST(BlockingPoolTest, ALaneRunsItsJobsOneAtATimeInOrder) {
  asio::io_context ctx;
  BlockingPool pool(4);
  BlockingPool::Lane lane = pool.make_lane();
  BlockingPool::Lane other = pool.make_lane();
  std::atomic<int> in_lane{0};
  std::atomic<int> max_in_lane{0};
  std::atomic<int> overlapped_other{0};
  std::vector<int> order;  // written by lane jobs only: they never overlap
  constexpr int kJobs = 64;
  for (int i = 0; i < kJobs; ++i) {
    asio::co_spawn(
        ctx,
        [&, i]() -> Task<void> {
          co_await pool.run(lane, [&, i] {
            const int now = ++in_lane;
            int seen = max_in_lane.load();
            while (now > seen && !max_in_lane.compare_exchange_weak(seen, now)) {
            }
            order.push_back(i);
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            --in_lane;
            return 0;
          });
        },
        asio::detached);
    asio::co_spawn(
        ctx,
        [&]() -> Task<void> {
          co_await pool.run(other, [&] {
            if (in_lane.load() > 0) ++overlapped_other;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            return 0;
          });
        },
        asio::detached);
  }
  ctx.run();
  EXPECT_EQ(max_in_lane.load(), 1);
  ASSERT_EQ(order.size(), static_cast<size_t>(kJobs));
  for (int i = 0; i < kJobs; ++i) EXPECT_EQ(order[i], i);
  EXPECT_GT(overlapped_other.load(), 0);  // another lane is not held back
}

TEST(BlockingPoolTest, ALaneOfAPoolWithoutThreadsRunsInline) {
  BlockingPool pool(0);
  BlockingPool::Lane lane = pool.make_lane();
  const std::thread::id ran =
      run_task(pool.run(lane, [] { return std::this_thread::get_id(); }));
  EXPECT_EQ(ran, std::this_thread::get_id());
}

TEST(BlockingPoolTest, StopWaitsForQueuedWork) {
  std::atomic<int> ran{0};
  {
    BlockingPool pool(2);
    asio::io_context ctx;
    for (int i = 0; i < 10; ++i) {
      asio::co_spawn(
          ctx,
          [&]() -> Task<void> {
            co_await pool.run([&] {
              ++ran;
              return 0;
            });
          },
          asio::detached);
    }
    ctx.run();
    pool.stop();
  }
  EXPECT_EQ(ran.load(), 10);
}

}  // namespace
}  // namespace blockcore::io
