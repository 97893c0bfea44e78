// Transactions of bitmap actions: all-or-nothing. A failing action leaves every bitmap
// as it was (content, granularity, flags, existence; the store keeps every persistent
// bitmap and never holds less than memory), writes made while the transaction runs are
// never lost, and later actions see what earlier ones did (QEMU's order).
#include <gtest/gtest.h>

#include "backup/bitmap_actions.h"
#include "bitmap_test_env.h"

namespace backup {
namespace {

using blockcore::DirtyBitmapPtr;
using blockcore::HBitmap;
using blockcore::Status;

BitmapParams on(const std::string& name) { return {"disk0", name}; }

// Every stored bitmap holds at least what memory holds (a crash loses no dirty bit).
void expect_store_covers_memory(const FakeStore& store, const blockcore::BlockNode& node) {
  for (const auto& b : node.bitmaps().list()) {
    if (!b->persistent()) continue;
    auto it = store.stored.find(b->name());
    ASSERT_NE(it, store.stored.end()) << b->name() << " is not stored";
    HBitmap both = it->second;
    both.merge(b->snapshot());
    EXPECT_EQ(both, it->second) << b->name() << ": memory has bits the store lacks";
  }
}

class BitmapTransactionTest : public BitmapActionsTest {
 protected:
  // disk0 (with a store: the first three persistent): live (recording: 1..4, 11), old
  // (disabled: 1..4), gone, off (recording), dormant (disabled), stale (inconsistent);
  // disk1: x (7).
  void make_bitmaps(bool with_store) {
    if (with_store) store_ = attach_store(*disk0_);
    add(*disk0_, "live", with_store);
    add(*disk0_, "old", with_store);
    add(*disk0_, "gone", with_store);
    add(*disk0_, "off");
    add(*disk0_, "dormant", false, /*disabled=*/true);
    add(*disk0_, "stale", false, false, 4096);
    add(*disk1_, "x");
    write(*disk0_, 1 * kG);
    write(*disk0_, 2 * kG, 3 * kG);
    write(*disk1_, 7 * kG);
    ASSERT_TRUE(run1(make_bitmap_disable(lookup_, on("old"))).is_ok());
    write(*disk0_, 11 * kG);
    disk0_->bitmaps().find("stale")->set_inconsistent(true);
  }

  // Every kind of action, several on the same bitmap, then `last`.
  std::vector<TransactionActionPtr> every_action(TransactionActionPtr last) {
    std::vector<TransactionActionPtr> v;
    v.push_back(
        make_bitmap_merge(lookup_, {"disk0", "old", {{std::nullopt, "live"}, {"disk1", "x"}}}));
    v.push_back(make_bitmap_clear(lookup_, on("live")));
    v.push_back(make_bitmap_merge(lookup_, {"disk0", "live", {{"disk1", "x"}}}));
    v.push_back(make_bitmap_clear(lookup_, on("stale")));
    v.push_back(make_bitmap_enable(lookup_, on("dormant")));
    v.push_back(make_bitmap_disable(lookup_, on("off")));
    v.push_back(make_bitmap_remove(lookup_, on("gone")));
    v.push_back(make_bitmap_add(lookup_, {"disk0", "new", 4096, store_ != nullptr, false}));
    v.push_back(make_bitmap_add(lookup_, {"disk1", "new", {}, false, true}));
    v.push_back(std::move(last));
    return v;
  }

  std::shared_ptr<FakeStore> store_;
};

TEST_F(BitmapTransactionTest, AFailingActionLeavesEveryBitmapAsItWas) {
  make_bitmaps(/*with_store=*/false);
  auto before0 = states_of(*disk0_);
  auto before1 = states_of(*disk1_);
  Status s = run(every_action(std::make_unique<FailingAction>()));
  EXPECT_EQ(s.message(), "the test action fails");
  EXPECT_EQ(states_of(*disk0_), before0);
  EXPECT_EQ(states_of(*disk1_), before1);
}

TEST_F(BitmapTransactionTest, AFailingActionLeavesEveryPersistentBitmapAsItWas) {
  make_bitmaps(/*with_store=*/true);
  auto before0 = states_of(*disk0_);
  auto before1 = states_of(*disk1_);
  auto stored_before = store_->stored;
  Status s = run(every_action(std::make_unique<FailingAction>()));
  EXPECT_EQ(s.message(), "the test action fails");
  EXPECT_EQ(states_of(*disk0_), before0);
  EXPECT_EQ(states_of(*disk1_), before1);
  // The store keeps the same bitmaps; the disabled ones exactly, and none holds less
  // than memory (an undone merge into a recording bitmap may stay in the stored copy).
  std::vector<std::string> names_before, names_after;
  for (const auto& [name, content] : stored_before) names_before.push_back(name);
  for (const auto& [name, content] : store_->stored) names_after.push_back(name);
  EXPECT_EQ(names_after, names_before);
  EXPECT_EQ(store_->stored["old"], stored_before["old"]);
  EXPECT_EQ(store_->stored["gone"], stored_before["gone"]);
  expect_store_covers_memory(*store_, *disk0_);
}

TEST_F(BitmapTransactionTest, EveryPrefixFailingRollsBackToo) {
  // The failure after each number of actions, with real refusals as the failing action.
  make_bitmaps(/*with_store=*/true);
  auto before0 = states_of(*disk0_);
  auto before1 = states_of(*disk1_);
  for (size_t n = 0; n < 10; ++n) {
    auto all = every_action(make_bitmap_add(lookup_, {"disk0", "live", {}, false, false}));
    std::vector<TransactionActionPtr> v;
    for (size_t i = 0; i < n; ++i) v.push_back(std::move(all[i]));
    v.push_back(std::move(all.back()));  // "Bitmap already exists: live"
    Status s = run(std::move(v));
    EXPECT_EQ(s.message(), "Bitmap already exists: live") << n;
    EXPECT_EQ(states_of(*disk0_), before0) << n;
    EXPECT_EQ(states_of(*disk1_), before1) << n;
    expect_store_covers_memory(*store_, *disk0_);
  }
}

TEST_F(BitmapTransactionTest, WithoutAFailureEverythingTakesEffect) {
  make_bitmaps(/*with_store=*/true);
  ASSERT_TRUE(run(every_action(make_bitmap_enable(lookup_, on("live")))).is_ok());
  auto b = [this](const std::string& n) { return disk0_->bitmaps().find(n); };
  // old (1..4) got live's granules (1..4, 11) and x's (7).
  EXPECT_EQ(b("old")->dirty_bytes(), 6 * kG);
  EXPECT_TRUE(b("old")->all_dirty(7 * kG, kG));
  // live was cleared and then got x: only granule 7.
  EXPECT_EQ(b("live")->dirty_bytes(), kG);
  EXPECT_TRUE(b("live")->all_dirty(7 * kG, kG));
  EXPECT_FALSE(b("stale")->inconsistent());
  EXPECT_EQ(b("stale")->dirty_bytes(), 0u);
  EXPECT_TRUE(b("dormant")->enabled());
  EXPECT_FALSE(b("off")->enabled());
  EXPECT_FALSE(b("gone"));
  EXPECT_FALSE(store_->stored.count("gone"));
  ASSERT_TRUE(b("new"));
  EXPECT_TRUE(store_->stored.count("new"));
  EXPECT_TRUE(disk1_->bitmaps().find("new"));
  expect_store_covers_memory(*store_, *disk0_);
}

TEST_F(BitmapTransactionTest, WritesDuringAnAbortedTransactionAreKept) {
  store_ = attach_store(*disk0_);
  auto live = add(*disk0_, "live", true);
  auto off = add(*disk0_, "off");
  auto dormant = add(*disk0_, "dormant", false, true);
  auto src = add(*disk1_, "src");
  write(*disk0_, 1 * kG);
  write(*disk1_, 7 * kG);
  std::vector<TransactionActionPtr> v;
  v.push_back(make_bitmap_clear(lookup_, on("live")));
  v.push_back(make_bitmap_merge(lookup_, {"disk0", "live", {{"disk1", "src"}}}));
  v.push_back(make_bitmap_disable(lookup_, on("off")));
  v.push_back(make_bitmap_enable(lookup_, on("dormant")));
  // A guest write while the transaction runs.
  v.push_back(std::make_unique<FailingAction>(
      [this]() -> blockcore::Task<void> { co_await write_async(*disk0_, 20 * kG); }));
  EXPECT_FALSE(run(std::move(v)).is_ok());
  // live: its own granule, and the write; not the merged one.
  EXPECT_EQ(live->dirty_bytes(), 2 * kG);
  EXPECT_TRUE(live->all_dirty(1 * kG, kG));
  EXPECT_TRUE(live->all_dirty(20 * kG, kG));
  EXPECT_TRUE(store_->stored["live"].get(20));
  // off kept recording (a disable takes effect at commit).
  EXPECT_TRUE(off->enabled());
  EXPECT_TRUE(off->all_dirty(20 * kG, kG));
  // dormant is disabled again and has nothing it recorded meanwhile.
  EXPECT_FALSE(dormant->enabled());
  EXPECT_EQ(dormant->dirty_bytes(), 0u);
  expect_store_covers_memory(*store_, *disk0_);
}

TEST_F(BitmapTransactionTest, LaterActionsSeeEarlierOnes) {
  auto a = add(*disk0_, "a");
  auto t = add(*disk0_, "t", false, true);
  write(*disk0_, 3 * kG);
  {
    // The incremental-backup pattern: copy a into t, then restart a.
    std::vector<TransactionActionPtr> v;
    v.push_back(make_bitmap_merge(lookup_, {"disk0", "t", {{std::nullopt, "a"}}}));
    v.push_back(make_bitmap_clear(lookup_, on("a")));
    ASSERT_TRUE(run(std::move(v)).is_ok());
    EXPECT_TRUE(t->all_dirty(3 * kG, kG));
    EXPECT_EQ(a->dirty_bytes(), 0u);
  }
  {
    std::vector<TransactionActionPtr> v;
    v.push_back(make_bitmap_add(lookup_, {"disk0", "n", {}, false, false}));
    v.push_back(make_bitmap_merge(lookup_, {"disk0", "n", {{std::nullopt, "t"}}}));
    v.push_back(make_bitmap_remove(lookup_, on("t")));
    ASSERT_TRUE(run(std::move(v)).is_ok());
    EXPECT_TRUE(disk0_->bitmaps().find("n")->all_dirty(3 * kG, kG));
    EXPECT_FALSE(disk0_->bitmaps().find("t"));
  }
  {
    std::vector<TransactionActionPtr> v;
    v.push_back(make_bitmap_disable(lookup_, on("a")));
    v.push_back(make_bitmap_enable(lookup_, on("a")));
    ASSERT_TRUE(run(std::move(v)).is_ok());
    EXPECT_TRUE(a->enabled());
  }
  {
    std::vector<TransactionActionPtr> v;
    v.push_back(make_bitmap_enable(lookup_, on("a")));
    v.push_back(make_bitmap_disable(lookup_, on("a")));
    ASSERT_TRUE(run(std::move(v)).is_ok());
    EXPECT_FALSE(a->enabled());
  }
  {
    std::vector<TransactionActionPtr> v;
    v.push_back(make_bitmap_add(lookup_, {"disk0", "tmp", {}, false, false}));
    v.push_back(make_bitmap_remove(lookup_, on("tmp")));
    ASSERT_TRUE(run(std::move(v)).is_ok());
    EXPECT_FALSE(disk0_->bitmaps().find("tmp"));
  }
}

// QEMU accepts toggling and removing one bitmap in one transaction: the toggle's commit
// must not trip over the busy hold of the later remove.
TEST_F(BitmapTransactionTest, ToggleThenRemoveOfOneBitmap) {
  make_bitmaps(false);
  for (const char* name : {"dormant", "off"}) {
    SCOPED_TRACE(name);
    std::vector<TransactionActionPtr> v;
    if (std::string(name) == "dormant") {
      v.push_back(make_bitmap_enable(lookup_, on(name)));
    } else {
      v.push_back(make_bitmap_disable(lookup_, on(name)));
    }
    v.push_back(make_bitmap_remove(lookup_, on(name)));
    EXPECT_TRUE(run(std::move(v)).is_ok());
    EXPECT_EQ(disk0_->bitmaps().find(name), nullptr);
  }
}

TEST_F(BitmapTransactionTest, AStoreErrorWhileRollingBackIsReported) {
  store_ = attach_store(*disk0_);
  auto live = add(*disk0_, "live", true);
  write(*disk0_, 1 * kG);
  std::vector<TransactionActionPtr> v;
  v.push_back(make_bitmap_clear(lookup_, on("live")));
  v.push_back(std::make_unique<FailingAction>([this]() -> blockcore::Task<void> {
    store_->fail_errno = EIO;
    co_return;
  }));
  Status s = run(std::move(v));
  EXPECT_EQ(
      s.message(),
      "the test action fails; rolling back block-dirty-bitmap-clear failed: fake write failed");
  // Memory has its bits back whatever the store did.
  EXPECT_TRUE(live->all_dirty(1 * kG, kG));
}

}  // namespace
}  // namespace backup
