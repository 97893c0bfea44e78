// NodeBitmaps: writes, write-zeroes and discards through a node mark its enabled bitmaps
// before the driver runs; durable bitmaps go through the store first (and a store error
// fails the write without touching data); management calls apply QEMU's rules.
#include "blockcore/bitmap/node_bitmaps.h"

#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "testing/memory_node.h"
#include "testing/run_task.h"

namespace blockcore {
namespace {

using fleece_test::MemoryNode;
using fleece_test::run_task;

constexpr uint64_t kG = 65536;
constexpr uint64_t kSize = 64 * kG;

// A store that keeps copies in memory and counts calls; can be told to fail.
class FakeStore final : public BitmapStore {
 public:
  bool writable_ = true;
  int fail_errno = 0;
  int persist_calls = 0;
  std::map<std::string, HBitmap> stored;

  bool writable() const override { return writable_; }
  std::string describe() const override { return "fake"; }
  Task<Status> create(const DirtyBitmapPtr& b) override {
    if (fail_errno) co_return Status::error(fail_errno, "fake create failed");
    stored[b->name()] = b->snapshot();
    b->set_durable(true);
    co_return Status::ok();
  }
  Task<Status> remove(const DirtyBitmapPtr& b) override {
    if (fail_errno) co_return Status::error(fail_errno, "fake remove failed");
    stored.erase(b->name());
    b->set_durable(false);
    co_return Status::ok();
  }
  Task<Status> persist_marks(std::span<const DirtyBitmapPtr> bitmaps, uint64_t off,
                             uint64_t len) override {
    ++persist_calls;
    if (fail_errno) co_return Status::error(fail_errno, "fake persist failed");
    for (const DirtyBitmapPtr& b : bitmaps) {
      DirtyBitmap copy(b->name(), b->disk_size(), b->granularity());
      copy.restore(stored[b->name()]);
      copy.mark(off, len);
      stored[b->name()] = copy.snapshot();
      b->mark(off, len);
    }
    co_return Status::ok();
  }
  Task<Status> write_bitmap(const DirtyBitmapPtr& b, std::function<void(HBitmap&)> change) override {
    if (fail_errno) co_return Status::error(fail_errno, "fake write failed");
    HBitmap content = b->snapshot();
    if (change) change(content);
    stored[b->name()] = content;
    b->restore(content);
    b->set_durable(true);
    co_return Status::ok();
  }
  Task<Status> close() override { co_return Status::ok(); }
};

std::vector<std::byte> bytes(size_t n, uint8_t v) { return std::vector<std::byte>(n, std::byte{v}); }

TEST(NodeBitmaps, WritesZeroesAndDiscardsMarkEnabledBitmapsOnly) {
  auto node = MemoryNode::create(kSize);
  NodeBitmaps& bm = node->bitmaps();
  EXPECT_FALSE(bm.tracking());
  auto on = run_task(bm.create({.name = "on"}, kSize));
  auto off = run_task(bm.create({.name = "off", .disabled = true}, kSize));
  ASSERT_TRUE(on.is_ok() && off.is_ok());
  EXPECT_TRUE(bm.tracking());
  auto data = bytes(512, 1);
  ASSERT_TRUE(run_task(node->write(kG + 10, data, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->write_zeroes(4 * kG, 2 * kG, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->discard(10 * kG, 1, IoFlags::kNone)).is_ok());
  EXPECT_EQ(on.value()->extents(0, kSize, 100),
            (std::vector<DirtyExtent>{{kG, false}, {kG, true}, {2 * kG, false}, {2 * kG, true},
                                      {4 * kG, false}, {kG, true}, {53 * kG, false}}));
  EXPECT_EQ(off.value()->dirty_bytes(), 0u);
  // Reads and a rejected write mark nothing.
  std::vector<std::byte> buf(512);
  ASSERT_TRUE(run_task(node->read(30 * kG, buf)).is_ok());
  EXPECT_FALSE(run_task(node->write(kSize, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(on.value()->dirty_granules(), 4u);
}

TEST(NodeBitmaps, TheBitIsSetBeforeTheDriverWrites) {
  auto node = MemoryNode::create(kSize);
  auto b = run_task(node->bitmaps().create({.name = "b"}, kSize));
  ASSERT_TRUE(b.is_ok());
  bool dirty_when_written = false;
  node->set_fail_hook([&](MemoryNode::Op op, uint64_t off, uint64_t len) {
    if (op == MemoryNode::Op::kWrite) dirty_when_written = b.value()->all_dirty(off, len);
    return 0;
  });
  auto data = bytes(4096, 7);
  ASSERT_TRUE(run_task(node->write(5 * kG, data, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(dirty_when_written);
}

TEST(NodeBitmaps, DurableBitmapsPersistNewGranulesOnceAndFailTheWriteOnStoreError) {
  auto node = MemoryNode::create(kSize);
  auto store = std::make_shared<FakeStore>();
  node->bitmaps().attach_store(store, {});
  auto b = run_task(node->bitmaps().create({.name = "p", .persistent = true}, kSize));
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_TRUE(b.value()->durable());
  auto data = bytes(4096, 7);
  ASSERT_TRUE(run_task(node->write(0, data, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(node->write(4096, data, IoFlags::kNone)).is_ok());  // same granule
  EXPECT_EQ(store->persist_calls, 1);
  EXPECT_EQ(store->stored["p"], b.value()->snapshot());

  store->fail_errno = EIO;
  Status s = run_task(node->write(3 * kG, data, IoFlags::kNone));
  EXPECT_EQ(s.code(), EIO);
  EXPECT_FALSE(node->allocated(3 * kG)) << "the data must not be written";
  EXPECT_FALSE(b.value()->all_dirty(3 * kG, 1)) << "memory must not claim what is not stored";
  // A granule already dirty needs no store at all.
  EXPECT_TRUE(run_task(node->write(100, data, IoFlags::kNone)).is_ok());
}

TEST(NodeBitmaps, CreateChecksNamesStoresAndLimits) {
  auto node = MemoryNode::create(kSize);
  NodeBitmaps& bm = node->bitmaps();
  EXPECT_EQ(run_task(bm.create({.name = ""}, kSize)).status().code(), EINVAL);
  EXPECT_EQ(run_task(bm.create({.name = "g", .granularity = 1000}, kSize)).status().code(), EINVAL);
  EXPECT_EQ(run_task(bm.create({.name = "p", .persistent = true}, kSize)).status().code(), ENOTSUP);
  ASSERT_TRUE(run_task(bm.create({.name = "a"}, kSize)).is_ok());
  Result<DirtyBitmapPtr> dup = run_task(bm.create({.name = "a"}, kSize));
  EXPECT_EQ(dup.status().code(), EEXIST);
  EXPECT_EQ(dup.status().message(), "Bitmap already exists: a");
  auto store = std::make_shared<FakeStore>();
  store->writable_ = false;
  bm.attach_store(store, {});
  EXPECT_EQ(run_task(bm.create({.name = "p", .persistent = true}, kSize)).status().code(), EROFS);
}

TEST(NodeBitmaps, ManagementFollowsQemuRules) {
  auto node = MemoryNode::create(kSize);
  NodeBitmaps& bm = node->bitmaps();
  auto a = run_task(bm.create({.name = "a"}, kSize)).value();
  auto src = run_task(bm.create({.name = "src"}, kSize)).value();
  src->mark(7 * kG, 1);
  EXPECT_EQ(run_task(bm.remove("nope")).message(), "Dirty bitmap 'nope' not found");

  {
    DirtyBitmap::BusyGuard busy(a);
    EXPECT_EQ(run_task(bm.remove("a")).code(), EBUSY);
    EXPECT_EQ(run_task(bm.clear("a")).code(), EBUSY);
    EXPECT_EQ(run_task(bm.set_enabled("a", false)).code(), EBUSY);
    std::vector<DirtyBitmapPtr> sources{src};
    EXPECT_EQ(run_task(bm.merge("a", sources)).code(), EBUSY);
  }
  std::vector<DirtyBitmapPtr> sources{src};
  ASSERT_TRUE(run_task(bm.merge("a", sources)).is_ok());
  EXPECT_TRUE(a->all_dirty(7 * kG, 1));
  ASSERT_TRUE(run_task(bm.set_enabled("a", false)).is_ok());
  ASSERT_TRUE(run_task(bm.set_enabled("src", false)).is_ok());
  EXPECT_FALSE(bm.tracking());
  ASSERT_TRUE(run_task(bm.clear("a")).is_ok());
  EXPECT_EQ(a->dirty_bytes(), 0u);

  src->set_inconsistent(true);
  EXPECT_EQ(run_task(bm.merge("a", sources)).code(), EINVAL);
  EXPECT_EQ(run_task(bm.set_enabled("src", true)).code(), EINVAL);
  ASSERT_TRUE(run_task(bm.clear("src")).is_ok()) << "an inconsistent bitmap can be cleared";
  EXPECT_FALSE(src->inconsistent());

  a->set_read_only(true);
  EXPECT_EQ(run_task(bm.clear("a")).code(), EROFS);
  ASSERT_TRUE(run_task(bm.remove("src")).is_ok());
  EXPECT_EQ(bm.find("src"), nullptr);
  EXPECT_EQ(bm.list().size(), 1u);
}

TEST(NodeBitmaps, DurableMergeAndRestoreGoThroughTheStore) {
  auto node = MemoryNode::create(kSize);
  auto store = std::make_shared<FakeStore>();
  node->bitmaps().attach_store(store, {});
  NodeBitmaps& bm = node->bitmaps();
  auto p = run_task(bm.create({.name = "p", .persistent = true}, kSize)).value();
  auto t = run_task(bm.create({.name = "t"}, kSize)).value();
  t->mark(2 * kG, kG);
  HBitmap before = p->snapshot();
  std::vector<DirtyBitmapPtr> sources{t};
  ASSERT_TRUE(run_task(bm.merge("p", sources)).is_ok());
  EXPECT_TRUE(p->all_dirty(2 * kG, kG));
  EXPECT_EQ(store->stored["p"], p->snapshot());
  ASSERT_TRUE(run_task(bm.restore(p, before)).is_ok());
  EXPECT_EQ(p->dirty_bytes(), 0u);
  EXPECT_EQ(store->stored["p"], before);
  store->fail_errno = EIO;
  EXPECT_EQ(run_task(bm.merge("p", sources)).code(), EIO);
  EXPECT_EQ(p->dirty_bytes(), 0u) << "a failed store leaves memory unchanged";
}

TEST(NodeBitmaps, WriteTrackersRecordUnlistedAndClearHandsBackWhatItTook) {
  auto node = MemoryNode::create(kSize);
  NodeBitmaps& bm = node->bitmaps();
  DirtyBitmapPtr tracker = bm.add_write_tracker(kG, kSize);
  EXPECT_TRUE(bm.tracking());
  EXPECT_TRUE(bm.list().empty());
  auto data = bytes(512, 3);
  ASSERT_TRUE(run_task(node->write(6 * kG, data, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(tracker->all_dirty(6 * kG, 1));
  bm.remove_write_tracker(tracker);
  EXPECT_FALSE(bm.tracking());
  ASSERT_TRUE(run_task(node->write(9 * kG, data, IoFlags::kNone)).is_ok());
  EXPECT_FALSE(tracker->all_dirty(9 * kG, 1));

  auto b = run_task(bm.create({.name = "b"}, kSize)).value();
  b->mark(2 * kG, 2 * kG);
  HBitmap taken;
  ASSERT_TRUE(run_task(bm.clear("b", &taken)).is_ok());
  EXPECT_EQ(taken.count(), 2u);
  EXPECT_EQ(b->dirty_bytes(), 0u);
  ASSERT_TRUE(run_task(bm.add_content(b, taken)).is_ok());
  EXPECT_EQ(b->dirty_bytes(), 2 * kG);
}

}  // namespace
}  // namespace blockcore
