// The write path around a node's driver: pause_writes() returns only when no write is
// in flight and holds new ones back until released; the write interceptor runs before
// the driver and its error fails the request; a bitmap cleared while a write runs shows
// the write afterwards.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <vector>

#include "blockcore/block_node.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::MemoryNode;
using fleece_test::run_task;
using namespace std::chrono_literals;

constexpr uint64_t kSize = 1 << 20;

TEST(WriteGate, PauseWaitsForWritesInFlightAndHoldsNewOnesBack) {
  auto node = MemoryNode::create(kSize);
  node->set_delay_hook([](MemoryNode::Op op, uint64_t off, uint64_t) {
    return op == MemoryNode::Op::kWrite && off == 0 ? 50ms : 0ms;
  });
  std::vector<std::string> events;
  std::vector<std::byte> data(4096, std::byte{1});
  asio::io_context ctx;
  auto write = [&](uint64_t off, std::string name) -> Task<void> {
    Status s = co_await node->write(off, data, IoFlags::kNone);
    EXPECT_TRUE(s.is_ok());
    events.push_back(name);
  };
  asio::co_spawn(ctx, write(0, "slow write done"), asio::detached);
  asio::co_spawn(
      ctx,
      [&]() -> Task<void> {
        asio::steady_timer t(ctx, 5ms);
        co_await t.async_wait(asio::use_awaitable);  // the slow write is in flight
        {
          WriteGate::Closed paused = co_await node->pause_writes();
          events.push_back("paused");
          asio::co_spawn(ctx, write(8192, "held write done"), asio::detached);
          asio::steady_timer t2(ctx, 20ms);
          co_await t2.async_wait(asio::use_awaitable);
          events.push_back("resuming");
        }
      },
      asio::detached);
  ctx.run();
  EXPECT_EQ(events, (std::vector<std::string>{"slow write done", "paused", "resuming",
                                              "held write done"}));
}

class CountingInterceptor final : public WriteInterceptor {
 public:
  int calls = 0;
  int fail_errno = 0;
  Task<Status> before_write(uint64_t, uint64_t) override {
    ++calls;
    if (fail_errno) co_return Status::error(fail_errno, "intercepted");
    co_return Status::ok();
  }
};

TEST(WriteGate, InterceptorRunsBeforeTheDriverAndCanFailTheRequest) {
  auto node = MemoryNode::create(kSize);
  auto hook = std::make_shared<CountingInterceptor>();
  node->set_write_interceptor(hook);
  std::vector<std::byte> data(4096, std::byte{1});
  ASSERT_TRUE(run_task(node->write(0, data, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->write_zeroes(0, 4096, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->discard(0, 4096, IoFlags::kNone)).is_ok());
  std::vector<std::byte> buf(4096);
  ASSERT_TRUE(run_task(node->read(0, buf)).is_ok());
  EXPECT_EQ(hook->calls, 3);
  hook->fail_errno = ENOSPC;
  EXPECT_EQ(run_task(node->write(65536, data, IoFlags::kNone)).code(), ENOSPC);
  EXPECT_FALSE(node->allocated(65536));
  node->set_write_interceptor(nullptr);
  EXPECT_TRUE(run_task(node->write(65536, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(hook->calls, 4);
}

TEST(WriteGate, ABitmapClearedDuringAWriteShowsItAfterwards) {
  auto node = MemoryNode::create(kSize);
  auto b = run_task(node->bitmaps().create({.name = "b"}, kSize)).value();
  node->set_fail_hook([&](MemoryNode::Op op, uint64_t, uint64_t) {
    if (op == MemoryNode::Op::kWrite) b->clear();  // a clear lands mid-write
    return 0;
  });
  std::vector<std::byte> data(4096, std::byte{1});
  ASSERT_TRUE(run_task(node->write(0, data, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(b->all_dirty(0, 4096));
}

}  // namespace
}  // namespace blockcore
