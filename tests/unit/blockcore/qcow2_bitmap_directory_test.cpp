// The bitmaps extension codec: directory entries and tables round trip, QEMU's
// directories parse, every hostile directory is refused with a reason, and fleece's
// header record round trips and is refused when malformed.
#include "blockcore/qcow2/bitmap_directory.h"

#include <gtest/gtest.h>

#include <cstring>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/image_creator.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "qcow2_test_util.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

constexpr uint64_t kCluster = 65536;
constexpr uint64_t kDisk = 1ull << 30;

BitmapDirEntry entry(const std::string& name, uint8_t gbits = 16, uint32_t flags = kBitmapFlagAuto) {
  BitmapDirEntry e;
  e.name = name;
  e.granularity_bits = gbits;
  e.flags = flags;
  e.table_offset = 0x50000;
  e.table_size = static_cast<uint32_t>(bitmap_table_entries_for(kDisk, 1ull << gbits, kCluster));
  return e;
}

// Parses `dir` expecting failure with a message containing `what`.
void expect_refused(std::span<const std::byte> dir, uint32_t expected, const std::string& what) {
  auto r = parse_bitmap_directory(dir, expected, kCluster, kDisk);
  ASSERT_FALSE(r.is_ok()) << "accepted a directory that should fail with: " << what;
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
}

TEST(BitmapDirectoryTest, RoundTrip) {
  std::vector<BitmapDirEntry> in = {entry("a"), entry("nightly", 9, kBitmapFlagInUse),
                                    entry(std::string(1023, 'x'), 31, 0)};
  BitmapDirEntry extra = entry("with-extra", 20, kBitmapFlagAuto | kBitmapFlagExtraDataCompatible);
  extra.extra_data = {std::byte{1}, std::byte{2}, std::byte{3}};
  in.push_back(extra);
  auto bytes = serialize_bitmap_directory(in, kCluster, kDisk);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  EXPECT_EQ(bytes->size(), bitmap_directory_bytes(in));
  EXPECT_EQ(bytes->size() % 8, 0u);
  EXPECT_EQ(bitmap_dir_entry_bytes(1, 0), 32u);   // 24 + 1, rounded up
  EXPECT_EQ(bitmap_dir_entry_bytes(8, 0), 32u);
  EXPECT_EQ(bitmap_dir_entry_bytes(9, 0), 40u);
  auto out = parse_bitmap_directory(*bytes, 4, kCluster, kDisk);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  ASSERT_EQ(out->size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ((*out)[i], in[i]) << i;
  EXPECT_TRUE((*out)[1].in_use());
  EXPECT_FALSE((*out)[2].auto_flag());
  EXPECT_TRUE((*out)[3].usable());
  // Byte layout of the first entry (QEMU's Qcow2BitmapDirEntry).
  EXPECT_EQ(load_be64(bytes->data()), 0x50000u);
  EXPECT_EQ(load_be32(bytes->data() + 8), 1u);
  EXPECT_EQ(load_be32(bytes->data() + 12), kBitmapFlagAuto);
  EXPECT_EQ(std::to_integer<int>((*bytes)[16]), 1);
  EXPECT_EQ(std::to_integer<int>((*bytes)[17]), 16);
  EXPECT_EQ(load_be16(bytes->data() + 18), 1u);
  EXPECT_EQ(std::to_integer<char>((*bytes)[24]), 'a');
}

TEST(BitmapDirectoryTest, TableSizes) {
  // 1 GiB at 64 KiB granularity: 16384 bits = 2048 bytes, one cluster.
  EXPECT_EQ(bitmap_table_entries_for(kDisk, 65536, kCluster), 1u);
  // 1 TiB at 512 B: 2^31 bits = 256 MiB of data = 4096 clusters of 64 KiB.
  EXPECT_EQ(bitmap_table_entries_for(1ull << 40, 512, kCluster), 4096u);
  // A partial last granule and a partial last byte still count.
  EXPECT_EQ(bitmap_table_entries_for(512 * 8 * 512 + 1, 512, 512), 2u);
  EXPECT_EQ(bitmap_table_entries_for(1, 65536, 512), 1u);
}

TEST(BitmapDirectoryTest, HostileDirectories) {
  auto dir_of = [](std::vector<BitmapDirEntry> v) {
    // Serialized without the checks: the codec's own layout, then corrupted by hand.
    std::vector<std::byte> out;
    for (const BitmapDirEntry& e : v) {
      std::vector<std::byte> b(bitmap_dir_entry_bytes(e.name.size(), e.extra_data.size()));
      store_be64(b.data(), e.table_offset);
      store_be32(b.data() + 8, e.table_size);
      store_be32(b.data() + 12, e.flags);
      b[16] = std::byte{e.type};
      b[17] = std::byte{e.granularity_bits};
      store_be16(b.data() + 18, static_cast<uint16_t>(e.name.size()));
      store_be32(b.data() + 20, static_cast<uint32_t>(e.extra_data.size()));
      if (!e.extra_data.empty()) std::memcpy(b.data() + 24, e.extra_data.data(), e.extra_data.size());
      std::memcpy(b.data() + 24 + e.extra_data.size(), e.name.data(), e.name.size());
      out.insert(out.end(), b.begin(), b.end());
    }
    return out;
  };
  auto with = [&](auto change) {
    BitmapDirEntry e = entry("b");
    change(e);
    return dir_of({e});
  };
  const auto good = dir_of({entry("a"), entry("b")});
  ASSERT_TRUE(parse_bitmap_directory(good, 2, kCluster, kDisk).is_ok());
  expect_refused(good, 1, "more entries than the 1");
  expect_refused(good, 3, "holds 2 entries, the header announces 3");
  expect_refused(good, 0, "0 bitmaps");
  expect_refused(std::span(good).first(good.size() - 8), 2, "cut short");
  expect_refused(std::span(good).first(40), 2, "cut short");
  expect_refused(dir_of({entry("a"), entry("a")}), 2, "appears twice");
  expect_refused(with([](auto& e) { e.flags = 8; }), 1, "reserved flags");
  expect_refused(with([](auto& e) { e.flags = 1u << 31; }), 1, "reserved flags");
  expect_refused(with([](auto& e) { e.type = 2; }), 1, "type 2");
  expect_refused(with([](auto& e) { e.type = 0; }), 1, "type 0");
  expect_refused(with([](auto& e) { e.granularity_bits = 8; }), 1, "granularity bits 8");
  expect_refused(with([](auto& e) { e.granularity_bits = 32; }), 1, "granularity bits 32");
  expect_refused(with([](auto& e) { e.name = ""; }), 1, "name of 0 bytes");
  expect_refused(with([](auto& e) { e.name = std::string(1024, 'n'); }), 1, "name of 1024");
  expect_refused(with([](auto& e) { e.name = std::string("a\0b", 3); }), 1, "NUL");
  expect_refused(with([](auto& e) { e.table_offset = 0; }), 1, "table offset");
  expect_refused(with([](auto& e) { e.table_offset = 0x50200; }), 1, "table offset");
  expect_refused(with([](auto& e) { e.table_offset = 1ull << 57; }), 1, "table offset");
  expect_refused(with([](auto& e) { e.table_size = 0; }), 1, "table size 0");
  expect_refused(with([](auto& e) { e.table_size = 0x8000001; }), 1, "out of range");
  expect_refused(with([](auto& e) { e.table_size = 8193; }), 1, "out of range");  // > 512 MiB
  // A consistent bitmap's table must cover the disk; an in_use one need not.
  BitmapDirEntry small = entry("s", 9, kBitmapFlagAuto);
  small.table_size = 1;
  expect_refused(dir_of({small}), 1, "too small for the virtual size");
  small.flags |= kBitmapFlagInUse;
  EXPECT_TRUE(parse_bitmap_directory(dir_of({small}), 1, kCluster, kDisk).is_ok());
  // Padding after the name must be zero.
  auto padded = dir_of({entry("a")});
  padded[30] = std::byte{7};
  expect_refused(padded, 1, "nonzero padding");
  // Extra data running past the directory.
  auto runs = dir_of({entry("a")});
  store_be32(runs.data() + 20, 1000);
  expect_refused(runs, 1, "cut short");
  // Too large a directory.
  std::vector<std::byte> huge(kMaxBitmapDirectoryBytes + 8);
  expect_refused(huge, 1, "too large");
  // serialize refuses what parse refuses.
  EXPECT_FALSE(serialize_bitmap_directory(std::vector<BitmapDirEntry>{}, kCluster, kDisk).is_ok());
  EXPECT_FALSE(serialize_bitmap_directory(std::vector{entry("a"), entry("a")}, kCluster, kDisk).is_ok());
  BitmapDirEntry bad = entry("x");
  bad.flags = 16;
  EXPECT_FALSE(serialize_bitmap_directory(std::vector{bad}, kCluster, kDisk).is_ok());
}

TEST(BitmapDirectoryTest, Tables) {
  std::vector<uint64_t> t = {0, kBitmapTableAllOnes, 0x70000, 0x80000};
  auto raw = serialize_bitmap_table(t, kCluster);
  EXPECT_EQ(raw.size(), kCluster);
  auto back = parse_bitmap_table(std::span(raw).first(32), kCluster, "b");
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, t);
  auto refuse = [&](uint64_t e, const std::string& what) {
    std::vector<std::byte> r(8);
    store_be64(r.data(), e);
    auto p = parse_bitmap_table(r, kCluster, "b");
    ASSERT_FALSE(p.is_ok()) << what;
    EXPECT_NE(p.status().message().find(what), std::string::npos) << p.status().message();
    EXPECT_NE(p.status().message().find("bitmap 'b'"), std::string::npos);
  };
  refuse(2, "reserved bits");
  refuse(1ull << 60, "reserved bits");
  refuse(0x70000 | kBitmapTableAllOnes, "all-ones");
  refuse(0x70200, "not cluster aligned");
}

TEST(BitmapDirectoryTest, NewBitmapConstraints) {
  EXPECT_TRUE(check_new_bitmap_constraints("a", 65536, kDisk, kCluster).is_ok());
  auto msg = [](Status s) { return s.message(); };
  EXPECT_NE(msg(check_new_bitmap_constraints("a", 1ull << 32, kDisk, kCluster)).find("exceeds maximum"),
            std::string::npos);
  EXPECT_NE(msg(check_new_bitmap_constraints("a", 256, kDisk, kCluster)).find("under minimum"),
            std::string::npos);
  // 8 TiB at 512 B: 2 GiB of bitmap data.
  EXPECT_NE(msg(check_new_bitmap_constraints("a", 512, 8ull << 40, kCluster)).find("Use larger granularity"),
            std::string::npos);
  EXPECT_NE(msg(check_new_bitmap_constraints(std::string(1024, 'a'), 65536, kDisk, kCluster))
                .find("Name length"),
            std::string::npos);
}

// ---- fleece's record in the header ----

Header fresh_header() {
  CreateOptions o;
  o.size = kDisk;
  auto layout = layout_new_image(o);
  EXPECT_TRUE(layout.is_ok());
  auto h = parse_header((*layout)[0].bytes);
  EXPECT_TRUE(h.is_ok());
  return *h;
}

TEST(FleeceRecordTest, RoundTrip) {
  Header h = fresh_header();
  FleeceBitmapsRecord r;
  r.directory_offset = 0x90000;
  r.crash_safe = {true, false, true, true, false, false, false, false, true};
  h.fleece_bitmaps = r;
  h.autoclear_features |= kAutoclearFleeceBitmaps;
  auto bytes = serialize_header(h);
  ASSERT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  auto back = parse_header(*bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  ASSERT_TRUE(back->fleece_bitmaps);
  EXPECT_EQ(*back->fleece_bitmaps, r);
  EXPECT_EQ(back->autoclear_features & kAutoclearFleeceBitmaps, kAutoclearFleeceBitmaps);
  EXPECT_TRUE(back->unknown_extensions.empty());
  // The feature table names fleece's bit for other programs.
  EXPECT_NE(describe_features(*back, 2, kAutoclearFleeceBitmaps).find("fleece crash-safe bitmaps"),
            std::string::npos);
}

TEST(FleeceRecordTest, MalformedAndOtherVersions) {
  Header h = fresh_header();
  h.fleece_bitmaps = FleeceBitmapsRecord{0x90000, {true, true}};
  auto bytes = serialize_header(h).value();
  // Find the extension: type, length.
  size_t at = 0;
  for (size_t off = 112; off + 8 <= bytes.size(); off += 8) {
    if (load_be32(bytes.data() + off) == kExtFleeceBitmaps) {
      at = off;
      break;
    }
  }
  ASSERT_NE(at, 0u);
  EXPECT_EQ(load_be32(bytes.data() + at + 4), 17u);  // 16 + one mask byte
  auto expect_bad = [&](std::vector<std::byte> b, const std::string& what) {
    auto p = parse_header(b);
    ASSERT_FALSE(p.is_ok()) << what;
    EXPECT_NE(p.status().message().find(what), std::string::npos) << p.status().message();
  };
  auto b = bytes;
  b[at + 8 + 16] = std::byte{0x07};  // bit 2 set, past 2 entries
  expect_bad(b, "bits set past");
  b = bytes;
  store_be32(b.data() + at + 8 + 4, 100);  // 100 entries need 13 mask bytes
  expect_bad(b, "expected 29");
  b = bytes;
  store_be32(b.data() + at + 8 + 4, 70000);
  expect_bad(b, "more than 65535");
  // Another version: kept verbatim, not trusted, and replaced by a record fleece writes.
  b = bytes;
  store_be32(b.data() + at + 8, 2);
  auto p = parse_header(b);
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_FALSE(p->fleece_bitmaps);
  ASSERT_EQ(p->unknown_extensions.size(), 1u);
  EXPECT_EQ(p->unknown_extensions[0].type, kExtFleeceBitmaps);
  auto again = serialize_header(*p);
  ASSERT_TRUE(again.is_ok());
  EXPECT_FALSE(parse_header(*again)->fleece_bitmaps);  // still only the v2 one
  p->fleece_bitmaps = FleeceBitmapsRecord{0x10000, {true}};
  auto replaced = parse_header(serialize_header(*p).value());
  ASSERT_TRUE(replaced.is_ok()) << replaced.status().to_string();
  EXPECT_TRUE(replaced->fleece_bitmaps);
  EXPECT_TRUE(replaced->unknown_extensions.empty());
  // A v2 header cannot carry it.
  Header v2;
  v2.version = 2;
  v2.fleece_bitmaps = FleeceBitmapsRecord{};
  EXPECT_FALSE(serialize_header(v2).is_ok());
}

// ---- QEMU's directories ----

TEST(BitmapDirectoryQemuTest, ParsesQemuImgBitmaps) {
  if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  fleece_test::TempDir dir;
  const std::string img = dir.file("b.qcow2");
  using fleece_test::sq;
  auto r = fleece_test::shell("qemu-img create -q -f qcow2 " + sq(img) + " 100M && "
                              "qemu-img bitmap --add -g 512 " + sq(img) + " fine && "
                              "qemu-img bitmap --add --disable " + sq(img) + " off && "
                              "qemu-img bitmap --add -g 2M " + sq(img) + " coarse");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto file = fleece_test::read_whole_file(img);
  auto h = parse_header(std::span(file).first(65536));
  ASSERT_TRUE(h.is_ok() && h->bitmaps) << h.status().to_string();
  auto d = parse_bitmap_directory(
      std::span(file).subspan(h->bitmaps->directory_offset, h->bitmaps->directory_size),
      h->bitmaps->nb_bitmaps, h->cluster_size(), h->size);
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  ASSERT_EQ(d->size(), 3u);
  EXPECT_EQ((*d)[0].name, "fine");
  EXPECT_EQ((*d)[0].granularity(), 512u);
  EXPECT_TRUE((*d)[0].auto_flag());
  EXPECT_EQ((*d)[0].table_size, bitmap_table_entries_for(100 << 20, 512, 65536));
  EXPECT_EQ((*d)[1].name, "off");
  EXPECT_FALSE((*d)[1].auto_flag());
  EXPECT_EQ((*d)[1].granularity(), 65536u);
  EXPECT_EQ((*d)[2].granularity(), 2u << 20);
  for (const BitmapDirEntry& e : *d) {
    EXPECT_FALSE(e.in_use());
    auto raw = std::span(file).subspan(e.table_offset, uint64_t{e.table_size} * 8);
    auto t = parse_bitmap_table(raw, h->cluster_size(), e.name);
    ASSERT_TRUE(t.is_ok()) << t.status().to_string();
    for (uint64_t x : *t) EXPECT_EQ(x, 0u);  // empty bitmaps allocate no data
  }
  // Our encoding of QEMU's entries is QEMU's bytes.
  auto again = serialize_bitmap_directory(*d, h->cluster_size(), h->size);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(std::equal(again->begin(), again->end(),
                         file.begin() + static_cast<long>(h->bitmaps->directory_offset)));
}

}  // namespace
}  // namespace blockcore::qcow2
