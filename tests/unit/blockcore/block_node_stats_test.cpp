// BlockNode's I/O accounting: every request executed through the public methods is
// counted once per node with its bytes and latency; refused requests count as invalid,
// driver errors as failed.
#include <gtest/gtest.h>

#include <vector>

#include "blockcore/block_node.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::MemoryNode;
using fleece_test::run_task;

TEST(BlockNodeStatsTest, CountsEachExecutedRequest) {
  auto node = MemoryNode::create(1 << 20);
  std::vector<std::byte> buf(4096, std::byte{1});
  ASSERT_TRUE(run_task(node->write(0, buf, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->write(8192, buf, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->read(0, buf)).is_ok());
  ASSERT_TRUE(run_task(node->write_zeroes(65536, 131072, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->discard(0, 65536, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->flush()).is_ok());
  ASSERT_TRUE(run_task(node->block_status(0, 1 << 20)).is_ok());

  const IoStatsSnapshot s = node->io_stats().snapshot();
  EXPECT_EQ(s.op(IoOp::kWrite).ok, 2u);
  EXPECT_EQ(s.op(IoOp::kWrite).bytes, 8192u);
  EXPECT_EQ(s.op(IoOp::kRead).ok, 1u);
  EXPECT_EQ(s.op(IoOp::kRead).bytes, 4096u);
  EXPECT_EQ(s.op(IoOp::kWriteZeroes).ok, 1u);
  EXPECT_EQ(s.op(IoOp::kWriteZeroes).bytes, 131072u);
  EXPECT_EQ(s.op(IoOp::kDiscard).bytes, 65536u);
  EXPECT_EQ(s.op(IoOp::kFlush).ok, 1u);
  EXPECT_EQ(s.op(IoOp::kBlockStatus).ok, 1u);
  EXPECT_GT(s.op(IoOp::kBlockStatus).bytes, 0u);
  EXPECT_EQ(s.op(IoOp::kWrite).latency.total(), 2u);
  for (IoOp op : kAllIoOps) {
    EXPECT_EQ(s.op(op).failed, 0u) << io_op_name(op);
    EXPECT_EQ(s.op(op).invalid, 0u) << io_op_name(op);
  }
}

TEST(BlockNodeStatsTest, RefusedRequestsAreInvalidAndNeverTimed) {
  auto node = MemoryNode::create(1 << 20);
  std::vector<std::byte> buf(4096);
  EXPECT_FALSE(run_task(node->read((1 << 20) - 512, buf)).is_ok());     // past the end
  EXPECT_FALSE(run_task(node->write(1 << 20, buf, IoFlags::kNone)).is_ok());
  EXPECT_FALSE(run_task(node->discard(1 << 20, 4096, IoFlags::kNone)).is_ok());
  const IoStatsSnapshot s = node->io_stats().snapshot();
  EXPECT_EQ(s.op(IoOp::kRead).invalid, 1u);
  EXPECT_EQ(s.op(IoOp::kRead).requests(), 0u);
  EXPECT_EQ(s.op(IoOp::kRead).latency.total(), 0u);
  EXPECT_EQ(s.op(IoOp::kWrite).invalid, 1u);
  EXPECT_EQ(s.op(IoOp::kDiscard).invalid, 1u);
}

TEST(BlockNodeStatsTest, DriverErrorsAreFailedWithoutBytes) {
  auto node = MemoryNode::create(1 << 20);
  node->set_fail_hook([](MemoryNode::Op op, uint64_t off, uint64_t) {
    return op == MemoryNode::Op::kRead && off == 4096 ? EIO : 0;
  });
  std::vector<std::byte> buf(4096);
  EXPECT_TRUE(run_task(node->read(0, buf)).is_ok());
  EXPECT_FALSE(run_task(node->read(4096, buf)).is_ok());
  const IoOpSnapshot r = node->io_stats().snapshot().op(IoOp::kRead);
  EXPECT_EQ(r.ok, 1u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.bytes, 4096u);
  EXPECT_EQ(r.latency.total(), 2u);
}

}  // namespace
}  // namespace blockcore
