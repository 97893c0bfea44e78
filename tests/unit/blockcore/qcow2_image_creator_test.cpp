// Creating qcow2 images: option checks, the layout's refcounts, and images that
// qemu-img check accepts, qemu-img info describes as asked and qemu-io can write to.
#include "blockcore/qcow2/image_creator.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/refcount_codec.h"
#include "qcow2_test_util.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

using fleece_test::json_has;
using fleece_test::shell;
using fleece_test::sq;

CreateOptions opts(uint64_t size) {
  CreateOptions o;
  o.size = size;
  return o;
}

void expect_invalid(const CreateOptions& o, const std::string& what) {
  Status st = check_create_options(o);
  ASSERT_FALSE(st.is_ok()) << "accepted options that should fail with: " << what;
  EXPECT_EQ(st.code(), EINVAL);
  EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
  EXPECT_FALSE(layout_new_image(o).is_ok());
}

TEST(Qcow2ImageCreatorTest, RejectsBadOptions) {
  CreateOptions o = opts(1 << 20);
  EXPECT_TRUE(check_create_options(o).is_ok());
  o.cluster_bits = 8;                 expect_invalid(o, "cluster size"); o = opts(1 << 20);
  o.cluster_bits = 22;                expect_invalid(o, "cluster size"); o = opts(1 << 20);
  o.version = 1;                      expect_invalid(o, "version 1");    o = opts(1 << 20);
  o.refcount_order = 7;               expect_invalid(o, "refcount_order 7"); o = opts(1 << 20);
  o = opts(0);                        expect_invalid(o, "size 0");       o = opts(1 << 20);
  o = opts(1000);                     expect_invalid(o, "multiple of 512"); o = opts(1 << 20);
  o = opts(kMaxImageSize + 512);      expect_invalid(o, "out of range"); o = opts(1 << 20);
  o.extended_l2 = true; o.cluster_bits = 13; expect_invalid(o, "16 KiB"); o = opts(1 << 20);
  o.version = 2; o.refcount_order = 3; expect_invalid(o, "16-bit refcounts"); o = opts(1 << 20);
  o.version = 2; o.lazy_refcounts = true; expect_invalid(o, "lazy");     o = opts(1 << 20);
  o.version = 2; o.data_file = "d";   expect_invalid(o, "data file");    o = opts(1 << 20);
  o.version = 2; o.extended_l2 = true; expect_invalid(o, "extended L2"); o = opts(1 << 20);
  o.version = 2; o.compression = CompressionType::kZstd; expect_invalid(o, "compression");
  o = opts(1 << 20);
  o.data_file_raw = true;             expect_invalid(o, "needs a data file"); o = opts(1 << 20);
  o.data_file = "";                   expect_invalid(o, "data file name is empty"); o = opts(1 << 20);
  o.data_file = "d"; o.data_file_raw = true; o.backing_file = "b";
  expect_invalid(o, "data_file_raw");  o = opts(1 << 20);
  o.backing_file = std::string(1024, 'b'); expect_invalid(o, "1023");   o = opts(1 << 20);
  o.backing_format = "raw";           expect_invalid(o, "needs a backing file"); o = opts(1 << 20);
  // 512-byte clusters map at most 128 GiB with a 32 MiB L1 table.
  o = opts(256ull << 30); o.cluster_bits = 9; expect_invalid(o, "L1 table");
}

// Walks the layout's refcount structure: every cluster of the image at refcount 1,
// nothing beyond it.
void check_layout_refcounts(const CreateOptions& o) {
  auto layout = layout_new_image(o);
  ASSERT_TRUE(layout.is_ok()) << layout.status().to_string();
  const auto& w = *layout;
  ASSERT_EQ(w.size(), 4u);
  auto h = parse_header(w[0].bytes);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  const Geometry g = Geometry::from(*h);
  uint64_t end = 0;
  for (const ImageWrite& x : w) {
    EXPECT_EQ(x.offset % g.cluster_size, 0u);
    EXPECT_EQ(x.bytes.size() % g.cluster_size, 0u);
    EXPECT_EQ(x.offset, end);  // contiguous, ascending
    end = x.offset + x.bytes.size();
  }
  const uint64_t clusters = end / g.cluster_size;
  EXPECT_EQ(h->refcount_table_offset, w[1].offset);
  EXPECT_EQ(uint64_t{h->refcount_table_clusters} * g.cluster_size, w[1].bytes.size());
  EXPECT_EQ(h->l1_table_offset, w[3].offset);
  EXPECT_EQ(h->l1_size, g.l1_entries_for(o.size));
  const uint64_t rt_entries = w[1].bytes.size() / 8;
  for (uint64_t i = 0; i < rt_entries; ++i) {
    const uint64_t rb = load_be64(w[1].bytes.data() + i * 8);
    const uint64_t first = i * g.refblock_entries;
    if (rb == 0) {
      EXPECT_GE(first, clusters) << "cluster " << first << " has no refcount block";
      continue;
    }
    ASSERT_GE(rb, w[2].offset);
    ASSERT_LT(rb, w[2].offset + w[2].bytes.size());
    std::span<const std::byte> block(w[2].bytes.data() + (rb - w[2].offset), g.cluster_size);
    for (uint64_t k = 0; k < g.refblock_entries; ++k) {
      ASSERT_EQ(get_refcount(block, g.refcount_order, k), first + k < clusters ? 1u : 0u)
          << "cluster " << first + k;
    }
  }
  for (std::byte b : w[3].bytes) ASSERT_EQ(b, std::byte{0});
}

TEST(Qcow2ImageCreatorTest, LayoutCoversAllMetadata) {
  check_layout_refcounts(opts(1 << 20));
  CreateOptions o = opts(100ull << 30);  // 25 MiB of L1 in 512-byte clusters
  o.cluster_bits = 9;
  o.refcount_order = 6;                  // 64 refcounts per block: many blocks, big table
  check_layout_refcounts(o);
  o.refcount_order = 0;
  check_layout_refcounts(o);
  o = opts(1ull << 50);  // 1 PiB with 2 MiB clusters and extended L2
  o.cluster_bits = 21;
  o.extended_l2 = true;
  check_layout_refcounts(o);
}

TEST(Qcow2ImageCreatorTest, RefusesExistingFile) {
  fleece_test::TempDir dir;
  const std::string path = dir.file("exists.qcow2");
  fleece_test::make_file(path, 123);
  Status st = create_image_file(path, opts(1 << 20));
  EXPECT_EQ(st.code(), EEXIST) << st.to_string();
  struct stat sb {};
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);  // left alone
  EXPECT_EQ(sb.st_size, 123);
  st = create_image_file(dir.file("nodir/x.qcow2"), opts(1 << 20));
  EXPECT_EQ(st.code(), ENOENT);
  st = create_image_file(dir.file("bad.qcow2"), opts(1000));
  EXPECT_EQ(st.code(), EINVAL);
  EXPECT_NE(::stat(dir.file("bad.qcow2").c_str(), &sb), 0);
}

struct Case {
  std::string name;
  CreateOptions o;
  std::vector<std::pair<std::string, std::string>> json;  // expected "key": value in info
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Qcow2ImageCreatorQemuTest : public ::testing::TestWithParam<Case> {};

TEST_P(Qcow2ImageCreatorQemuTest, QemuAcceptsImage) {
  if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  fleece_test::TempDir dir;
  Case c = GetParam();
  // Backing and data files live next to the image, named relative to it.
  if (!c.o.backing_file.empty()) {
    const std::string fmt = c.o.backing_format.value_or("raw");
    auto r = shell("cd " + sq(dir.path()) + " && qemu-img create -f " + fmt + " " +
                   sq(c.o.backing_file) + " " + std::to_string(c.o.size));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  if (c.o.data_file) fleece_test::make_file(dir.file(*c.o.data_file), 0);
  const std::string img = dir.file("new.qcow2");
  // QEMU 7.2 opens a relative data file name from its working directory.
  const std::string cd = "cd " + sq(dir.path()) + " && ";
  Status st = create_image_file(img, c.o);
  ASSERT_TRUE(st.is_ok()) << st.to_string();

  auto check = shell(cd + "qemu-img check " + sq(img));
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("No errors were found"), std::string::npos) << check.output;
  auto info = shell(cd + "qemu-img info --output=json " + sq(img));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_TRUE(json_has(info.output, "virtual-size", std::to_string(c.o.size))) << info.output;
  EXPECT_TRUE(json_has(info.output, "cluster-size", std::to_string(1u << c.o.cluster_bits)))
      << info.output;
  EXPECT_TRUE(json_has(info.output, "compat", c.o.version == 2 ? "\"0.10\"" : "\"1.1\""))
      << info.output;
  EXPECT_TRUE(json_has(info.output, "refcount-bits", std::to_string(1u << c.o.refcount_order)))
      << info.output;
  if (c.o.version == 3) {
    EXPECT_TRUE(json_has(info.output, "extended-l2", c.o.extended_l2 ? "true" : "false"))
        << info.output;
    EXPECT_TRUE(json_has(info.output, "lazy-refcounts", c.o.lazy_refcounts ? "true" : "false"))
        << info.output;
  }
  for (const auto& [k, v] : c.json) EXPECT_TRUE(json_has(info.output, k, v)) << k << info.output;

  auto io = shell(cd + "qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' " +
                  std::string("-c 'write -P 0xcd ") + std::to_string(c.o.size - 4096) +
                  " 4k' -c 'read -P 0xcd " + std::to_string(c.o.size - 4096) + " 4k' " + sq(img));
  EXPECT_EQ(io.exit_code, 0) << io.output;
  EXPECT_EQ(io.output.find("Pattern verification failed"), std::string::npos) << io.output;
  EXPECT_EQ(io.output.find("rror"), std::string::npos) << io.output;
  check = shell(cd + "qemu-img check " + sq(img));
  EXPECT_EQ(check.exit_code, 0) << check.output;

  // The header fleeced wrote parses back to the options.
  const auto bytes = fleece_test::read_whole_file(img);
  auto h = parse_header(bytes);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->size, c.o.size);
  EXPECT_EQ(h->backing_file, c.o.backing_file);
  EXPECT_EQ(h->data_file, c.o.data_file);
}

CreateOptions with(uint64_t size, void (*f)(CreateOptions&)) {
  CreateOptions o = opts(size);
  f(o);
  return o;
}

INSTANTIATE_TEST_SUITE_P(
    Combos, Qcow2ImageCreatorQemuTest,
    ::testing::Values(
        Case{"Default", opts(1 << 30), {{"compression-type", "\"zlib\""}}},
        Case{"V2", with(100 << 20, [](CreateOptions& o) { o.version = 2; }), {}},
        Case{"Clusters512", with(64 << 20, [](CreateOptions& o) { o.cluster_bits = 9; }), {}},
        Case{"Clusters2M", with(10ull << 30, [](CreateOptions& o) { o.cluster_bits = 21; }), {}},
        Case{"Refcount1", with(1 << 30, [](CreateOptions& o) { o.refcount_order = 0; }), {}},
        Case{"Refcount8", with(1 << 30, [](CreateOptions& o) { o.refcount_order = 3; }), {}},
        Case{"Refcount64Small", with(2ull << 30, [](CreateOptions& o) {
               o.refcount_order = 6;
               o.cluster_bits = 9;
             }), {}},
        Case{"ExtendedL2", with(1 << 30, [](CreateOptions& o) { o.extended_l2 = true; }), {}},
        Case{"ExtendedL2Clusters16k", with(1 << 30, [](CreateOptions& o) {
               o.extended_l2 = true;
               o.cluster_bits = 14;
             }), {}},
        Case{"LazyRefcounts", with(1 << 30, [](CreateOptions& o) { o.lazy_refcounts = true; }),
             {}},
        Case{"Zstd", with(1 << 30, [](CreateOptions& o) { o.compression = CompressionType::kZstd; }),
             {{"compression-type", "\"zstd\""}}},
        Case{"BackingRaw", with(1 << 30, [](CreateOptions& o) {
               o.backing_file = "base.raw";
               o.backing_format = "raw";
             }), {{"backing-filename", "\"base.raw\""}, {"backing-filename-format", "\"raw\""}}},
        Case{"BackingQcow2V2", with(1 << 30, [](CreateOptions& o) {
               o.version = 2;
               o.backing_file = "base.qcow2";
               o.backing_format = "qcow2";
             }), {{"backing-filename", "\"base.qcow2\""}, {"backing-filename-format", "\"qcow2\""}}},
        Case{"DataFile", with(1 << 30, [](CreateOptions& o) { o.data_file = "data.raw"; }),
             {{"data-file", "\"data.raw\""}, {"data-file-raw", "false"}}},
        Case{"DataFileRaw", with(1 << 30, [](CreateOptions& o) {
               o.data_file = "data.raw";
               o.data_file_raw = true;
               o.lazy_refcounts = true;
               o.compression = CompressionType::kZstd;
               o.extended_l2 = true;
               o.refcount_order = 5;
             }), {{"data-file", "\"data.raw\""}, {"data-file-raw", "true"},
                  {"compression-type", "\"zstd\""}}},
        Case{"OddSize", with(1000 * 512, [](CreateOptions& o) { o.cluster_bits = 12; }), {}},
        Case{"Big", with(4ull << 40, [](CreateOptions& o) { o.refcount_order = 6; }), {}}),
    [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace blockcore::qcow2
