// Qcow2Node crash safety and corruption handling:
//  - the dirty bit: a copy of the image taken while a node has it open (after a flush,
//    and with unflushed metadata) is consistent for `qemu-img check`; a writable open
//    of a dirty image repairs leaked clusters;
//  - detected corruption: an L2 entry pointing into the L1 table or the refcount table
//    makes the write fail with EIO, sets the corrupt bit, fails every later write, keeps
//    reads of other clusters working, and a writable open of the image then fails while
//    a read-only one works.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "blockcore/qcow2/cluster_entry.h"
#include "qcow2_node_test_util.h"

namespace blockcore::qcow2::node_test {
namespace {

constexpr uint64_t K = 1024;
constexpr uint64_t M = 1024 * 1024;

void copy_file(const std::string& from, const std::string& to) {
  ShellResult r = shell("cp --sparse=always " + sq(from) + " " + sq(to));
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

TEST(Qcow2NodeIntegrityTest, CopyWhileOpenIsConsistentAndReopenRepairsLeaks) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  const std::string after_flush = fx.path("after_flush.qcow2");
  const std::string unflushed = fx.path("unflushed.qcow2");
  const uint64_t size = 8 * M, cs = 64 * K;
  create_image(img, size);
  qemu_io(img, "-c 'write -P 0x10 0 1M'");
  Model m(size);
  std::memset(m.bytes.data(), 0x10, 1 * M);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  for (uint64_t i = 0; i < 16; ++i) {
    auto p = pattern(cs + 1000, static_cast<uint32_t>(i));
    ASSERT_TRUE(write(*n, 2 * M + i * 3 * cs + 7, p).is_ok());
    m.write(2 * M + i * 3 * cs + 7, p);
  }
  ASSERT_TRUE(discard(*n, 256 * K, 256 * K).is_ok());  // frees clusters qemu-io wrote
  m.zero(256 * K, 256 * K);
  ASSERT_TRUE(zero(*n, 0, cs).is_ok());
  m.zero(0, cs);
  ASSERT_TRUE(flush(*n).is_ok());
  copy_file(img, after_flush);
  const Model flushed = m;
  // More allocating writes and frees, not flushed.
  for (uint64_t i = 0; i < 8; ++i) {
    auto p = pattern(2 * cs, static_cast<uint32_t>(50 + i));
    ASSERT_TRUE(write(*n, 5 * M + i * 2 * cs + 3, p).is_ok());
    m.write(5 * M + i * 2 * cs + 3, p);
  }
  ASSERT_TRUE(discard(*n, 2 * M, 4 * cs).is_ok());
  m.zero(2 * M, 4 * cs);
  copy_file(img, unflushed);
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);

  // The copies carry the dirty bit (a crash marker) and are consistent.
  EXPECT_NE(raw_header(after_flush).incompatible & kIncompatDirty, 0u);
  expect_check_clean(after_flush);
  expect_content(after_flush, flushed);
  {
    ShellResult r = qemu_img("check " + sq(unflushed));
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << "errors, not only leaks: " << r.output;
    EXPECT_EQ(r.output.find("ERROR"), std::string::npos) << r.output;
  }

  // Make a leak by hand in the flushed copy: one more cluster at the end of the file
  // with refcount 1 and no reference.
  {
    RawHeader h = raw_header(after_flush);
    ASSERT_EQ(h.cluster_bits, 16u);
    const uint64_t file_size = std::filesystem::file_size(after_flush);
    const uint64_t leaked = (file_size + cs - 1) / cs;
    std::filesystem::resize_file(after_flush, (leaked + 1) * cs);
    const uint64_t block = read_be64_at(after_flush, h.refcount_table_offset);
    ASSERT_NE(block, 0u);
    ASSERT_LT(leaked, cs * 8 / 16);  // covered by refcount block 0 (16-bit counts)
    std::vector<std::byte> two = fleece_test::read_file(after_flush, block + leaked * 2, 2);
    ASSERT_EQ(two[0], std::byte{0});
    ASSERT_EQ(two[1], std::byte{0});
    std::fstream f(after_flush, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(block + leaked * 2));
    const char one[2] = {0, 1};
    f.write(one, 2);
  }
  {
    ShellResult r = qemu_img("check " + sq(after_flush));
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("leaked"), std::string::npos) << r.output;
  }
  // A read-only open leaves it alone; a writable open repairs it.
  { BlockNodePtr ro = fx.open(after_flush, /*read_only=*/true); ASSERT_TRUE(ro); }
  EXPECT_EQ(qemu_img("check " + sq(after_flush)).exit_code, 3);
  {
    BlockNodePtr rw = fx.open(after_flush);
    ASSERT_TRUE(rw);
    expect_reads(*rw, flushed, 0, size);
  }
  expect_check_clean(after_flush);
  EXPECT_EQ(raw_header(after_flush).incompatible & kIncompatDirty, 0u);
  expect_content(after_flush, flushed);

  // The unflushed copy: a writable open repairs whatever it leaked.
  {
    BlockNodePtr rw = fx.open(unflushed);
    ASSERT_TRUE(rw);
    ASSERT_TRUE(write(*rw, 7 * M, pattern(100, 1)).is_ok());
  }
  expect_check_clean(unflushed);
}

TEST(Qcow2NodeIntegrityTest, CloseClearsTheDirtyBitAndFlushKeepsIt) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 1 * M);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  EXPECT_EQ(raw_header(img).incompatible & kIncompatDirty, 0u);  // nothing written yet
  ASSERT_TRUE(write(*n, 0, pattern(10, 1)).is_ok());
  EXPECT_NE(raw_header(img).incompatible & kIncompatDirty, 0u);  // set before metadata
  ASSERT_TRUE(flush(*n).is_ok());
  EXPECT_NE(raw_header(img).incompatible & kIncompatDirty, 0u);
  n.reset();
  EXPECT_EQ(raw_header(img).incompatible & kIncompatDirty, 0u);
  expect_check_clean(img);
}

// --- corruption ---

enum class Target { kL1, kRefcountTable, kRefcountBlock };

struct CorruptImage {
  std::string path;
  uint64_t target_offset = 0;
  std::vector<std::byte> target_before;
};

// A v3 image with guest clusters 0 and 1 written by qemu-io (0x11, 0x22), whose L2
// entry for guest cluster 1 is then pointed at `target`.
void make_corrupt(Fixture& fx, CorruptImage& c, Target target, bool copied,
                  const std::string& opts = "") {
  c.path = fx.path("bad.qcow2");
  create_image(c.path, 1 * M, opts);
  qemu_io(c.path, "-c 'write -P 0x11 0 64k' -c 'write -P 0x22 64k 64k'");
  RawHeader h = raw_header(c.path);
  ASSERT_EQ(h.cluster_bits, 16u);
  switch (target) {
    case Target::kL1: c.target_offset = h.l1_offset; break;
    case Target::kRefcountTable: c.target_offset = h.refcount_table_offset; break;
    case Target::kRefcountBlock: c.target_offset = read_be64_at(c.path, h.refcount_table_offset); break;
  }
  ASSERT_EQ(c.target_offset % (64 * K), 0u);
  // The L2 entry (standard layout: 8 bytes; extended: first 8 of 16).
  const uint64_t l1e = read_be64_at(c.path, h.l1_offset);
  const uint64_t l2 = l1e & kOffsetMask;
  ASSERT_NE(l2, 0u);
  const bool ext = (h.incompatible & kIncompatExtendedL2) != 0;
  const uint64_t at = l2 + (ext ? 16 : 8);
  write_be64_at(c.path, at, c.target_offset | (copied ? kFlagCopied : 0));
  c.target_before = fleece_test::read_file(c.path, c.target_offset, 64 * K);
}

bool info_says_corrupt(const std::string& path) {
  ShellResult r = qemu_img("info -U --output=json " + sq(path));
  return fleece_test::json_has(r.output, "corrupt", "true");
}

void expect_marked_corrupt_and_contained(Fixture& fx, const CorruptImage& c, BlockNodePtr& n) {
  EXPECT_TRUE(info_says_corrupt(c.path));
  // Later writes fail, to any cluster, and zeroing too.
  EXPECT_EQ(write(*n, 100, pattern(10, 2)).code(), EIO);
  EXPECT_EQ(write(*n, 512 * K, pattern(10, 3)).code(), EIO);
  EXPECT_NE(zero(*n, 0, 64 * K).code(), 0);
  // Reads of other clusters work.
  Status s;
  std::vector<std::byte> got = read(*n, 0, 64 * K, &s);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(got[5], std::byte{0x11});
  got = read(*n, 512 * K, 64 * K, &s);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(got[5], std::byte{0});
  n.reset();
  // The structure that was aimed at is intact.
  EXPECT_EQ(fleece_test::read_file(c.path, c.target_offset, 64 * K), c.target_before);
  EXPECT_NE(raw_header(c.path).incompatible & kIncompatCorrupt, 0u);
  // Writable opens fail; read-only opens work.
  Result<BlockNodePtr> rw = fx.try_open(c.path, /*read_only=*/false);
  EXPECT_FALSE(rw.is_ok());
  Result<BlockNodePtr> ro = fx.try_open(c.path, /*read_only=*/true);
  ASSERT_TRUE(ro.is_ok()) << ro.status().to_string();
  got = read(*ro.value(), 0, 64 * K);
  EXPECT_EQ(got[5], std::byte{0x11});
}

TEST(Qcow2NodeIntegrityTest, InPlaceWriteIntoTheL1TableMarksCorrupt) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  CorruptImage c;
  make_corrupt(fx, c, Target::kL1, /*copied=*/true);
  BlockNodePtr n = fx.open(c.path);
  ASSERT_TRUE(n);
  // Over the L1 entries themselves (the image has one).
  EXPECT_EQ(write(*n, 64 * K, pattern(100, 1)).code(), EIO);
  expect_marked_corrupt_and_contained(fx, c, n);
}

// The overlap check works on whole clusters (as QEMU's): a data write into the unused
// tail of the L1 table's cluster is caught too (structures shorter than a cluster: L1
// tables, the snapshot table, the bitmap directory).
TEST(Qcow2NodeIntegrityTest, WriteIntoTheTailOfTheL1ClusterMarksCorrupt) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  CorruptImage c;
  make_corrupt(fx, c, Target::kL1, /*copied=*/true);
  BlockNodePtr n = fx.open(c.path);
  ASSERT_TRUE(n);
  EXPECT_EQ(write(*n, 64 * K + 10, pattern(100, 1)).code(), EIO);
  expect_marked_corrupt_and_contained(fx, c, n);
}

TEST(Qcow2NodeIntegrityTest, WholeClusterWriteIntoTheRefcountTableMarksCorrupt) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  CorruptImage c;
  make_corrupt(fx, c, Target::kRefcountTable, /*copied=*/true);
  BlockNodePtr n = fx.open(c.path);
  ASSERT_TRUE(n);
  EXPECT_EQ(write(*n, 64 * K, pattern(64 * K, 1)).code(), EIO);
  expect_marked_corrupt_and_contained(fx, c, n);
}

TEST(Qcow2NodeIntegrityTest, ZeroingThroughAnEntryIntoARefcountBlockThenWriting) {
  // write_zeroes of a whole cluster only changes its L2 entry (keeps the host offset,
  // sets the zero flag): a later partial write then reuses the host cluster and must be
  // stopped by the overlap check.
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  CorruptImage c;
  make_corrupt(fx, c, Target::kRefcountBlock, /*copied=*/true);
  BlockNodePtr n = fx.open(c.path);
  ASSERT_TRUE(n);
  Status z = zero(*n, 64 * K, 64 * K);
  Status w = write(*n, 64 * K + 1, pattern(10, 1));
  EXPECT_TRUE(z.code() == EIO || w.code() == EIO) << z.to_string() << " / " << w.to_string();
  expect_marked_corrupt_and_contained(fx, c, n);
}

TEST(Qcow2NodeIntegrityTest, ExtendedL2SubclusterWriteIntoTheL1TableMarksCorrupt) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  CorruptImage c;
  make_corrupt(fx, c, Target::kL1, /*copied=*/true, "extended_l2=on");
  // qemu-io allocated every subcluster of cluster 1: a partial write is in place.
  BlockNodePtr n = fx.open(c.path);
  ASSERT_TRUE(n);
  EXPECT_EQ(write(*n, 64 * K + 2 * K + 5, pattern(10, 1)).code(), EIO);
  expect_marked_corrupt_and_contained(fx, c, n);
}

// Without the copied flag the entry looks shared: a write copies the cluster elsewhere
// and drops a reference from the "old" host cluster — which is the L1 table. Its
// refcount then reaches 0 and the write-back frees it (and punches a hole into it).
// Freeing a cluster that holds live metadata must be treated as corruption, never done
// (a regression test: the write once succeeded and the flush freed the L1 table).
TEST(Qcow2NodeIntegrityTest, CopyOnWriteAwayFromTheL1TableNeverFreesIt) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  CorruptImage c;
  make_corrupt(fx, c, Target::kL1, /*copied=*/false);
  BlockNodePtr n = fx.open(c.path);
  ASSERT_TRUE(n);
  Status w = write(*n, 64 * K + 10, pattern(100, 1));
  Status f = flush(*n);
  EXPECT_TRUE(w.code() == EIO || f.code() == EIO) << w.to_string() << " / " << f.to_string();
  n.reset();
  // Whatever happened, the L1 table must still map guest cluster 0 to its data.
  Result<BlockNodePtr> ro = fx.try_open(c.path, /*read_only=*/true);
  ASSERT_TRUE(ro.is_ok()) << ro.status().to_string();
  std::vector<std::byte> got = read(*ro.value(), 0, 64 * K);
  EXPECT_EQ(got[5], std::byte{0x11}) << "the L1 table was destroyed";
  EXPECT_TRUE(info_says_corrupt(c.path));
}

TEST(Qcow2NodeIntegrityTest, WritableOpenOfACorruptImageFails) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 1 * M);
  qemu_io(img, "-c 'write -P 0x11 0 64k'");
  RawHeader h = raw_header(img);
  write_be64_at(img, 72, h.incompatible | kIncompatCorrupt);
  Result<BlockNodePtr> rw = fx.try_open(img, false);
  EXPECT_FALSE(rw.is_ok());
  Result<BlockNodePtr> ro = fx.try_open(img, true);
  ASSERT_TRUE(ro.is_ok()) << ro.status().to_string();
  EXPECT_EQ(read(*ro.value(), 0, 64 * K)[0], std::byte{0x11});
  EXPECT_EQ(write(*ro.value(), 0, pattern(1, 1)).code(), EROFS);
}

}  // namespace
}  // namespace blockcore::qcow2::node_test
