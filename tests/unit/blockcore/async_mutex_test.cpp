// AsyncMutex: mutual exclusion under contention from many coroutines on two threads,
// first-come-first-served hand-over, guard move/unlock semantics, try_lock, unlock from
// another thread, and the race where the holder unlocks between a waiter's fast-path
// check and its parking (the waiter must still run).
#include "blockcore/base/async_mutex.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::run_task;

// Yields the coroutine once (lets other coroutines of its executor run).
// Runs whatever is ready on ctx (restarting it: poll() stops a context that ran out of
// work, and later polls would then do nothing).
void pump(asio::io_context& ctx) {
  ctx.restart();
  ctx.poll();
}

Task<void> yield_once() {
  auto ex = co_await asio::this_coro::executor;
  co_await asio::post(ex, asio::use_awaitable);
}

// Spawns a coroutine on ctx that takes the lock and parks the guard in *out.
void spawn_locker(asio::io_context& ctx, AsyncMutex& m, std::optional<AsyncMutex::Guard>* out,
                  std::vector<int>* order = nullptr, int id = 0) {
  asio::co_spawn(
      ctx,
      [&m, out, order, id]() -> Task<void> {
        AsyncMutex::Guard g = co_await m.lock();
        if (order) order->push_back(id);
        out->emplace(std::move(g));
      },
      asio::detached);
}

TEST(AsyncMutexTest, UncontendedLockAndGuardRelease) {
  AsyncMutex m;
  AsyncMutex::Guard g = run_task(m.lock());
  EXPECT_TRUE(g.owns_lock());
  EXPECT_FALSE(m.try_lock());
  g.unlock();
  EXPECT_FALSE(g.owns_lock());
  g.unlock();  // idempotent
  EXPECT_TRUE(m.try_lock());
  m.unlock();
  {
    AsyncMutex::Guard g2 = run_task(m.lock());
    EXPECT_FALSE(m.try_lock());
  }
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(AsyncMutexTest, GuardMoveTransfersOwnershipOnce) {
  AsyncMutex m;
  AsyncMutex::Guard a = run_task(m.lock());
  AsyncMutex::Guard b(std::move(a));
  EXPECT_FALSE(a.owns_lock());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(b.owns_lock());
  a.unlock();  // a moved-from guard unlocks nothing
  EXPECT_FALSE(m.try_lock());
  AsyncMutex::Guard c;
  c = std::move(b);
  EXPECT_TRUE(c.owns_lock());
  EXPECT_FALSE(m.try_lock());
  AsyncMutex::Guard& alias = c;  // self-move through an alias (no -Wself-move)
  c = std::move(alias);  // self-move keeps the lock
  EXPECT_FALSE(m.try_lock());
  // Move-assigning over a guard that holds the lock releases it first.
  AsyncMutex m2;
  AsyncMutex::Guard d = run_task(m2.lock());
  d = std::move(c);
  EXPECT_TRUE(m2.try_lock());  // m2 was released by the assignment
  m2.unlock();
  EXPECT_FALSE(m.try_lock());  // m is still held, by d
  d.unlock();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(AsyncMutexTest, WaitersAreServedInArrivalOrder) {
  asio::io_context ctx;
  AsyncMutex m;
  std::optional<AsyncMutex::Guard> holder;
  std::vector<int> order;
  spawn_locker(ctx, m, &holder, &order, -1);
  pump(ctx);
  ASSERT_TRUE(holder);
  constexpr int kWaiters = 20;
  std::vector<std::optional<AsyncMutex::Guard>> guards(kWaiters);
  for (int i = 0; i < kWaiters; ++i) {
    spawn_locker(ctx, m, &guards[i], &order, i);
    pump(ctx);  // parks waiter i before i+1 arrives
  }
  EXPECT_EQ(order.size(), 1u);
  holder.reset();
  for (int i = 0; i < kWaiters; ++i) {
    pump(ctx);
    ASSERT_EQ(order.size(), static_cast<size_t>(i + 2));
    EXPECT_EQ(order.back(), i);
    EXPECT_FALSE(m.try_lock());
    // A latecomer using try_lock never jumps the queue.
    guards[i].reset();
  }
  pump(ctx);
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(AsyncMutexTest, UnlockHandsOverEvenToATryLockRacer) {
  // While a waiter is queued, unlock() passes ownership: try_lock() must fail until the
  // waiter releases.
  asio::io_context ctx;
  AsyncMutex m;
  ASSERT_TRUE(m.try_lock());
  std::optional<AsyncMutex::Guard> w;
  spawn_locker(ctx, m, &w);
  pump(ctx);
  EXPECT_FALSE(w);
  m.unlock();
  EXPECT_FALSE(m.try_lock());
  pump(ctx);
  ASSERT_TRUE(w);
  EXPECT_FALSE(m.try_lock());
  w.reset();
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(AsyncMutexTest, MutualExclusionAcrossTwoThreads) {
  asio::io_context ctx1, ctx2;
  AsyncMutex m;
  std::atomic<int> inside{0};
  std::atomic<int> violations{0};
  std::atomic<int> done{0};
  long counter = 0;  // protected by m only
  constexpr int kCoroutines = 40;
  constexpr int kIterations = 200;
  for (int c = 0; c < kCoroutines; ++c) {
    asio::io_context& ctx = (c % 2) ? ctx1 : ctx2;
    asio::co_spawn(
        ctx,
        [&, c]() -> Task<void> {
          for (int i = 0; i < kIterations; ++i) {
            AsyncMutex::Guard g = co_await m.lock();
            if (inside.fetch_add(1) != 0) ++violations;
            const long before = counter;
            if ((i + c) % 3 == 0) co_await yield_once();  // hold across a suspension
            counter = before + 1;
            inside.fetch_sub(1);
            if (i % 2) g.unlock();  // explicit unlock or guard destructor
          }
          ++done;
        },
        asio::detached);
  }
  std::thread t1([&] { ctx1.run(); });
  std::thread t2([&] { ctx2.run(); });
  t1.join();
  t2.join();
  EXPECT_EQ(done.load(), kCoroutines);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(counter, long{kCoroutines} * kIterations);
  EXPECT_TRUE(m.try_lock());
  m.unlock();
}

TEST(AsyncMutexTest, UnlockFromAnotherThreadRacingTheWaiterNeverLosesAWakeup) {
  // A plain thread holds the lock and releases it at about the moment a coroutine calls
  // lock(): the release may land between the waiter's fast-path check and its parking.
  // Every round must finish (a lost wakeup would hang the waiter).
  AsyncMutex m;
  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::thread runner([&] { ctx.run(); });
  constexpr int kRounds = 3000;
  int finished = 0;
  for (int r = 0; r < kRounds; ++r) {
    ASSERT_TRUE(m.try_lock());
    std::atomic<bool> got{false};
    asio::co_spawn(
        ctx,
        [&]() -> Task<void> {
          AsyncMutex::Guard g = co_await m.lock();
          got = true;
        },
        asio::detached);
    for (int spin = 0; spin < (r % 64); ++spin) std::this_thread::yield();
    m.unlock();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!got && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(got) << "waiter never woke in round " << r;
    // Wait until the guard is released on the runner thread.
    while (!m.try_lock()) std::this_thread::yield();
    m.unlock();
    ++finished;
  }
  work.reset();
  runner.join();
  EXPECT_EQ(finished, kRounds);
}

TEST(AsyncMutexTest, WaiterResumesOnItsOwnExecutor) {
  asio::io_context ctx1, ctx2;
  AsyncMutex m;
  ASSERT_TRUE(m.try_lock());
  std::thread::id resumed_on;
  std::thread::id ctx1_thread;
  asio::co_spawn(
      ctx1,
      [&]() -> Task<void> {
        ctx1_thread = std::this_thread::get_id();
        AsyncMutex::Guard g = co_await m.lock();
        resumed_on = std::this_thread::get_id();
      },
      asio::detached);
  std::thread t1([&] { ctx1.run(); });  // parks, then the context waits for the post
  asio::co_spawn(ctx2, [&]() -> Task<void> { m.unlock(); co_return; }, asio::detached);
  // Give the waiter time to park before the unlock.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ctx2.run();
  t1.join();
  EXPECT_EQ(resumed_on, ctx1_thread);
}

}  // namespace
}  // namespace blockcore
