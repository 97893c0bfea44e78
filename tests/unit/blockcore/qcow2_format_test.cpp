// The qcow2 header codec against images made by qemu-img (every option that shows in
// the header), byte-exact round trips, and hostile headers that must fail cleanly.
#include "blockcore/qcow2/qcow2_format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/image_creator.h"
#include "qcow2_test_util.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

using fleece_test::read_whole_file;
using fleece_test::shell;
using fleece_test::sq;
using fleece_test::TempDir;

class Qcow2FormatQemuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  }
  // Creates an image with qemu-img and returns its parsed header (and its bytes).
  Header create(const std::string& opts, const std::string& size = "1G",
                const std::string& extra = "") {
    path_ = dir_.file("img" + std::to_string(n_++) + ".qcow2");
    auto r = shell("qemu-img create -f qcow2 " + opts + " " + sq(path_) + " " + size + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    bytes_ = read_whole_file(path_);
    if (bytes_.size() > kHeaderReadLimit) bytes_.resize(kHeaderReadLimit);
    auto h = parse_header(bytes_);
    EXPECT_TRUE(h.is_ok()) << h.status().to_string();
    if (!h) return Header{};
    check_round_trip(*h);
    return *h;
  }
  // serialize(parse(x)) reproduces QEMU's bytes, and parses back to the same header.
  void check_round_trip(const Header& h) {
    auto out = serialize_header(h);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    ASSERT_LE(out->size(), bytes_.size());
    EXPECT_TRUE(std::equal(out->begin(), out->end(), bytes_.begin())) << "header bytes differ";
    for (size_t i = out->size(); i < std::min<size_t>(bytes_.size(), h.cluster_size()); ++i) {
      ASSERT_EQ(bytes_[i], std::byte{0}) << "unexpected data after the header at " << i;
    }
    auto again = parse_header(*out);
    ASSERT_TRUE(again.is_ok()) << again.status().to_string();
    expect_same(h, *again);
  }
  static void expect_same(const Header& a, const Header& b) {
    EXPECT_EQ(a.version, b.version);
    EXPECT_EQ(a.cluster_bits, b.cluster_bits);
    EXPECT_EQ(a.size, b.size);
    EXPECT_EQ(a.l1_size, b.l1_size);
    EXPECT_EQ(a.l1_table_offset, b.l1_table_offset);
    EXPECT_EQ(a.refcount_table_offset, b.refcount_table_offset);
    EXPECT_EQ(a.refcount_table_clusters, b.refcount_table_clusters);
    EXPECT_EQ(a.nb_snapshots, b.nb_snapshots);
    EXPECT_EQ(a.snapshots_offset, b.snapshots_offset);
    EXPECT_EQ(a.incompatible_features, b.incompatible_features);
    EXPECT_EQ(a.compatible_features, b.compatible_features);
    EXPECT_EQ(a.autoclear_features, b.autoclear_features);
    EXPECT_EQ(a.refcount_order, b.refcount_order);
    EXPECT_EQ(a.header_length, b.header_length);
    EXPECT_EQ(a.compression_type, b.compression_type);
    EXPECT_EQ(a.backing_file, b.backing_file);
    EXPECT_EQ(a.backing_format, b.backing_format);
    EXPECT_EQ(a.data_file, b.data_file);
    EXPECT_EQ(a.feature_names.size(), b.feature_names.size());
    EXPECT_EQ(a.bitmaps.has_value(), b.bitmaps.has_value());
    EXPECT_EQ(a.unknown_extensions.size(), b.unknown_extensions.size());
    EXPECT_EQ(a.unknown_header_fields, b.unknown_header_fields);
  }

  TempDir dir_;
  std::string path_;
  std::vector<std::byte> bytes_;
  int n_ = 0;
};

TEST_F(Qcow2FormatQemuTest, DefaultV3Image) {
  const Header h = create("", "1G");
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.cluster_bits, 16u);
  EXPECT_EQ(h.size, 1ull << 30);
  EXPECT_EQ(h.crypt_method, 0u);
  EXPECT_EQ(h.l1_size, 2u);  // 512 MiB per L2 table
  EXPECT_EQ(h.l1_table_offset, 0x30000u);
  EXPECT_EQ(h.refcount_table_offset, 0x10000u);
  EXPECT_EQ(h.refcount_table_clusters, 1u);
  EXPECT_EQ(h.nb_snapshots, 0u);
  EXPECT_EQ(h.snapshots_offset, 0u);
  EXPECT_EQ(h.incompatible_features, 0u);
  EXPECT_EQ(h.compatible_features, 0u);
  EXPECT_EQ(h.autoclear_features, 0u);
  EXPECT_EQ(h.refcount_order, 4u);
  EXPECT_EQ(h.header_length, 112u);
  EXPECT_EQ(h.compression_type, CompressionType::kDeflate);
  EXPECT_TRUE(h.backing_file.empty());
  EXPECT_FALSE(h.backing_format);
  EXPECT_FALSE(h.data_file);
  EXPECT_FALSE(h.bitmaps);
  EXPECT_TRUE(h.unknown_extensions.empty());
  // QEMU's feature table names the same bits ours does (ours adds fleece's own bit).
  std::vector<FeatureName> ours = default_feature_names();
  std::erase_if(ours, [](const FeatureName& f) { return f.type == 2 && f.bit == 63; });
  ASSERT_EQ(ours.size() + 1, default_feature_names().size());
  ASSERT_EQ(h.feature_names.size(), ours.size());
  for (const FeatureName& f : ours) {
    bool found = false;
    for (const FeatureName& q : h.feature_names) {
      found |= (q.type == f.type && q.bit == f.bit && q.name == f.name);
    }
    EXPECT_TRUE(found) << f.name;
  }
}

TEST_F(Qcow2FormatQemuTest, V2Image) {
  const Header h = create("-o compat=0.10", "100M");
  EXPECT_EQ(h.version, 2u);
  EXPECT_EQ(h.header_length, 72u);
  EXPECT_EQ(h.refcount_order, 4u);
  EXPECT_EQ(h.incompatible_features | h.compatible_features | h.autoclear_features, 0u);
  EXPECT_TRUE(h.feature_names.empty());
  EXPECT_EQ(h.size, 100ull << 20);
  EXPECT_EQ(h.l1_size, 1u);
}

TEST_F(Qcow2FormatQemuTest, V2WithBacking) {
  const std::string base = dir_.file("base.raw");
  ASSERT_EQ(shell("qemu-img create -f raw " + sq(base) + " 64M").exit_code, 0);
  const Header h = create("-o compat=0.10 -b " + sq(base) + " -F raw", "");
  EXPECT_EQ(h.version, 2u);
  EXPECT_EQ(h.backing_file, base);
  EXPECT_EQ(h.backing_format, std::optional<std::string>("raw"));
  EXPECT_EQ(h.size, 64ull << 20);
}

TEST_F(Qcow2FormatQemuTest, ClusterSizes) {
  for (auto [size, bits] : {std::pair{"512", 9u}, {"64k", 16u}, {"2M", 21u}}) {
    const Header h = create(std::string("-o cluster_size=") + size, "3G");
    EXPECT_EQ(h.cluster_bits, bits) << size;
    const Geometry g = Geometry::from(h);
    EXPECT_EQ(h.l1_size, g.l1_entries_for(3ull << 30)) << size;
    EXPECT_EQ(h.refcount_table_offset, g.cluster_size) << size;
    if (bits == 9) {
      EXPECT_TRUE(h.feature_names.empty());  // no room in a 512-byte cluster
    }
  }
}

TEST_F(Qcow2FormatQemuTest, RefcountWidths) {
  for (auto [rb, order] : {std::pair{1, 0u}, {8, 3u}, {64, 6u}}) {
    const Header h = create("-o refcount_bits=" + std::to_string(rb));
    EXPECT_EQ(h.refcount_order, order);
    EXPECT_EQ(h.refcount_bits(), static_cast<uint32_t>(rb));
  }
}

TEST_F(Qcow2FormatQemuTest, ExtendedL2) {
  const Header h = create("-o extended_l2=on,cluster_size=128k");
  EXPECT_TRUE(h.extended_l2());
  EXPECT_EQ(h.incompatible_features, kIncompatExtendedL2);
  EXPECT_EQ(h.cluster_bits, 17u);
  const Geometry g = Geometry::from(h);
  EXPECT_EQ(g.l2_entry_bytes, 16u);
  EXPECT_EQ(g.subclusters, 32u);
  EXPECT_EQ(h.l1_size, g.l1_entries_for(h.size));
}

TEST_F(Qcow2FormatQemuTest, LazyRefcounts) {
  const Header h = create("-o lazy_refcounts=on");
  EXPECT_EQ(h.compatible_features, kCompatLazyRefcounts);
  EXPECT_EQ(h.incompatible_features, 0u);
}

TEST_F(Qcow2FormatQemuTest, ZstdCompression) {
  const Header h = create("-o compression_type=zstd");
  EXPECT_EQ(h.compression_type, CompressionType::kZstd);
  EXPECT_EQ(h.incompatible_features, kIncompatCompression);
}

TEST_F(Qcow2FormatQemuTest, ExternalDataFile) {
  Header h = create("-o data_file=" + sq(dir_.file("data.raw")));
  EXPECT_TRUE(h.has_data_file());
  EXPECT_FALSE(h.data_file_raw());
  EXPECT_EQ(h.data_file, std::optional<std::string>(dir_.file("data.raw")));
  h = create("-o data_file=" + sq(dir_.file("data2.raw")) + ",data_file_raw=on");
  EXPECT_TRUE(h.has_data_file());
  EXPECT_TRUE(h.data_file_raw());
  EXPECT_EQ(h.autoclear_features, kAutoclearDataFileRaw);
}

TEST_F(Qcow2FormatQemuTest, BackingFiles) {
  const std::string raw = dir_.file("base.raw");
  ASSERT_EQ(shell("qemu-img create -f raw " + sq(raw) + " 10M").exit_code, 0);
  Header h = create("-b " + sq(raw) + " -F raw", "");
  EXPECT_EQ(h.backing_file, raw);
  EXPECT_EQ(h.backing_format, std::optional<std::string>("raw"));
  EXPECT_EQ(h.backing_file_size, raw.size());
  EXPECT_EQ(h.size, 10ull << 20);
  const std::string base = path_;
  h = create("-b " + sq(base) + " -F qcow2", "20M");
  EXPECT_EQ(h.backing_file, base);
  EXPECT_EQ(h.backing_format, std::optional<std::string>("qcow2"));
  EXPECT_EQ(h.size, 20ull << 20);
}

TEST_F(Qcow2FormatQemuTest, BitmapsExtension) {
  create("", "64M");
  auto r = shell("qemu-img bitmap --add " + sq(path_) + " b0 && qemu-img bitmap --add " +
                 sq(path_) + " b1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  bytes_ = read_whole_file(path_);
  auto h = parse_header(bytes_);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  ASSERT_TRUE(h->bitmaps);
  EXPECT_EQ(h->bitmaps->nb_bitmaps, 2u);
  EXPECT_EQ(h->bitmaps->directory_offset % h->cluster_size(), 0u);
  EXPECT_GT(h->bitmaps->directory_size, 0u);
  EXPECT_EQ(h->autoclear_features, kAutoclearBitmaps);
  check_round_trip(*h);
}

TEST_F(Qcow2FormatQemuTest, ShortFileReadToEnd) {
  // A header read from a file shorter than one cluster (only the first 4 KiB given).
  create("-o cluster_size=2M", "1G");
  auto h = parse_header(std::span(bytes_).first(4096));
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->cluster_bits, 21u);
}

// ---- hostile headers, built from a header fleeced lays out itself ----

class Qcow2FormatHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CreateOptions o;
    o.size = 1ull << 30;
    auto layout = layout_new_image(o);
    ASSERT_TRUE(layout.is_ok());
    b_ = (*layout)[0].bytes;  // cluster 0, 64 KiB
    ASSERT_TRUE(parse_header(b_).is_ok());
  }
  void put32(size_t off, uint32_t v) { store_be32(b_.data() + off, v); }
  void put64(size_t off, uint64_t v) { store_be64(b_.data() + off, v); }
  // Replaces the extension area (after the 112-byte header) with `exts` + end marker.
  void set_extensions(const std::vector<std::pair<uint32_t, std::vector<std::byte>>>& exts) {
    std::fill(b_.begin() + 112, b_.end(), std::byte{0});
    size_t off = 112;
    for (const auto& [type, data] : exts) {
      put32(off, type);
      put32(off + 4, static_cast<uint32_t>(data.size()));
      std::copy(data.begin(), data.end(), b_.begin() + static_cast<long>(off) + 8);
      off += 8 + ((data.size() + 7) & ~size_t{7});
    }
  }
  static std::vector<std::byte> str(const std::string& s) {
    std::vector<std::byte> v;
    for (char c : s) v.push_back(static_cast<std::byte>(c));
    return v;
  }
  static std::vector<std::byte> feature(uint8_t type, uint8_t bit, const std::string& name) {
    std::vector<std::byte> v(48);
    v[0] = std::byte{type};
    v[1] = std::byte{bit};
    for (size_t i = 0; i < name.size(); ++i) v[2 + i] = static_cast<std::byte>(name[i]);
    return v;
  }
  // Expects parse_header to fail with `code` and a message containing `what`.
  void expect_fail(int code, const std::string& what) {
    auto h = parse_header(b_);
    ASSERT_FALSE(h.is_ok()) << "accepted a header that should fail with: " << what;
    EXPECT_EQ(h.status().code(), code) << h.status().message();
    EXPECT_NE(h.status().message().find(what), std::string::npos) << h.status().message();
  }

  std::vector<std::byte> b_;
};

TEST_F(Qcow2FormatHostileTest, FixedFields) {
  auto orig = b_;
  put32(0, 0x514649fa);                   expect_fail(EINVAL, "magic");        b_ = orig;
  put32(4, 1);                            expect_fail(ENOTSUP, "version 1");   b_ = orig;
  put32(4, 4);                            expect_fail(ENOTSUP, "version 4");   b_ = orig;
  put32(20, 8);                           expect_fail(EINVAL, "cluster_bits 8"); b_ = orig;
  put32(20, 22);                          expect_fail(EINVAL, "cluster_bits 22"); b_ = orig;
  put32(36, 0x10000000);                  expect_fail(EINVAL, "L1 table");     b_ = orig;
  put64(24, 1ull << 40);                  expect_fail(EINVAL, "too small");    b_ = orig;
  put64(24, (1ull << 61) + 512);          expect_fail(EINVAL, "virtual size"); b_ = orig;
  put64(40, 0x30200);                     expect_fail(EINVAL, "L1 table offset"); b_ = orig;
  put64(40, 0);                           expect_fail(EINVAL, "overlap");      b_ = orig;
  put64(40, 0x8000000000000000ull);       expect_fail(EINVAL, "largest file offset"); b_ = orig;
  put64(48, 0x10001);                     expect_fail(EINVAL, "refcount table offset"); b_ = orig;
  put32(56, 0);                           expect_fail(EINVAL, "no refcount table"); b_ = orig;
  put32(56, 1000);                        expect_fail(EINVAL, "refcount table of 1000"); b_ = orig;
  put32(60, 70000);                       expect_fail(EINVAL, "70000 snapshots"); b_ = orig;
  put32(60, 1); put64(64, 0x10008);       expect_fail(EINVAL, "snapshot table offset"); b_ = orig;
  put32(32, 1);                           expect_fail(ENOTSUP, "AES");         b_ = orig;
  put32(32, 2);                           expect_fail(ENOTSUP, "LUKS");        b_ = orig;
  put32(32, 3);                           expect_fail(EINVAL, "encryption method 3"); b_ = orig;
  put32(96, 7);                           expect_fail(EINVAL, "refcount_order 7"); b_ = orig;
  put32(100, 100);                        expect_fail(EINVAL, "header_length 100"); b_ = orig;
  put32(100, 108);                        expect_fail(EINVAL, "header_length 108"); b_ = orig;
  put32(100, 0x20000);                    expect_fail(EINVAL, "past cluster 0"); b_ = orig;
  put64(72, kIncompatExtendedL2); put32(20, 13);
  put32(36, 1u << 16);                    expect_fail(EINVAL, "extended L2");  b_ = orig;
  b_[104] = std::byte{1};                 expect_fail(EINVAL, "compression type 1"); b_ = orig;
  put64(72, kIncompatCompression);        expect_fail(EINVAL, "deflate");      b_ = orig;
  put64(72, kIncompatCompression); b_[104] = std::byte{2};
                                          expect_fail(ENOTSUP, "compression type 2"); b_ = orig;
  put64(88, kAutoclearDataFileRaw);       expect_fail(EINVAL, "raw external data"); b_ = orig;
  auto r = parse_header(std::span(b_).first(50));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  r = parse_header(std::span(b_).first(90));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("shorter than a v3 header"), std::string::npos);
}

TEST_F(Qcow2FormatHostileTest, UnknownIncompatibleBitsAreNamed) {
  set_extensions({{kExtFeatureTable, feature(0, 5, "frobnication")}});
  put64(72, 1ull << 5);
  expect_fail(ENOTSUP, "frobnication (bit 5)");
  put64(72, 1ull << 9);
  expect_fail(ENOTSUP, "bit 9");
  // Unknown compatible and autoclear bits are fine.
  put64(72, 0);
  put64(80, 1ull << 7);
  put64(88, 1ull << 5);
  EXPECT_TRUE(parse_header(b_).is_ok());
}

TEST_F(Qcow2FormatHostileTest, Extensions) {
  set_extensions({{kExtBackingFormat, str("raw")}, {kExtBackingFormat, str("raw")}});
  expect_fail(EINVAL, "duplicate backing format");
  set_extensions({{kExtDataFile, str("a")}, {kExtDataFile, str("b")}});
  put64(72, kIncompatDataFile);
  expect_fail(EINVAL, "duplicate external data file name");
  set_extensions({{kExtDataFile, str("a")}});
  put64(72, 0);
  expect_fail(EINVAL, "without the external data file bit");
  set_extensions({{kExtFeatureTable, std::vector<std::byte>(50)}});
  expect_fail(EINVAL, "multiple of 48");
  set_extensions({{kExtBitmaps, std::vector<std::byte>(16)}});
  expect_fail(EINVAL, "expected 24");
  set_extensions({{kExtBitmaps, std::vector<std::byte>(24)}});
  expect_fail(EINVAL, "0 bitmaps");
  set_extensions({{kExtCryptoHeader, std::vector<std::byte>(16)}});
  expect_fail(EINVAL, "without LUKS");
  set_extensions({{kExtBackingFormat, str("raw")}});
  expect_fail(EINVAL, "without a backing file");
  // An extension whose length runs past cluster 0.
  set_extensions({});
  put32(112, 0x12345678);
  put32(116, 0xfffffff0);
  expect_fail(EINVAL, "runs past the end of the extension area");
  // An extension area (ending where the backing name starts) too short for an
  // extension header.
  set_extensions({});
  put64(8, 116);
  put32(16, 4);
  std::memcpy(b_.data() + 116, "abcd", 4);
  expect_fail(EINVAL, "cut off");
}

TEST_F(Qcow2FormatHostileTest, BackingName) {
  set_extensions({});
  put64(8, b_.size() - 4);
  put32(16, 10);
  expect_fail(EINVAL, "past cluster 0");
  put64(8, 200);
  put32(16, 2000);
  expect_fail(EINVAL, "1023");
  put64(8, 64);
  put32(16, 4);
  expect_fail(EINVAL, "inside the header");
  put64(8, 200);
  put32(16, 3);
  b_[200] = std::byte{'a'};
  b_[201] = std::byte{0};
  b_[202] = std::byte{'b'};
  expect_fail(EINVAL, "NUL");
  b_[201] = std::byte{'x'};
  auto h = parse_header(b_);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->backing_file, "axb");
  // An extension may not run into the backing name.
  set_extensions({{0x11111111, std::vector<std::byte>(100)}});
  std::memcpy(b_.data() + 200, "axb", 3);
  expect_fail(EINVAL, "runs past the end of the extension area");
}

TEST_F(Qcow2FormatHostileTest, UnknownExtensionsAndFieldsKeptVerbatim) {
  // header_length 120: a future field at 112 and a nonzero padding byte at 107.
  std::fill(b_.begin() + 112, b_.end(), std::byte{0});
  put32(100, 120);
  b_[107] = std::byte{0x5a};
  put64(112, 0x1122334455667788ull);
  size_t off = 120;
  for (uint32_t type : {0x99990001u, 0x99990002u, 0x99990001u}) {
    put32(off, type);
    put32(off + 4, 5);
    for (int i = 0; i < 5; ++i) b_[off + 8 + i] = static_cast<std::byte>(type + i);
    off += 16;
  }
  put32(off, kExtBackingFormat);
  put32(off + 4, 3);
  std::memcpy(b_.data() + off + 8, "raw", 3);
  off += 16 + 8;  // backing format, end marker
  put64(8, off);
  put32(16, 4);
  std::memcpy(b_.data() + off, "base", 4);
  auto h = parse_header(b_);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  ASSERT_EQ(h->unknown_extensions.size(), 3u);
  EXPECT_EQ(h->unknown_extensions[0].type, 0x99990001u);
  EXPECT_EQ(h->unknown_extensions[1].type, 0x99990002u);
  EXPECT_EQ(h->unknown_extensions[2].type, 0x99990001u);
  EXPECT_EQ(h->unknown_extensions[1].data.size(), 5u);
  EXPECT_EQ(h->unknown_extensions[1].data[4], static_cast<std::byte>(0x99990002u + 4));
  ASSERT_EQ(h->unknown_header_fields.size(), 15u);
  EXPECT_EQ(h->unknown_header_fields[2], std::byte{0x5a});
  EXPECT_EQ(h->backing_file, "base");
  auto out = serialize_header(*h);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  auto h2 = parse_header(*out);
  ASSERT_TRUE(h2.is_ok()) << h2.status().to_string();
  EXPECT_EQ(h2->header_length, 120u);
  EXPECT_EQ(h2->unknown_header_fields, h->unknown_header_fields);
  ASSERT_EQ(h2->unknown_extensions.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(h2->unknown_extensions[i].type, h->unknown_extensions[i].type);
    EXPECT_EQ(h2->unknown_extensions[i].data, h->unknown_extensions[i].data);
  }
  // Fleeced writes backing format first, then the default order (unknown ones last).
  EXPECT_EQ(load_be32(out->data() + 120), kExtBackingFormat);
  EXPECT_EQ(h2->backing_file, "base");
  EXPECT_EQ(h2->backing_format, std::optional<std::string>("raw"));
}

TEST_F(Qcow2FormatHostileTest, RandomCorruptionNeverCrashes) {
  std::mt19937_64 rng(42);
  const auto orig = b_;
  int accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    b_ = orig;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      const size_t pos = rng() % (iter % 2 ? 128 : 1024);
      b_[pos] = static_cast<std::byte>(rng());
    }
    const size_t len = (iter % 7 == 0) ? rng() % b_.size() : b_.size();
    auto h = parse_header(std::span(b_).first(len));
    if (h.is_ok()) {
      ++accepted;
      auto out = serialize_header(*h);
      if (out.is_ok()) {
        EXPECT_TRUE(parse_header(*out).is_ok());
      }
    } else {
      EXPECT_TRUE(h.status().code() == EINVAL || h.status().code() == ENOTSUP);
      EXPECT_FALSE(h.status().message().empty());
    }
  }
  EXPECT_GT(accepted, 0);
}

TEST(Qcow2FormatTest, SerializeRejectsWhatDoesNotFit) {
  Header h;
  h.cluster_bits = 9;
  h.backing_file = std::string(1000, 'x');
  auto out = serialize_header(h);
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().message().find("do not fit"), std::string::npos);
  h.backing_file = std::string(1024, 'x');
  EXPECT_FALSE(serialize_header(h).is_ok());
  Header v2;
  v2.version = 2;
  v2.incompatible_features = kIncompatDirty;
  EXPECT_FALSE(serialize_header(v2).is_ok());
  v2.incompatible_features = 0;
  v2.feature_names = default_feature_names();  // silently dropped in v2
  auto v2out = serialize_header(v2);
  ASSERT_TRUE(v2out.is_ok());
  EXPECT_EQ(v2out->size(), 72u + 8u);
}

TEST(Qcow2FormatTest, DescribeFeatures) {
  Header h;
  EXPECT_EQ(describe_features(h, 0, kIncompatDirty | kIncompatCorrupt),
            "dirty bit (bit 0), corrupt bit (bit 1)");
  EXPECT_EQ(describe_features(h, 2, kAutoclearBitmaps), "bitmaps (bit 0)");
  EXPECT_EQ(describe_features(h, 1, 1ull << 63), "bit 63");
  h.feature_names.push_back({0, 0, "custom dirty"});
  EXPECT_EQ(describe_features(h, 0, 1), "custom dirty (bit 0)");
  EXPECT_EQ(describe_features(h, 0, 0), "");
}

}  // namespace
}  // namespace blockcore::qcow2
