// Refcount block entries of every width: bit/byte layout per the qcow2 spec, neighbours
// untouched, and the refcount blocks qemu-img writes.
#include "blockcore/qcow2/refcount_codec.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "qcow2_test_util.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

TEST(Qcow2RefcountCodecTest, MaxRefcount) {
  EXPECT_EQ(max_refcount(0), 1u);
  EXPECT_EQ(max_refcount(1), 3u);
  EXPECT_EQ(max_refcount(2), 15u);
  EXPECT_EQ(max_refcount(3), 255u);
  EXPECT_EQ(max_refcount(4), 65535u);
  EXPECT_EQ(max_refcount(5), 0xffffffffu);
  EXPECT_EQ(max_refcount(6), ~uint64_t{0});
  EXPECT_EQ(refcounts_per_block(65536, 4), 32768u);
  EXPECT_EQ(refcounts_per_block(512, 0), 4096u);
  EXPECT_EQ(refcounts_per_block(512, 6), 64u);
}

TEST(Qcow2RefcountCodecTest, SubByteWidthsAreLsbFirst) {
  std::vector<std::byte> b(8);
  set_refcount(b, 0, 0, 1);
  set_refcount(b, 0, 3, 1);
  set_refcount(b, 0, 9, 1);
  EXPECT_EQ(b[0], std::byte{0x09});
  EXPECT_EQ(b[1], std::byte{0x02});
  set_refcount(b, 0, 3, 0);
  EXPECT_EQ(b[0], std::byte{0x01});

  std::fill(b.begin(), b.end(), std::byte{0});
  set_refcount(b, 1, 0, 3);
  set_refcount(b, 1, 1, 1);
  set_refcount(b, 1, 3, 2);
  EXPECT_EQ(b[0], std::byte{0x87});  // 10 00 01 11
  EXPECT_EQ(get_refcount(b, 1, 3), 2u);
  EXPECT_EQ(get_refcount(b, 1, 2), 0u);

  std::fill(b.begin(), b.end(), std::byte{0});
  set_refcount(b, 2, 0, 0xa);
  set_refcount(b, 2, 1, 0x5);
  set_refcount(b, 2, 3, 0xf);
  EXPECT_EQ(b[0], std::byte{0x5a});
  EXPECT_EQ(b[1], std::byte{0xf0});
  EXPECT_EQ(get_refcount(b, 2, 1), 5u);
}

TEST(Qcow2RefcountCodecTest, WholeByteWidthsAreBigEndian) {
  std::vector<std::byte> b(32);
  set_refcount(b, 3, 5, 0xab);
  EXPECT_EQ(b[5], std::byte{0xab});
  set_refcount(b, 4, 1, 0x1234);
  EXPECT_EQ(b[2], std::byte{0x12});
  EXPECT_EQ(b[3], std::byte{0x34});
  set_refcount(b, 5, 2, 0x01020304);
  EXPECT_EQ(b[8], std::byte{0x01});
  EXPECT_EQ(b[11], std::byte{0x04});
  set_refcount(b, 6, 3, 0x1122334455667788ull);
  EXPECT_EQ(b[24], std::byte{0x11});
  EXPECT_EQ(b[31], std::byte{0x88});
  EXPECT_EQ(get_refcount(b, 6, 3), 0x1122334455667788ull);
  EXPECT_EQ(get_refcount(b, 5, 2), 0x01020304u);
}

TEST(Qcow2RefcountCodecTest, RandomRoundTripEveryOrder) {
  std::mt19937_64 rng(7);
  for (uint32_t order = 0; order <= 6; ++order) {
    std::vector<std::byte> b(512);
    const uint64_t n = refcounts_per_block(b.size(), order);
    std::vector<uint64_t> model(n, 0);
    for (int i = 0; i < 5000; ++i) {
      const uint64_t idx = rng() % n;
      const uint64_t v = rng() & max_refcount(order);
      set_refcount(b, order, idx, v);
      model[idx] = v;
    }
    for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(get_refcount(b, order, i), model[i]) << order;
    set_refcount(b, order, n - 1, max_refcount(order));
    EXPECT_EQ(get_refcount(b, order, n - 1), max_refcount(order));
  }
}

// The first refcount block of a fresh qemu-img image has clusters 0..3 (header,
// refcount table, refcount block, L1) at refcount 1, for every width.
TEST(Qcow2RefcountCodecTest, ReadsQemuRefcountBlocks) {
  if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  fleece_test::TempDir dir;
  for (int bits : {1, 2, 4, 8, 16, 32, 64}) {
    const std::string path = dir.file("rc" + std::to_string(bits) + ".qcow2");
    auto r = fleece_test::shell("qemu-img create -f qcow2 -o refcount_bits=" +
                                std::to_string(bits) + " " + fleece_test::sq(path) + " 1G");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto file = fleece_test::read_whole_file(path);
    auto h = parse_header(file);
    ASSERT_TRUE(h.is_ok()) << h.status().to_string();
    const Geometry g = Geometry::from(*h);
    const uint64_t rb_off = load_be64(file.data() + h->refcount_table_offset) & ~uint64_t{511};
    ASSERT_GT(rb_off, 0u);
    ASSERT_LE(rb_off + g.cluster_size, file.size());
    std::span<const std::byte> block(file.data() + rb_off, g.cluster_size);
    for (uint64_t c = 0; c < 4; ++c) EXPECT_EQ(get_refcount(block, h->refcount_order, c), 1u) << bits;
    for (uint64_t c = 4; c < 64; ++c) EXPECT_EQ(get_refcount(block, h->refcount_order, c), 0u) << bits;
  }
}

}  // namespace
}  // namespace blockcore::qcow2
