// RawNode: window validation and offset math, checked against a recording child (every
// operation must be forwarded with the offset applied) and a real FileNode.
#include "blockcore/drivers/raw_node.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "blockcore/drivers/file_node.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::pattern_byte;
using fleece_test::read_file;
using fleece_test::run_task;
using fleece_test::TempDir;

constexpr uint64_t kKiB = 1024;
constexpr uint32_t kHoleZero = kExtentHole | kExtentZero;

// A child that records every call it receives and describes itself as all data.
class RecordingNode final : public BlockNode {
 public:
  RecordingNode(uint64_t size, uint32_t align, bool read_only) : BlockNode("rec", "rec") {
    NodeInfo info;
    info.size = size;
    info.read_only = read_only;
    info.can_trim = true;
    info.can_zero = true;
    info.can_fast_zero = true;
    info.request_alignment = align;
    set_info(info);
  }
  std::string describe() const override { return "recording"; }
  std::vector<std::string> calls;

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override {
    return record("read", off, buf.size());
  }
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags f) override {
    return record("write", off, buf.size(), f);
  }
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags f) override {
    return record("zero", off, len, f);
  }
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags f) override {
    return record("discard", off, len, f);
  }
  Task<Status> do_flush() override { return record("flush", 0, 0); }
  Task<Status> do_cache(uint64_t off, uint64_t len) override { return record("cache", off, len); }
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override {
    calls.push_back("status " + std::to_string(off) + "+" + std::to_string(len));
    co_return ExtentList{Extent{len + 4096, 0, 1}};  // more than asked: must be clamped
  }

 private:
  Task<Status> record(const char* op, uint64_t off, uint64_t len, IoFlags f = IoFlags::kNone) {
    calls.push_back(std::string(op) + " " + std::to_string(off) + "+" + std::to_string(len) + " f" +
                    std::to_string(static_cast<uint32_t>(f)));
    co_return Status::ok();
  }
};

NodeSpec raw_spec(uint64_t offset, std::optional<uint64_t> size, bool read_only = false) {
  NodeSpec spec;
  spec.node_name = "r0";
  spec.driver = "raw";
  spec.read_only = read_only;
  spec.raw.offset = offset;
  spec.raw.size = size;
  return spec;
}

TEST(RawNodeTest, ForwardsEveryOperationWithTheOffset) {
  auto child = std::make_shared<RecordingNode>(1 << 20, 512, false);
  auto r = RawNode::open(raw_spec(64 * kKiB, 128 * kKiB), child);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  RawNode& n = *r.value();
  EXPECT_EQ(n.name(), "r0");
  EXPECT_EQ(n.driver(), "raw");
  EXPECT_EQ(n.size(), 128 * kKiB);
  EXPECT_EQ(n.offset(), 64 * kKiB);
  EXPECT_EQ(n.info().request_alignment, 512u);
  EXPECT_TRUE(n.info().can_fast_zero);
  EXPECT_EQ(n.describe(), "recording");
  ASSERT_EQ(n.children().size(), 1u);
  EXPECT_EQ(n.children()[0].role, ChildRole::kFile);
  EXPECT_EQ(n.children()[0].node, child);

  std::vector<std::byte> buf(4096);
  EXPECT_TRUE(run_task(n.read(0, buf)).is_ok());
  EXPECT_TRUE(run_task(n.write(4096, buf, IoFlags::kFua)).is_ok());
  EXPECT_TRUE(run_task(n.write_zeroes(8192, 512, IoFlags::kMayTrim)).is_ok());
  EXPECT_TRUE(run_task(n.discard(1024, 1024, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(run_task(n.flush()).is_ok());
  EXPECT_TRUE(run_task(n.cache(512, 512)).is_ok());
  Result<ExtentList> st = run_task(n.block_status(128 * kKiB - 4096, 4096));
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st.value(), (ExtentList{Extent{4096, 0, 1}}));  // clamped to the window
  EXPECT_EQ(child->calls,
            (std::vector<std::string>{"read 65536+4096 f0", "write 69632+4096 f1",
                                      "zero 73728+512 f2", "discard 66560+1024 f0", "flush 0+0 f0",
                                      "cache 66048+512 f0", "status 192512+4096"}));
}

TEST(RawNodeTest, WindowBoundsAreEnforcedBeforeTheChild) {
  auto child = std::make_shared<RecordingNode>(1 << 20, 1, false);
  auto r = RawNode::open(raw_spec(1000, 5000), child);
  ASSERT_TRUE(r.is_ok());
  std::vector<std::byte> buf(100);
  EXPECT_EQ(run_task(r.value()->read(4901, buf)).code(), EINVAL);
  EXPECT_EQ(run_task(r.value()->write(4901, buf, IoFlags::kNone)).code(), ENOSPC);
  EXPECT_TRUE(run_task(r.value()->read(4900, buf)).is_ok());
  EXPECT_EQ(child->calls, (std::vector<std::string>{"read 5900+100 f0"}));
}

TEST(RawNodeTest, NoSizeMeansToTheEndOfTheChild) {
  auto child = std::make_shared<RecordingNode>(1 << 20, 1, false);
  auto r = RawNode::open(raw_spec(4096, std::nullopt), child);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value()->size(), (1u << 20) - 4096);
  auto whole = RawNode::open(raw_spec(0, std::nullopt), child);
  ASSERT_TRUE(whole.is_ok());
  EXPECT_EQ(whole.value()->size(), 1u << 20);
  auto empty = RawNode::open(raw_spec(1 << 20, std::nullopt), child);
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(empty.value()->size(), 0u);
}

TEST(RawNodeTest, RejectsBadWindows) {
  auto child = std::make_shared<RecordingNode>(1 << 20, 512, false);
  auto past = RawNode::open(raw_spec((1 << 20) + 512, std::nullopt), child);
  EXPECT_EQ(past.status().code(), EINVAL);
  EXPECT_NE(past.status().message().find("past the end"), std::string::npos);
  EXPECT_EQ(RawNode::open(raw_spec(512, 1 << 20), child).status().code(), EINVAL);
  EXPECT_EQ(RawNode::open(raw_spec(0, ~0ull), child).status().code(), EINVAL);
  auto misaligned = RawNode::open(raw_spec(100, 512), child);
  EXPECT_EQ(misaligned.status().code(), EINVAL);
  EXPECT_NE(misaligned.status().message().find("alignment"), std::string::npos);
  EXPECT_EQ(RawNode::open(raw_spec(512, 100), child).status().code(), EINVAL);
  EXPECT_EQ(RawNode::open(raw_spec(512, std::nullopt), nullptr).status().code(), EINVAL);
  NodeSpec wrong = raw_spec(0, std::nullopt);
  wrong.driver = "file";
  EXPECT_EQ(RawNode::open(wrong, child).status().code(), EINVAL);
  // An unaligned size is fine when the window ends where the child ends.
  auto odd_child = std::make_shared<RecordingNode>((1 << 20) + 100, 512, false);
  EXPECT_TRUE(RawNode::open(raw_spec(512, (1 << 20) - 412), odd_child).is_ok());
}

TEST(RawNodeTest, ReadOnlyRules) {
  auto ro_child = std::make_shared<RecordingNode>(1 << 20, 1, true);
  auto rw_over_ro = RawNode::open(raw_spec(0, std::nullopt), ro_child);
  EXPECT_EQ(rw_over_ro.status().code(), EROFS);
  auto ro = RawNode::open(raw_spec(0, std::nullopt, /*read_only=*/true), ro_child);
  ASSERT_TRUE(ro.is_ok());
  EXPECT_TRUE(ro.value()->read_only());

  auto rw_child = std::make_shared<RecordingNode>(1 << 20, 1, false);
  auto ro_over_rw = RawNode::open(raw_spec(0, std::nullopt, /*read_only=*/true), rw_child);
  ASSERT_TRUE(ro_over_rw.is_ok());
  std::vector<std::byte> buf(10);
  EXPECT_EQ(run_task(ro_over_rw.value()->write(0, buf, IoFlags::kNone)).code(), EROFS);
  EXPECT_FALSE(ro_over_rw.value()->info().can_trim);
  EXPECT_TRUE(rw_child->calls.empty());
}

class RawOverFileTest : public ::testing::Test {
 protected:
  RawOverFileTest() : pool_(0) { path_ = dir_.file("img"); }
  std::shared_ptr<FileNode> open_file(uint64_t size, bool fill) {
    make_file(path_, size, fill);
    NodeSpec spec;
    spec.node_name = "file0";
    spec.driver = "file";
    spec.file.filename = path_;
    auto r = FileNode::open(spec, pool_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : nullptr;
  }
  TempDir dir_;
  io::BlockingPool pool_;
  std::string path_;
};

TEST_F(RawOverFileTest, ReadsAndWritesLandInsideTheWindow) {
  auto file = open_file(1 << 20, true);
  ASSERT_TRUE(file);
  auto r = RawNode::open(raw_spec(64 * kKiB, 128 * kKiB), file);
  ASSERT_TRUE(r.is_ok());
  RawNode& n = *r.value();
  std::vector<std::byte> got(100);
  ASSERT_TRUE(run_task(n.read(10, got)).is_ok());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], pattern_byte(64 * kKiB + 10 + i));

  std::vector<std::byte> data(4096, std::byte{0x42});
  ASSERT_TRUE(run_task(n.write(128 * kKiB - 4096, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(read_file(path_, 192 * kKiB - 4096, 4096), data);
  EXPECT_EQ(read_file(path_, 192 * kKiB, 1)[0], pattern_byte(192 * kKiB));  // untouched

  ASSERT_TRUE(run_task(n.write_zeroes(0, 4096, IoFlags::kNone)).is_ok());
  EXPECT_EQ(read_file(path_, 64 * kKiB, 4096), std::vector<std::byte>(4096));
  EXPECT_EQ(read_file(path_, 64 * kKiB - 1, 1)[0], pattern_byte(64 * kKiB - 1));
  EXPECT_TRUE(run_task(n.flush()).is_ok());
}

TEST_F(RawOverFileTest, BlockStatusIsRelativeAndClampedToTheWindow) {
  auto file = open_file(1 << 20, true);
  ASSERT_TRUE(file);
  // A hole at file [128K, 192K) and another from 320K to 384K.
  ASSERT_TRUE(run_task(file->discard(128 * kKiB, 64 * kKiB, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(file->discard(320 * kKiB, 64 * kKiB, IoFlags::kNone)).is_ok());
  auto r = RawNode::open(raw_spec(64 * kKiB, 288 * kKiB), file);  // ends inside hole 2
  ASSERT_TRUE(r.is_ok());
  Result<ExtentList> st = run_task(r.value()->block_status(0, 288 * kKiB));
  ASSERT_TRUE(st.is_ok()) << st.status().to_string();
  EXPECT_EQ(st.value(), (ExtentList{Extent{64 * kKiB, 0, 1}, Extent{64 * kKiB, kHoleZero, 1},
                                    Extent{128 * kKiB, 0, 1}, Extent{32 * kKiB, kHoleZero, 1}}));
  // Discard through the window punches the file at the shifted offset.
  ASSERT_TRUE(run_task(r.value()->discard(0, 64 * kKiB, IoFlags::kNone)).is_ok());
  Result<ExtentList> fst = run_task(file->block_status(0, 256 * kKiB));
  ASSERT_TRUE(fst.is_ok());
  EXPECT_EQ(fst.value(), (ExtentList{Extent{64 * kKiB, 0, 1}, Extent{128 * kKiB, kHoleZero, 1},
                                     Extent{64 * kKiB, 0, 1}}));
}

}  // namespace
}  // namespace blockcore
