// ThrottleNode over a MemoryNode, in real time on one io_context: data passes unchanged,
// flush and block status are not throttled, the read rate follows bps-read, a large
// request queued first is not overtaken by small ones (FIFO), a limit change frees a
// waiting request at once, and writes mark the child's dirty bitmaps.
#include "blockcore/filters/throttle_node.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "testing/memory_node.h"
#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::MemoryNode;
using fleece_test::run_task;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kSize = 16 * kMiB;

NodeSpec throttle_spec(const ThrottleLimits& limits, bool read_only = false) {
  NodeSpec spec;
  spec.node_name = "slow";
  spec.driver = "throttle";
  spec.read_only = read_only;
  spec.throttle = limits;
  return spec;
}

ThrottleLimits limit(ThrottleBucket b, uint64_t avg) {
  ThrottleLimits l;
  l[b].avg = avg;
  return l;
}

std::shared_ptr<ThrottleNode> open_throttle(const BlockNodePtr& child, const ThrottleLimits& l) {
  auto node = ThrottleNode::open(throttle_spec(l), child);
  EXPECT_TRUE(node.is_ok()) << node.status().to_string();
  return node.value();
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs `tasks` concurrently on a fresh io_context until all are done.
void run_all(std::vector<std::function<Task<void>()>> tasks) {
  asio::io_context ctx;
  for (auto& t : tasks) asio::co_spawn(ctx, t(), asio::detached);
  ctx.run();
}

TEST(ThrottleNodeTest, OpenChecksChildAndLimits) {
  auto mem = MemoryNode::create(kSize);
  EXPECT_EQ(ThrottleNode::open(throttle_spec({}), nullptr).status().code(), EINVAL);
  ThrottleLimits bad;
  bad[ThrottleBucket::kBpsRead].max = 10;  // a burst without an average
  auto r = ThrottleNode::open(throttle_spec(bad), mem);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("bps-read-max requires bps-read"), std::string::npos);

  auto ro = std::make_shared<MemoryNode>("ro", [] {
    NodeInfo i = MemoryNode::default_info(kSize);
    i.read_only = true;
    return i;
  }());
  EXPECT_EQ(ThrottleNode::open(throttle_spec({}), ro).status().code(), EROFS);
  auto ro_over_ro = ThrottleNode::open(throttle_spec({}, /*read_only=*/true), ro);
  ASSERT_TRUE(ro_over_ro.is_ok());
  EXPECT_TRUE(ro_over_ro.value()->read_only());
}

TEST(ThrottleNodeTest, ForwardsDataAndDescribesTheChild) {
  auto mem = MemoryNode::create(kSize);
  auto node = open_throttle(mem, limit(ThrottleBucket::kBpsTotal, 64 * kMiB));
  EXPECT_EQ(node->size(), kSize);
  EXPECT_EQ(node->driver(), "throttle");
  EXPECT_TRUE(node->info().file_offsets_match);
  ASSERT_EQ(node->children().size(), 1u);
  EXPECT_EQ(node->children()[0].role, ChildRole::kFile);
  EXPECT_EQ(node->children()[0].node, mem);

  std::vector<std::byte> data(64 * kKiB, std::byte{0x5a});
  ASSERT_TRUE(run_task(node->write(kMiB, data, IoFlags::kFua)).is_ok());
  EXPECT_EQ(mem->contents(kMiB, data.size()), data);
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(run_task(node->read(kMiB, back)).is_ok());
  EXPECT_EQ(back, data);
  ASSERT_TRUE(run_task(node->write_zeroes(kMiB, 4 * kKiB, IoFlags::kNone)).is_ok());
  EXPECT_EQ(mem->contents(kMiB, 4 * kKiB), std::vector<std::byte>(4 * kKiB));
  ASSERT_TRUE(run_task(node->discard(2 * kMiB, 4 * kKiB, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->flush()).is_ok());
  auto status = run_task(node->block_status(0, 2 * kMiB));
  ASSERT_TRUE(status.is_ok());
  EXPECT_NE(status.value().front().flags & kExtentHole, 0u);  // [0, 1 MiB) never written
  EXPECT_EQ(mem->count(MemoryNode::Op::kWrite), 1u);
  EXPECT_EQ(mem->count(MemoryNode::Op::kWriteZeroes), 1u);
  EXPECT_EQ(mem->count(MemoryNode::Op::kDiscard), 1u);
  EXPECT_EQ(mem->count(MemoryNode::Op::kFlush), 1u);
  EXPECT_EQ(mem->count(MemoryNode::Op::kBlockStatus), 1u);
}

TEST(ThrottleNodeTest, ReadRateFollowsTheLimit) {
  auto mem = MemoryNode::create(kSize);
  // 8 MiB/s: after the 0.8 MiB bucket, 4 MiB more take about 0.5 s.
  auto node = open_throttle(mem, limit(ThrottleBucket::kBpsRead, 8 * kMiB));
  const auto start = Clock::now();
  run_task([&]() -> Task<void> {
    std::vector<std::byte> buf(64 * kKiB);
    for (uint64_t off = 0; off < 4 * kMiB + 832 * kKiB; off += buf.size()) {
      Status s = co_await node->read(off, buf);
      EXPECT_TRUE(s.is_ok());
    }
  }());
  const double took = seconds_since(start);
  EXPECT_GT(took, 0.45);
  EXPECT_LT(took, 0.9);
  // Writes have no limit here.
  const auto wstart = Clock::now();
  std::vector<std::byte> data(kMiB);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(run_task(node->write(0, data, IoFlags::kNone)).is_ok());
  EXPECT_LT(seconds_since(wstart), 0.3);
}

TEST(ThrottleNodeTest, FlushAndBlockStatusAreNotThrottled) {
  auto mem = MemoryNode::create(kSize);
  auto node = open_throttle(mem, limit(ThrottleBucket::kIopsTotal, 1));
  std::vector<std::byte> buf(4 * kKiB);
  ASSERT_TRUE(run_task(node->read(0, buf)).is_ok());  // the one operation of this second
  const auto start = Clock::now();
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(run_task(node->flush()).is_ok());
    ASSERT_TRUE(run_task(node->block_status(0, kMiB)).is_ok());
  }
  EXPECT_LT(seconds_since(start), 0.5);
}

TEST(ThrottleNodeTest, LargeRequestQueuedFirstIsNotOvertaken) {
  auto mem = MemoryNode::create(kSize);
  auto node = open_throttle(mem, limit(ThrottleBucket::kBpsRead, 4 * kMiB));
  std::mutex mu;
  std::vector<std::string> done;
  auto reader = [&](std::string label, uint64_t len) {
    return [&, label, len]() -> Task<void> {
      std::vector<std::byte> buf(len);
      Status s = co_await node->read(0, buf);
      EXPECT_TRUE(s.is_ok());
      std::lock_guard g(mu);
      done.push_back(label);
    };
  };
  // The first read fills the bucket past its 0.4 MiB; the 2 MiB read waits at the head
  // of the queue; the small reads arrive after it and must not pass it.
  std::vector<std::function<Task<void>()>> tasks = {reader("fill", kMiB), reader("big", 2 * kMiB)};
  for (int i = 0; i < 4; ++i) tasks.push_back(reader("small" + std::to_string(i), 4 * kKiB));
  const auto start = Clock::now();
  run_all(std::move(tasks));
  ASSERT_EQ(done.size(), 6u);
  EXPECT_EQ(done[0], "fill");
  EXPECT_EQ(done[1], "big");
  for (size_t i = 2; i < done.size(); ++i) EXPECT_EQ(done[i], "small" + std::to_string(i - 2));
  // fill at once; big after 0.15 s; the small ones after 0.5 s more.
  EXPECT_GT(seconds_since(start), 0.55);
  EXPECT_EQ(node->waiting(ThrottleDirection::kRead), 0u);
}

TEST(ThrottleNodeTest, LimitChangeFreesWaitingRequests) {
  auto mem = MemoryNode::create(kSize);
  auto node = open_throttle(mem, limit(ThrottleBucket::kBpsRead, 64 * kKiB));
  std::vector<std::byte> fill(kMiB);
  ASSERT_TRUE(run_task(node->read(0, fill)).is_ok());  // ~16 s of debt at 64 KiB/s
  double read_took = -1;
  size_t waiting_before_change = 0;
  const auto start = Clock::now();
  run_all({[&]() -> Task<void> {
             std::vector<std::byte> buf(4 * kKiB);
             Status s = co_await node->read(0, buf);
             EXPECT_TRUE(s.is_ok());
             read_took = seconds_since(start);
           },
           [&]() -> Task<void> {
             asio::steady_timer t(co_await asio::this_coro::executor,
                                  std::chrono::milliseconds(200));
             co_await t.async_wait(asio::use_awaitable);
             waiting_before_change = node->waiting(ThrottleDirection::kRead);
             ThrottleLimits raised = limit(ThrottleBucket::kBpsRead, 512 * kMiB);
             EXPECT_TRUE(node->set_limits(raised).is_ok());
           }});
  EXPECT_EQ(waiting_before_change, 1u);
  EXPECT_GT(read_took, 0.19);
  EXPECT_LT(read_took, 1.0);
  EXPECT_EQ(node->limits()[ThrottleBucket::kBpsRead].avg, 512 * kMiB);
  ThrottleLimits bad;
  bad[ThrottleBucket::kIopsRead].max_length = 0;
  EXPECT_EQ(node->set_limits(bad).code(), EINVAL);
  EXPECT_EQ(node->limits()[ThrottleBucket::kBpsRead].avg, 512 * kMiB);
}

TEST(ThrottleNodeTest, LoweredLimitSlowsWaitingRequests) {
  auto mem = MemoryNode::create(kSize);
  auto node = open_throttle(mem, limit(ThrottleBucket::kIopsWrite, 1000));
  double took = -1;
  const auto start = Clock::now();
  run_all({[&]() -> Task<void> {
    // 12 writes at 10 IOPS: the first 2 fit the bucket, the others go one per 100 ms.
    EXPECT_TRUE(node->set_limits(limit(ThrottleBucket::kIopsWrite, 10)).is_ok());
    std::vector<std::byte> buf(4 * kKiB);
    for (int i = 0; i < 12; ++i) {
      Status s = co_await node->write(0, buf, IoFlags::kNone);
      EXPECT_TRUE(s.is_ok());
    }
    took = seconds_since(start);
  }});
  EXPECT_GT(took, 0.9);
  EXPECT_LT(took, 1.6);
}

TEST(ThrottleNodeTest, WritesMarkTheChildsBitmaps) {
  auto mem = MemoryNode::create(kSize);
  auto bitmap = run_task(mem->bitmaps().create({.name = "nightly"}, kSize));
  ASSERT_TRUE(bitmap.is_ok());
  auto node = open_throttle(mem, limit(ThrottleBucket::kBpsWrite, 64 * kMiB));
  std::vector<std::byte> data(64 * kKiB, std::byte{1});
  ASSERT_TRUE(run_task(node->write(3 * kMiB, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(bitmap.value()->dirty_bytes(), 64 * kKiB);
  EXPECT_TRUE(bitmap.value()->all_dirty(3 * kMiB, 64 * kKiB));
}

}  // namespace
}  // namespace blockcore
