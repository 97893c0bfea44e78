// DirtyBitmap: byte ranges to granules, dirty byte counts with a partial last granule,
// block-status extents (granule-aligned inner boundaries, merged runs, the cap), merge
// across granularities, inconsistent bitmaps and busy guards.
#include "blockcore/bitmap/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <vector>

namespace blockcore {
namespace {

constexpr uint64_t kG = 65536;

TEST(DirtyBitmap, ChecksNamesAndGranularities) {
  EXPECT_TRUE(check_bitmap_granularity(512).is_ok());
  EXPECT_TRUE(check_bitmap_granularity(1ull << 31).is_ok());
  EXPECT_FALSE(check_bitmap_granularity(256).is_ok());
  EXPECT_FALSE(check_bitmap_granularity(1ull << 32).is_ok());
  EXPECT_FALSE(check_bitmap_granularity(65536 + 512).is_ok());
  EXPECT_FALSE(check_bitmap_name("").is_ok());
  EXPECT_TRUE(check_bitmap_name(std::string(1023, 'a')).is_ok());
  EXPECT_FALSE(check_bitmap_name(std::string(1024, 'a')).is_ok());
}

TEST(DirtyBitmap, MarksEveryGranuleARangeTouches) {
  DirtyBitmap b("b", 10 * kG, kG);
  EXPECT_EQ(b.granules(), 10u);
  b.mark(kG - 1, 2);  // straddles granules 0 and 1
  EXPECT_EQ(b.dirty_granules(), 2u);
  EXPECT_TRUE(b.all_dirty(0, 2 * kG));
  EXPECT_FALSE(b.all_dirty(0, 2 * kG + 1));
  b.mark(9 * kG, 100 * kG);  // clipped to the disk
  EXPECT_EQ(b.dirty_granules(), 3u);
  b.reset(kG, 1);
  EXPECT_EQ(b.dirty_granules(), 2u);
  b.mark(100 * kG, kG);  // past the end: nothing
  EXPECT_EQ(b.dirty_granules(), 2u);
}

TEST(DirtyBitmap, DirtyBytesCountsAPartialLastGranule) {
  DirtyBitmap b("b", 2 * kG + 4096, kG);
  EXPECT_EQ(b.granules(), 3u);
  b.mark(2 * kG, 1);
  EXPECT_EQ(b.dirty_bytes(), 4096u);
  b.mark(0, 1);
  EXPECT_EQ(b.dirty_bytes(), kG + 4096);
  b.set_all();
  EXPECT_EQ(b.dirty_bytes(), 2 * kG + 4096);
  b.clear();
  EXPECT_EQ(b.dirty_bytes(), 0u);
}

TEST(DirtyBitmap, ExtentsAreGranuleAlignedMergedAndCapped) {
  DirtyBitmap b("b", 16 * kG, kG);
  b.mark(2 * kG, 3 * kG);  // granules 2..4
  b.mark(8 * kG, 1);       // granule 8
  using E = DirtyExtent;
  EXPECT_EQ(b.extents(0, 16 * kG, 100),
            (std::vector<E>{{2 * kG, false}, {3 * kG, true}, {3 * kG, false}, {kG, true},
                            {7 * kG, false}}));
  // A start inside a granule reports that granule's state up to its end.
  EXPECT_EQ(b.extents(2 * kG + 100, 2 * kG, 100), (std::vector<E>{{2 * kG, true}}));
  EXPECT_EQ(b.extents(kG + 5, kG, 100), (std::vector<E>{{kG - 5, false}, {5, true}}));
  // The cap: fewer runs, covering less.
  EXPECT_EQ(b.extents(0, 16 * kG, 2), (std::vector<E>{{2 * kG, false}, {3 * kG, true}}));
  EXPECT_EQ(b.extents(0, 16 * kG, 1), (std::vector<E>{{2 * kG, false}}));
  // Clipped to the disk.
  EXPECT_EQ(b.extents(15 * kG, 5 * kG, 10), (std::vector<E>{{kG, false}}));
}

TEST(DirtyBitmap, NextDirtyRange) {
  DirtyBitmap b("b", 16 * kG, kG);
  b.mark(3 * kG, 2 * kG);
  EXPECT_EQ(b.next_dirty_range(0, 16 * kG), (std::pair<uint64_t, uint64_t>{3 * kG, 2 * kG}));
  EXPECT_EQ(b.next_dirty_range(4 * kG + 7, 16 * kG),
            (std::pair<uint64_t, uint64_t>{4 * kG + 7, kG - 7}));
  EXPECT_EQ(b.next_dirty_range(5 * kG, 16 * kG), (std::pair<uint64_t, uint64_t>{16 * kG, 0}));
  EXPECT_EQ(b.next_dirty_range(0, 3 * kG + 10), (std::pair<uint64_t, uint64_t>{3 * kG, 10}));
}

TEST(DirtyBitmap, MergeAcrossGranularities) {
  DirtyBitmap coarse("coarse", 8 * kG, kG);
  DirtyBitmap fine("fine", 8 * kG, 4096);
  fine.mark(kG + 4096, 4096);  // one fine granule inside coarse granule 1
  fine.mark(7 * kG, kG);
  coarse.merge_from(fine);
  EXPECT_EQ(coarse.extents(0, 8 * kG, 10),
            (std::vector<DirtyExtent>{{kG, false}, {kG, true}, {5 * kG, false}, {kG, true}}));
  DirtyBitmap fine2("fine2", 8 * kG, 4096);
  fine2.merge_from(coarse);  // every fine granule of each dirty coarse granule
  EXPECT_EQ(fine2.dirty_bytes(), 2 * kG);
  DirtyBitmap same("same", 8 * kG, kG);
  same.mark(0, 1);
  same.merge_from(coarse);
  EXPECT_EQ(same.dirty_granules(), 3u);
}

TEST(DirtyBitmap, InconsistentReadsAllDirtyUntilCleared) {
  DirtyBitmap b("b", 4 * kG, kG);
  b.set_inconsistent(true);
  EXPECT_TRUE(b.inconsistent());
  EXPECT_EQ(b.extents(0, 4 * kG, 10), (std::vector<DirtyExtent>{{4 * kG, true}}));
  b.clear();
  EXPECT_FALSE(b.inconsistent());
  EXPECT_EQ(b.dirty_bytes(), 0u);
}

TEST(DirtyBitmap, BusyGuardsCount) {
  auto b = std::make_shared<DirtyBitmap>("b", kG, kG);
  EXPECT_FALSE(b->busy());
  {
    DirtyBitmap::BusyGuard g1 = DirtyBitmap::make_busy(b);
    DirtyBitmap::BusyGuard g2(b);
    EXPECT_TRUE(b->busy());
    DirtyBitmap::BusyGuard moved = std::move(g1);
    g2 = DirtyBitmap::BusyGuard();
    EXPECT_TRUE(b->busy());
  }
  EXPECT_FALSE(b->busy());
}

TEST(DirtyBitmap, SnapshotRestoreAndSerialize) {
  DirtyBitmap b("b", 64 * kG, kG);
  b.mark(0, kG);
  b.mark(9 * kG, kG);
  HBitmap saved = b.snapshot();
  b.clear();
  b.restore(saved);
  EXPECT_EQ(b.dirty_granules(), 2u);
  std::vector<std::byte> bytes(8);
  b.serialize(0, bytes);
  EXPECT_EQ(bytes[0], std::byte{0x01});
  EXPECT_EQ(bytes[1], std::byte{0x02});
  DirtyBitmap c("c", 64 * kG, kG);
  c.deserialize(0, bytes);
  EXPECT_EQ(c.extents(0, 64 * kG, 10), b.extents(0, 64 * kG, 10));
}

}  // namespace
}  // namespace blockcore
