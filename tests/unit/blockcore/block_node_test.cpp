// BlockNode's central validation (the NVI layer): a tiny in-memory node records which
// requests reach its hooks, so each test shows what is rejected before the driver.
#include "blockcore/block_node.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::run_task;

class TinyNode final : public BlockNode {
 public:
  explicit TinyNode(NodeInfo info) : BlockNode("tiny", "tiny"), data_(info.size) { set_info(info); }

  std::vector<std::string> calls;
  ExtentList extents_to_return;  // empty: one data extent of the asked length

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override {
    calls.push_back("read " + std::to_string(off) + "+" + std::to_string(buf.size()));
    std::memcpy(buf.data(), data_.data() + off, buf.size());
    co_return Status::ok();
  }
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags) override {
    calls.push_back("write " + std::to_string(off) + "+" + std::to_string(buf.size()));
    std::memcpy(data_.data() + off, buf.data(), buf.size());
    co_return Status::ok();
  }
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags) override {
    calls.push_back("zero " + std::to_string(off) + "+" + std::to_string(len));
    co_return Status::ok();
  }
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags) override {
    calls.push_back("discard " + std::to_string(off) + "+" + std::to_string(len));
    co_return Status::ok();
  }
  Task<Status> do_flush() override {
    calls.push_back("flush");
    co_return Status::ok();
  }
  Task<Status> do_cache(uint64_t off, uint64_t len) override {
    calls.push_back("cache " + std::to_string(off) + "+" + std::to_string(len));
    co_return Status::ok();
  }
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override {
    calls.push_back("status " + std::to_string(off) + "+" + std::to_string(len));
    if (!extents_to_return.empty()) co_return extents_to_return;
    co_return ExtentList{Extent{len, 0, 1}};
  }

 private:
  std::vector<std::byte> data_;
};

NodeInfo writable_info(uint64_t size, uint32_t align = 1) {
  NodeInfo info;
  info.size = size;
  info.read_only = false;
  info.can_trim = true;
  info.can_zero = true;
  info.can_fast_zero = true;
  info.request_alignment = align;
  return info;
}

TEST(BlockNodeTest, InRangeRequestsReachTheHooks) {
  TinyNode n(writable_info(4096));
  std::vector<std::byte> buf(512, std::byte{7});
  EXPECT_TRUE(run_task(n.write(512, buf, IoFlags::kNone)).is_ok());
  std::vector<std::byte> out(512);
  EXPECT_TRUE(run_task(n.read(512, out)).is_ok());
  EXPECT_EQ(out, buf);
  EXPECT_TRUE(run_task(n.write_zeroes(0, 4096, IoFlags::kMayTrim)).is_ok());
  EXPECT_TRUE(run_task(n.discard(1024, 1024, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(run_task(n.flush()).is_ok());
  EXPECT_TRUE(run_task(n.cache(0, 4096)).is_ok());
  EXPECT_TRUE(run_task(n.block_status(0, 4096)).is_ok());
  EXPECT_EQ(n.calls, (std::vector<std::string>{"write 512+512", "read 512+512", "zero 0+4096",
                                               "discard 1024+1024", "flush", "cache 0+4096",
                                               "status 0+4096"}));
  EXPECT_EQ(n.in_flight(), 0u);
}

TEST(BlockNodeTest, OutOfRangeIsRejectedBeforeTheDriver) {
  TinyNode n(writable_info(4096));
  std::vector<std::byte> buf(512);
  EXPECT_EQ(run_task(n.read(4096 - 511, buf)).code(), EINVAL);
  EXPECT_EQ(run_task(n.read(1ull << 62, buf)).code(), EINVAL);
  EXPECT_EQ(run_task(n.write(4000, buf, IoFlags::kNone)).code(), ENOSPC);
  EXPECT_EQ(run_task(n.write_zeroes(4096, 1, IoFlags::kNone)).code(), ENOSPC);
  EXPECT_EQ(run_task(n.discard(0, 4097, IoFlags::kNone)).code(), EINVAL);
  EXPECT_EQ(run_task(n.cache(~0ull, 2)).code(), EINVAL);  // off+len overflows
  EXPECT_EQ(run_task(n.block_status(4095, 2)).status().code(), EINVAL);
  EXPECT_TRUE(n.calls.empty());
}

TEST(BlockNodeTest, ReadOnlyRejectsWriteLikeOps) {
  NodeInfo info = writable_info(4096);
  info.read_only = true;
  TinyNode n(info);
  std::vector<std::byte> buf(512);
  EXPECT_EQ(run_task(n.write(0, buf, IoFlags::kNone)).code(), EROFS);
  EXPECT_EQ(run_task(n.write_zeroes(0, 512, IoFlags::kNone)).code(), EROFS);
  EXPECT_EQ(run_task(n.discard(0, 512, IoFlags::kNone)).code(), EROFS);
  EXPECT_TRUE(n.calls.empty());
  EXPECT_TRUE(run_task(n.read(0, buf)).is_ok());
}

TEST(BlockNodeTest, MisalignedIsRejectedExceptAtAnUnalignedEnd) {
  TinyNode n(writable_info(4096 + 100, 512));
  std::vector<std::byte> b512(512), b100(100), b612(612);
  EXPECT_EQ(run_task(n.read(1, b512)).code(), EINVAL);
  EXPECT_EQ(run_task(n.read(0, b100)).code(), EINVAL);
  EXPECT_EQ(run_task(n.write(512, b100, IoFlags::kNone)).code(), EINVAL);
  EXPECT_EQ(run_task(n.write_zeroes(0, 1000, IoFlags::kNone)).code(), EINVAL);
  EXPECT_TRUE(n.calls.empty());
  // The last partial block ends at the node's end: allowed.
  EXPECT_TRUE(run_task(n.read(4096, b100)).is_ok());
  EXPECT_TRUE(run_task(n.write(3584, b612, IoFlags::kNone)).is_ok());
  EXPECT_EQ(n.calls.size(), 2u);
}

TEST(BlockNodeTest, TooLargeTransfersAreRejected) {
  NodeInfo info = writable_info(1 << 20);
  info.max_transfer = 4096;
  TinyNode n(info);
  std::vector<std::byte> buf(8192);
  EXPECT_EQ(run_task(n.read(0, buf)).code(), EINVAL);
  EXPECT_EQ(run_task(n.write(0, buf, IoFlags::kNone)).code(), EINVAL);
  EXPECT_TRUE(n.calls.empty());
}

TEST(BlockNodeTest, FastZeroWithoutSupportIsEnotsup) {
  NodeInfo info = writable_info(4096);
  info.can_fast_zero = false;
  TinyNode n(info);
  EXPECT_EQ(run_task(n.write_zeroes(0, 512, IoFlags::kFastZero)).code(), ENOTSUP);
  EXPECT_TRUE(n.calls.empty());
  EXPECT_TRUE(run_task(n.write_zeroes(0, 512, IoFlags::kNone)).is_ok());
}

TEST(BlockNodeTest, DiscardWithoutTrimSucceedsWithoutTheDriver) {
  NodeInfo info = writable_info(4096);
  info.can_trim = false;
  TinyNode n(info);
  EXPECT_TRUE(run_task(n.discard(0, 512, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(n.calls.empty());
}

TEST(BlockNodeTest, EmptyRequestsDoNotReachTheDriver) {
  TinyNode n(writable_info(4096));
  std::span<std::byte> none;
  EXPECT_TRUE(run_task(n.read(4096, none)).is_ok());
  EXPECT_TRUE(run_task(n.write(0, none, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(run_task(n.write_zeroes(0, 0, IoFlags::kNone)).is_ok());
  EXPECT_EQ(run_task(n.block_status(0, 0)).status().code(), EINVAL);
  EXPECT_TRUE(n.calls.empty());
}

TEST(BlockNodeTest, BlockStatusIsClampedAndMerged) {
  TinyNode n(writable_info(1 << 20));
  n.extents_to_return = {Extent{100, 0, 1}, Extent{100, 0, 1}, Extent{4096, 3, 1}};
  Result<ExtentList> r = run_task(n.block_status(0, 1000));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value(), (ExtentList{Extent{200, 0, 1}, Extent{800, 3, 1}}));
}

TEST(BlockNodeTest, BlockStatusWithNoExtentsIsAnError) {
  TinyNode n(writable_info(4096));
  n.extents_to_return = {Extent{0, 0, 1}};
  EXPECT_EQ(run_task(n.block_status(0, 512)).status().code(), EIO);
}

}  // namespace
}  // namespace blockcore
