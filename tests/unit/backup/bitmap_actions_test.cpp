// Each bitmap action alone (a one-action transaction, as the QMP commands run them):
// what it changes and every refusal with QEMU's message, with nothing changed.
#include "backup/bitmap_actions.h"

#include <gtest/gtest.h>

#include "bitmap_test_env.h"

namespace backup {
namespace {

using blockcore::Status;

BitmapParams on(const std::string& node, const std::string& name) { return {node, name}; }

TEST_F(BitmapActionsTest, AddCreatesWithTheGivenOptions) {
  Status s = run1(make_bitmap_add(lookup_, {"disk0", "b", 4096, false, true}));
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  auto b = disk0_->bitmaps().find("b");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->granularity(), 4096u);
  EXPECT_FALSE(b->enabled());
  EXPECT_FALSE(b->persistent());
  EXPECT_EQ(b->disk_size(), kSize);
  // The default granularity is 64 KiB, recording.
  ASSERT_TRUE(run1(make_bitmap_add(lookup_, {"disk0", "d", std::nullopt, false, false})).is_ok());
  EXPECT_EQ(disk0_->bitmaps().find("d")->granularity(), 65536u);
  EXPECT_TRUE(disk0_->bitmaps().find("d")->enabled());
}

TEST_F(BitmapActionsTest, AddRefusals) {
  auto msg = [this](BitmapAddParams p) { return run1(make_bitmap_add(lookup_, p)).message(); };
  EXPECT_EQ(msg({"disk0", "", {}, false, false}), "Bitmap name cannot be empty");
  EXPECT_EQ(msg({"nope", "b", {}, false, false}), "Cannot find device='nope' nor node-name='nope'");
  for (uint64_t g : {0ull, 256ull, 1000ull, 65537ull, 1ull << 32}) {
    EXPECT_EQ(msg({"disk0", "b", g, false, false}),
              "Granularity must be power of 2 and at least 512")
        << g;
  }
  EXPECT_EQ(msg({"disk0", std::string(1024, 'x'), {}, false, false}).empty(), false);
  EXPECT_EQ(msg({"disk0", "b", {}, true, false}),
            "Can't make bitmap 'b' persistent in 'disk0': Operation not supported (the node "
            "keeps no persistent bitmaps: a qcow2 image does, a raw node needs a bitmap-file)");
  add(*disk0_, "b");
  EXPECT_EQ(msg({"disk0", "b", {}, false, false}), "Bitmap already exists: b");
  auto store = attach_store(*disk1_);
  store->writable_ = false;
  EXPECT_EQ(msg({"disk1", "p", {}, true, false}),
            "Can't make bitmap 'p' persistent in 'disk1': the image is read-only");
  EXPECT_EQ(disk0_->bitmaps().list().size(), 1u);
  EXPECT_TRUE(disk1_->bitmaps().list().empty());
  EXPECT_TRUE(store->stored.empty());
}

TEST_F(BitmapActionsTest, AddPersistentStoresItAndAStoreErrorLeavesNothing) {
  auto store = attach_store(*disk0_);
  auto b = add(*disk0_, "p", /*persistent=*/true);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->persistent());
  EXPECT_TRUE(store->stored.count("p"));
  store->fail_errno = ENOSPC;
  Status s = run1(make_bitmap_add(lookup_, {"disk0", "q", {}, true, false}));
  EXPECT_EQ(s.code(), ENOSPC);
  EXPECT_FALSE(disk0_->bitmaps().find("q"));
}

TEST_F(BitmapActionsTest, LookupRefusalsOfTheOtherActions) {
  add(*disk0_, "b");
  for (auto make :
       {make_bitmap_remove, make_bitmap_clear, make_bitmap_enable, make_bitmap_disable}) {
    EXPECT_EQ(run1(make(lookup_, on("nope", "b"))).message(), "Node 'nope' not found");
    EXPECT_EQ(run1(make(lookup_, on("disk0", "x"))).message(), "Dirty bitmap 'x' not found");
  }
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"nope", "b", {}})).message(), "Node 'nope' not found");
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "x", {}})).message(),
            "Dirty bitmap 'x' not found");
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "b", {{std::nullopt, "x"}}})).message(),
            "Dirty bitmap 'x' not found");
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "b", {{"nope", "b"}}})).message(),
            "Node 'nope' not found");
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "b", {{"disk1", "b"}}})).message(),
            "Dirty bitmap 'b' not found");
}

TEST_F(BitmapActionsTest, BusyBitmapsCannotBeChangedButCanBeMergedFrom) {
  auto b = add(*disk0_, "b");
  auto t = add(*disk0_, "t");
  write(*disk0_, 3 * kG);
  auto before = states_of(*disk0_);
  {
    auto hold = blockcore::DirtyBitmap::make_busy(b);
    const std::string busy =
        "Bitmap 'b' is currently in use by another operation and cannot be used";
    for (auto make :
         {make_bitmap_remove, make_bitmap_clear, make_bitmap_enable, make_bitmap_disable}) {
      Status s = run1(make(lookup_, on("disk0", "b")));
      EXPECT_EQ(s.message(), busy);
      EXPECT_EQ(s.code(), EBUSY);
    }
    EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "b", {{std::nullopt, "t"}}})).message(),
              busy);
    auto after = states_of(*disk0_);
    after["b"].busy = false;
    EXPECT_EQ(after, before);
    // Reading a busy bitmap is fine.
    ASSERT_TRUE(run1(make_bitmap_merge(lookup_, {"disk0", "t", {{std::nullopt, "b"}}})).is_ok());
  }
  EXPECT_TRUE(t->all_dirty(3 * kG, 1));
}

TEST_F(BitmapActionsTest, ReadOnlyBitmapsCanOnlyBeToggled) {
  auto b = add(*disk0_, "b");
  b->set_read_only(true);
  const std::string ro = "Bitmap 'b' is readonly and cannot be modified";
  EXPECT_EQ(run1(make_bitmap_remove(lookup_, on("disk0", "b"))).message(), ro);
  EXPECT_EQ(run1(make_bitmap_clear(lookup_, on("disk0", "b"))).message(), ro);
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "b", {}})).message(), ro);
  EXPECT_TRUE(run1(make_bitmap_disable(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_FALSE(b->enabled());
  EXPECT_TRUE(run1(make_bitmap_enable(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_TRUE(b->enabled());
}

TEST_F(BitmapActionsTest, InconsistentBitmapsCanBeClearedOrRemovedOnly) {
  auto b = add(*disk0_, "b");
  auto t = add(*disk0_, "t");
  b->set_inconsistent(true);
  const std::string bad = "Bitmap 'b' is inconsistent and cannot be used";
  EXPECT_EQ(run1(make_bitmap_enable(lookup_, on("disk0", "b"))).message(), bad);
  EXPECT_EQ(run1(make_bitmap_disable(lookup_, on("disk0", "b"))).message(), bad);
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "b", {}})).message(), bad);
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "t", {{std::nullopt, "b"}}})).message(), bad);
  EXPECT_EQ(t->dirty_bytes(), 0u);
  ASSERT_TRUE(run1(make_bitmap_clear(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_FALSE(b->inconsistent());
  EXPECT_EQ(b->dirty_bytes(), 0u);
  b->set_inconsistent(true);
  ASSERT_TRUE(run1(make_bitmap_remove(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_FALSE(disk0_->bitmaps().find("b"));
}

TEST_F(BitmapActionsTest, RemoveClearEnableDisable) {
  auto store = attach_store(*disk0_);
  auto b = add(*disk0_, "b", /*persistent=*/true);
  write(*disk0_, 0);
  write(*disk0_, 9 * kG);
  EXPECT_EQ(b->dirty_bytes(), 2 * kG);
  ASSERT_TRUE(run1(make_bitmap_disable(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_FALSE(b->enabled());
  EXPECT_FALSE(store->stored_enabled["b"]);
  write(*disk0_, 20 * kG);
  EXPECT_EQ(b->dirty_bytes(), 2 * kG);
  ASSERT_TRUE(run1(make_bitmap_enable(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_TRUE(store->stored_enabled["b"]);
  write(*disk0_, 21 * kG);
  EXPECT_EQ(b->dirty_bytes(), 3 * kG);
  ASSERT_TRUE(run1(make_bitmap_clear(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_EQ(b->dirty_bytes(), 0u);
  EXPECT_EQ(store->stored["b"].count(), 0u);
  ASSERT_TRUE(run1(make_bitmap_remove(lookup_, on("disk0", "b"))).is_ok());
  EXPECT_FALSE(disk0_->bitmaps().find("b"));
  EXPECT_FALSE(store->stored.count("b"));
}

TEST_F(BitmapActionsTest, MergeFromTheSameAndOtherNodesAcrossGranularities) {
  auto t = add(*disk0_, "t", false, /*disabled=*/true);
  auto fine = add(*disk0_, "fine", false, false, 4096);
  auto other = add(*disk1_, "o");
  write(*disk0_, 5 * kG + 8192);  // one 4 KiB granule of `fine`
  write(*disk1_, 40 * kG);
  ASSERT_TRUE(
      run1(make_bitmap_merge(lookup_, {"disk0", "t", {{std::nullopt, "fine"}, {"disk1", "o"}}}))
          .is_ok());
  EXPECT_EQ(t->dirty_bytes(), 2 * kG);
  EXPECT_TRUE(t->all_dirty(5 * kG, kG));
  EXPECT_TRUE(t->all_dirty(40 * kG, kG));
  EXPECT_EQ(other->dirty_bytes(), kG);  // sources are unchanged
  // Sizes must match.
  add(*small_, "s");
  EXPECT_EQ(run1(make_bitmap_merge(lookup_, {"disk0", "t", {{"small", "s"}}})).message(),
            "Bitmaps are incompatible and can't be merged");
}

TEST_F(BitmapActionsTest, RemoveHoldsTheBitmapBusyUntilCommit) {
  auto b = add(*disk0_, "b");
  std::vector<TransactionActionPtr> v;
  v.push_back(make_bitmap_remove(lookup_, on("disk0", "b")));
  v.push_back(make_bitmap_clear(lookup_, on("disk0", "b")));
  Status s = run(std::move(v));
  EXPECT_EQ(s.message(), "Bitmap 'b' is currently in use by another operation and cannot be used");
  ASSERT_TRUE(disk0_->bitmaps().find("b"));
  EXPECT_FALSE(b->busy());
}

TEST_F(BitmapActionsTest, ARemoveFailingInTheStoreReportsItAndKeepsTheBitmap) {
  auto store = attach_store(*disk0_);
  auto b = add(*disk0_, "b", true);
  store->fail_errno = EIO;
  Transaction t;
  t.add(make_bitmap_remove(lookup_, on("disk0", "b")));
  Status s = fleece_test::run_task(t.run());
  EXPECT_EQ(s.code(), EIO);
  EXPECT_TRUE(t.committed());
  EXPECT_TRUE(disk0_->bitmaps().find("b"));
  EXPECT_FALSE(b->busy());
}

}  // namespace
}  // namespace backup
