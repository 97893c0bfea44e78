// RangeLock: shared holders of overlapping ranges run together, exclusive holders
// exclude every overlapping holder, disjoint (and adjacent) ranges never wait, requests
// are served in arrival order among overlapping ones (an exclusive waiter is not starved
// by a stream of shared holders), guards move and release once, and many coroutines on
// two threads never see a conflicting pair of holders; a release racing a waiter's
// parking never loses the wakeup.
#include "blockcore/base/range_lock.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::run_task;
using Mode = RangeLock::Mode;
constexpr Mode kS = Mode::kShared;
constexpr Mode kX = Mode::kExclusive;

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

// A lock request driven on a single-threaded io_context.
struct Req {
  std::optional<RangeLock::Guard> guard;
  bool granted() const { return guard.has_value(); }
};

std::unique_ptr<Req> request(asio::io_context& ctx, RangeLock& l, uint64_t b, uint64_t e, Mode m,
                             std::vector<int>* order = nullptr, int id = 0) {
  auto r = std::make_unique<Req>();
  Req* raw = r.get();
  asio::co_spawn(
      ctx,
      [&l, raw, b, e, m, order, id]() -> Task<void> {
        RangeLock::Guard g = co_await l.lock(b, e, m);
        if (order) order->push_back(id);
        raw->guard.emplace(std::move(g));
      },
      asio::detached);
  pump(ctx);
  return r;
}

TEST(RangeLockTest, SharedOverlapsRunTogetherExclusiveWaits) {
  asio::io_context ctx;
  RangeLock l;
  auto s1 = request(ctx, l, 0, 10, kS);
  auto s2 = request(ctx, l, 5, 15, kS);
  EXPECT_TRUE(s1->granted());
  EXPECT_TRUE(s2->granted());
  auto x = request(ctx, l, 9, 10, kX);
  EXPECT_FALSE(x->granted());
  s1->guard.reset();
  pump(ctx);
  EXPECT_FALSE(x->granted());  // s2 still overlaps
  s2->guard.reset();
  pump(ctx);
  EXPECT_TRUE(x->granted());
  x->guard.reset();
  EXPECT_EQ(l.size(), 0u);
}

TEST(RangeLockTest, DisjointAndAdjacentRangesNeverWait) {
  asio::io_context ctx;
  RangeLock l;
  auto a = request(ctx, l, 0, 10, kX);
  auto b = request(ctx, l, 10, 20, kX);  // adjacent: [0,10) and [10,20) do not overlap
  auto c = request(ctx, l, 100, 101, kX);
  auto d = request(ctx, l, 20, 100, kS);
  EXPECT_TRUE(a->granted());
  EXPECT_TRUE(b->granted());
  EXPECT_TRUE(c->granted());
  EXPECT_TRUE(d->granted());
  // Even behind a waiter: a disjoint request does not queue behind it.
  auto w = request(ctx, l, 5, 15, kX);
  EXPECT_FALSE(w->granted());
  auto e = request(ctx, l, 200, 300, kX);
  EXPECT_TRUE(e->granted());
  auto f = request(ctx, l, 0, UINT64_MAX, kS);  // overlaps everything exclusive
  EXPECT_FALSE(f->granted());
  EXPECT_EQ(l.size(), 7u);
  a.reset();  // destroying the Req releases its guard
  b.reset();
  pump(ctx);
  EXPECT_TRUE(w->granted());
  EXPECT_FALSE(f->granted());
  w.reset();
  c.reset();
  e.reset();
  pump(ctx);
  EXPECT_TRUE(f->granted());  // d is shared: compatible
  f.reset();
  d.reset();
  EXPECT_EQ(l.size(), 0u);
}

TEST(RangeLockTest, ExclusiveWaiterIsNotStarvedByLaterSharedHolders) {
  asio::io_context ctx;
  RangeLock l;
  std::vector<int> order;
  auto s0 = request(ctx, l, 0, 100, kS, &order, 0);
  auto x = request(ctx, l, 40, 60, kX, &order, 1);
  EXPECT_FALSE(x->granted());
  // A stream of shared requests that overlap the waiting writer: all queue behind it,
  // even though they would be compatible with the current (shared) holder.
  std::vector<std::unique_ptr<Req>> later;
  for (int i = 0; i < 10; ++i) {
    later.push_back(request(ctx, l, 50, 51 + i, kS, &order, 10 + i));
    EXPECT_FALSE(later.back()->granted());
  }
  // A shared request that overlaps the holder but not the writer is compatible: runs.
  auto side = request(ctx, l, 0, 40, kS, &order, 99);
  EXPECT_TRUE(side->granted());
  s0.reset();
  pump(ctx);
  EXPECT_TRUE(x->granted());
  for (auto& r : later) EXPECT_FALSE(r->granted());
  x.reset();
  pump(ctx);
  for (auto& r : later) EXPECT_TRUE(r->granted());  // all shared: granted together
  EXPECT_EQ(order.front(), 0);
  EXPECT_EQ(order[1], 99);
  EXPECT_EQ(order[2], 1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(order[3 + i], 10 + i);
}

TEST(RangeLockTest, OverlappingExclusivesAreServedInArrivalOrder) {
  asio::io_context ctx;
  RangeLock l;
  std::vector<int> order;
  std::vector<std::unique_ptr<Req>> reqs;
  for (int i = 0; i < 12; ++i) {
    // Alternate modes and shapes; all overlap [5, 6).
    const Mode m = (i % 3 == 0) ? kS : kX;
    reqs.push_back(request(ctx, l, static_cast<uint64_t>(i % 5), 6 + static_cast<uint64_t>(i), m,
                           &order, i));
  }
  ASSERT_EQ(order.size(), 1u);  // request 0 (shared) holds; request 1 (exclusive) waits
  for (size_t step = 0; step < reqs.size(); ++step) {
    // Release the oldest holder; the next in arrival order follows.
    reqs[step].reset();
    pump(ctx);
  }
  ASSERT_EQ(order.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(order[i], i);
}

TEST(RangeLockTest, GuardMoveAndReleaseSemantics) {
  RangeLock l;
  RangeLock::Guard a = run_task(l.lock(0, 4, kX));
  EXPECT_TRUE(a.owns_lock());
  EXPECT_EQ(l.size(), 1u);
  RangeLock::Guard b(std::move(a));
  EXPECT_FALSE(a.owns_lock());  // NOLINT(bugprone-use-after-move)
  a.release();                  // nothing to release
  EXPECT_EQ(l.size(), 1u);
  RangeLock::Guard c = run_task(l.lock(10, 20, kS));
  EXPECT_EQ(l.size(), 2u);
  c = std::move(b);  // releases [10,20), takes over [0,4)
  EXPECT_EQ(l.size(), 1u);
  EXPECT_TRUE(c.owns_lock());
  RangeLock::Guard& alias = c;  // self-move through an alias (no -Wself-move)
  c = std::move(alias);
  EXPECT_EQ(l.size(), 1u);
  c.release();
  c.release();
  EXPECT_EQ(l.size(), 0u);
  RangeLock::Guard d = run_task(l.lock(0, 4, kX));  // free again
  EXPECT_EQ(l.size(), 1u);
}

TEST(RangeLockTest, ReleaseOfOneHolderWakesEveryCompatibleWaiter) {
  asio::io_context ctx;
  RangeLock l;
  auto x = request(ctx, l, 0, 100, kX);
  std::vector<std::unique_ptr<Req>> waiters;
  for (uint64_t i = 0; i < 10; ++i) waiters.push_back(request(ctx, l, i * 10, i * 10 + 10, kX));
  for (auto& w : waiters) EXPECT_FALSE(w->granted());
  x.reset();
  pump(ctx);
  for (auto& w : waiters) EXPECT_TRUE(w->granted());  // disjoint: all at once
}

TEST(RangeLockTest, ManyCoroutinesOnTwoThreadsNeverHoldConflictingRanges) {
  constexpr uint64_t kUnits = 64;
  std::array<std::atomic<int>, kUnits> readers{};
  std::array<std::atomic<int>, kUnits> writers{};
  std::atomic<int> violations{0};
  std::atomic<int> done{0};
  std::atomic<long> exclusive_grants{0};
  RangeLock l;
  asio::io_context ctx1, ctx2;
  constexpr int kCoroutines = 48;
  constexpr int kIterations = 150;
  for (int c = 0; c < kCoroutines; ++c) {
    asio::co_spawn(
        (c % 2) ? ctx1 : ctx2,
        [&, c]() -> Task<void> {
          std::mt19937 rng(static_cast<unsigned>(c) * 7919u + 1);
          for (int i = 0; i < kIterations; ++i) {
            const uint64_t b = rng() % kUnits;
            const uint64_t e = std::min<uint64_t>(kUnits, b + 1 + rng() % 8);
            const Mode m = (rng() % 3 == 0) ? kX : kS;
            RangeLock::Guard g = co_await l.lock(b, e, m);
            for (uint64_t u = b; u < e; ++u) {
              if (m == kX) {
                if (writers[u].fetch_add(1) != 0 || readers[u].load() != 0) ++violations;
              } else {
                readers[u].fetch_add(1);
                if (writers[u].load() != 0) ++violations;
              }
            }
            if (m == kX) ++exclusive_grants;
            if (i % 2) co_await yield_once();
            for (uint64_t u = b; u < e; ++u) {
              if (m == kX) {
                writers[u].fetch_sub(1);
              } else {
                readers[u].fetch_sub(1);
              }
            }
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
  EXPECT_GT(exclusive_grants.load(), 0);
  EXPECT_EQ(l.size(), 0u);
}

TEST(RangeLockTest, ReleaseRacingTheWaitersParkingNeverLosesTheWakeup) {
  // A plain thread holds [0,8) exclusively and releases it while a coroutine on another
  // thread is inside lock(): the grant may happen after the entry was queued but before
  // the waiter parked (lock() must then wake itself).
  RangeLock l;
  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::thread runner([&] { ctx.run(); });
  constexpr int kRounds = 3000;
  for (int r = 0; r < kRounds; ++r) {
    RangeLock::Guard holder = run_task(l.lock(0, 8, kX));
    std::atomic<bool> got{false};
    std::atomic<bool> released{false};
    asio::co_spawn(
        ctx,
        [&]() -> Task<void> {
          RangeLock::Guard g = co_await l.lock(4, 12, (r % 2) ? kX : kS);
          got = true;
          g.release();
          released = true;
        },
        asio::detached);
    for (int spin = 0; spin < (r % 64); ++spin) std::this_thread::yield();
    holder.release();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!released && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(got) << "waiter never woke in round " << r;
    ASSERT_TRUE(released);
  }
  work.reset();
  runner.join();
  EXPECT_EQ(l.size(), 0u);
}

}  // namespace
}  // namespace blockcore
