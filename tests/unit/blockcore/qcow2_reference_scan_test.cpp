// The reference scan against images made by qemu-img/qemu-io: for every image
// `qemu-img check` calls clean, the references counted for each host cluster equal its
// stored refcount and no problem is reported; corrupt images report problems without
// crashing; a refcount bumped by hand shows as refs lower than stored for that cluster.
#include "blockcore/qcow2/reference_scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "blockcore/base/big_endian.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/qcow2/cluster_entry.h"
#include "blockcore/qcow2/refcount_codec.h"
#include "qcow2_test_util.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

using fleece_test::read_whole_file;
using fleece_test::run_task;
using fleece_test::shell;
using fleece_test::sq;
using fleece_test::TempDir;

// An image's metadata, decoded from its bytes by the test itself.
struct Image {
  std::vector<std::byte> bytes;
  Header h;
  Geometry g;
  std::vector<uint64_t> l1, rt;
  std::vector<SnapshotEntry> snapshots;

  uint64_t stored_refcount(uint64_t cluster) const {
    const uint64_t idx = cluster >> g.refblock_bits;
    if (idx >= rt.size()) return 0;
    const uint64_t block = rt[idx] & ~uint64_t{0x1ff};
    if (block == 0) return 0;
    std::span<const std::byte> b(bytes.data() + block, g.cluster_size);
    return get_refcount(b, g.refcount_order, cluster & (g.refblock_entries - 1));
  }
};

bool mentions(const ReferenceScan& s, const std::string& word) {
  return std::any_of(s.problems.begin(), s.problems.end(),
                     [&](const std::string& p) { return p.find(word) != std::string::npos; });
}

std::string all_problems(const ReferenceScan& s) {
  std::string out;
  for (const std::string& p : s.problems) out += "  " + p + "\n";
  return out;
}

class ReferenceScanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img/qemu-io not installed";
  }

  std::string path(const std::string& name) const { return dir_.file(name); }

  static void run(const std::string& cmd) {
    auto r = shell(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  }
  void create(const std::string& img, const std::string& opts, const std::string& size = "64M") {
    run("qemu-img create -q -f qcow2 " + opts + " " + sq(img) + " " + size);
  }
  void io(const std::string& img, const std::string& cmds) {
    run("qemu-io -f qcow2 " + cmds + " " + sq(img));
  }

  static Image load(const std::string& img) {
    Image m;
    m.bytes = read_whole_file(img);
    auto h = parse_header(std::span<const std::byte>(m.bytes).first(
        std::min<size_t>(m.bytes.size(), kHeaderReadLimit)));
    EXPECT_TRUE(h.is_ok()) << h.status().to_string();
    if (!h) return m;
    m.h = *h;
    m.g = Geometry::from(m.h);
    for (uint32_t i = 0; i < m.h.l1_size; ++i) {
      m.l1.push_back(load_be64(m.bytes.data() + m.h.l1_table_offset + i * 8));
    }
    const uint64_t rt_entries = (uint64_t{m.h.refcount_table_clusters} << m.h.cluster_bits) / 8;
    for (uint64_t i = 0; i < rt_entries; ++i) {
      m.rt.push_back(load_be64(m.bytes.data() + m.h.refcount_table_offset + i * 8));
    }
    if (m.h.nb_snapshots > 0) {
      auto s = parse_snapshot_table(
          std::span<const std::byte>(m.bytes).subspan(m.h.snapshots_offset), m.h.nb_snapshots,
          m.g);
      EXPECT_TRUE(s.is_ok()) << s.status().to_string();
      if (s) m.snapshots = *s;
    }
    return m;
  }

  ReferenceScan scan(const std::string& img, const Image& m) {
    NodeSpec spec;
    spec.node_name = "f0";
    spec.driver = "file";
    spec.read_only = true;
    spec.file.filename = img;
    auto node = FileNode::open(spec, pool_);
    EXPECT_TRUE(node.is_ok()) << node.status().to_string();
    if (!node) return {};
    auto r = run_task(scan_references(**node, m.h, m.g, m.l1, m.rt, m.snapshots));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r) return {};
    return std::move(r).value();
  }

  // qemu-img check says clean; the scan agrees with every stored refcount.
  ReferenceScan expect_clean(const std::string& img) {
    run("qemu-img check -q " + sq(img));
    const Image m = load(img);
    ReferenceScan s = scan(img, m);
    EXPECT_TRUE(s.problems.empty()) << all_problems(s);
    const uint64_t clusters = (m.bytes.size() + m.g.cluster_size - 1) / m.g.cluster_size;
    EXPECT_EQ(s.refs.size(), clusters);
    // Every cluster of the file and every cluster an existing refcount block describes.
    uint64_t mismatches = 0;
    const auto compare = [&](uint64_t c) {
      const uint64_t refs = c < s.refs.size() ? s.refs[c] : 0;
      const uint64_t stored = m.stored_refcount(c);
      if (refs != stored && ++mismatches <= 10) {
        ADD_FAILURE() << "cluster " << c << " (offset 0x" << std::hex
                      << (c << m.g.cluster_bits) << std::dec << "): refs " << refs
                      << ", stored " << stored;
      }
    };
    for (uint64_t c = 0; c < clusters; ++c) compare(c);
    for (uint64_t i = 0; i < m.rt.size(); ++i) {
      if (m.rt[i] == 0) continue;
      const uint64_t first = std::max(clusters, i * m.g.refblock_entries);
      for (uint64_t c = first; c < (i + 1) * m.g.refblock_entries; ++c) compare(c);
    }
    EXPECT_EQ(mismatches, 0u);
    return s;
  }

  // The first L2 table the active L1 refers to.
  static uint64_t first_l2(const Image& m) {
    for (uint64_t e : m.l1) {
      if (e & kOffsetMask) return e & kOffsetMask;
    }
    ADD_FAILURE() << "no L2 table";
    return 0;
  }

  static void patch64(const std::string& img, uint64_t off, uint64_t value) {
    std::byte b[8];
    store_be64(b, value);
    std::fstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(off));
    f.write(reinterpret_cast<const char*>(b), 8);
    ASSERT_TRUE(f.good());
  }

  TempDir dir_;
  io::BlockingPool pool_{0};
};

TEST_F(ReferenceScanTest, FreshImage) {
  const std::string img = path("fresh.qcow2");
  create(img, "");
  ReferenceScan s = expect_clean(img);
  EXPECT_EQ(s.l2_tables, 0u);
  EXPECT_EQ(s.data_clusters, 0u);
}

TEST_F(ReferenceScanTest, DataWrittenByQemuIo) {
  const std::string img = path("data.qcow2");
  create(img, "");
  io(img, "-c 'write -P 1 0 64k' -c 'write -P 2 100k 4k' -c 'write -P 3 1M 300k' "
          "-c 'write -P 4 63M 1k' -c 'write -P 5 700k 1'");
  ReferenceScan s = expect_clean(img);
  EXPECT_EQ(s.l2_tables, 1u);
  EXPECT_EQ(s.data_clusters, 1u + 1 + 5 + 1 + 1);
}

TEST_F(ReferenceScanTest, Version2Image) {
  const std::string img = path("v2.qcow2");
  create(img, "-o compat=0.10");
  io(img, "-c 'write -P 1 0 200k' -c 'write -P 2 9M 4k'");
  run("qemu-img snapshot -c s1 " + sq(img));
  io(img, "-c 'write -P 3 0 4k' -c 'write -P 4 20M 4k'");
  expect_clean(img);
}

TEST_F(ReferenceScanTest, ZeroClusters) {
  const std::string img = path("zero.qcow2");
  create(img, "");
  io(img, "-c 'write -P 1 0 1M' -c 'write -z 0 128k' -c 'write -z -u 256k 64k' "
          "-c 'write -z 10M 128k' -c 'write -z 40M 64k'");
  expect_clean(img);
}

TEST_F(ReferenceScanTest, CompressedDeflateAndZstd) {
  const std::string raw = path("src.raw");
  run("qemu-img create -q -f raw " + sq(raw) + " 8M");
  run("qemu-io -f raw -c 'write -P 7 0 1M' -c 'write -P 9 2M 100k' -c 'write -P 0 3M 64k' " +
      sq(raw));
  // Random data compresses badly: clusters whose compressed bytes span host clusters.
  run("head -c 1048576 /dev/urandom | dd of=" + sq(raw) +
      " bs=64k seek=80 conv=notrunc status=none");
  for (const std::string type : {"zlib", "zstd"}) {
    const std::string img = path("c-" + type + ".qcow2");
    run("qemu-img convert -c -O qcow2 -o compression_type=" + type + " " + sq(raw) + " " +
        sq(img));
    ReferenceScan s = expect_clean(img);
    EXPECT_GT(s.data_clusters, 16u);
    // Overwrite part of a compressed cluster: it gets a normal cluster.
    io(img, "-c 'write -P 3 4k 4k' -c 'write -c -P 5 6M 64k'");
    expect_clean(img);
  }
}

TEST_F(ReferenceScanTest, InternalSnapshots) {
  const std::string img = path("snap.qcow2");
  create(img, "");
  io(img, "-c 'write -P 1 0 256k' -c 'write -P 2 20M 64k'");
  run("qemu-img snapshot -c s1 " + sq(img));
  io(img, "-c 'write -P 3 64k 64k' -c 'write -P 4 30M 64k' -c 'write -z 20M 64k'");
  run("qemu-img snapshot -c s2 " + sq(img));
  io(img, "-c 'write -P 5 0 4k'");
  run("qemu-img snapshot -c s3 " + sq(img));
  expect_clean(img);
  run("qemu-img snapshot -d s2 " + sq(img));
  io(img, "-c 'write -P 6 128k 64k'");
  ReferenceScan s = expect_clean(img);
  EXPECT_GE(s.l2_tables, 1u);
}

TEST_F(ReferenceScanTest, Bitmaps) {
  const std::string img = path("bitmaps.qcow2");
  create(img, "");
  run("qemu-img bitmap --add " + sq(img) + " b0");
  run("qemu-img bitmap --add -g 512 " + sq(img) + " b1");
  io(img, "-c 'write -P 1 0 64k' -c 'write -P 2 30M 1M' -c 'write -P 3 63M 64k'");
  const Image m = load(img);
  ASSERT_TRUE(m.h.bitmaps.has_value());
  EXPECT_EQ(m.h.bitmaps->nb_bitmaps, 2u);
  expect_clean(img);
}

TEST_F(ReferenceScanTest, ExtendedL2) {
  const std::string img = path("ext.qcow2");
  create(img, "-o extended_l2=on,cluster_size=64k");
  io(img, "-c 'write -P 1 0 4k' -c 'write -P 2 70k 10k' -c 'write -z 1M 2k' "
          "-c 'write -P 3 2M 128k' -c 'write -z 2M 4k' -c 'write -z -u 2M 64k'");
  expect_clean(img);
  run("qemu-img snapshot -c s1 " + sq(img));
  io(img, "-c 'write -P 4 2k 2k'");
  expect_clean(img);
}

TEST_F(ReferenceScanTest, RefcountWidths) {
  for (const char* bits : {"1", "2", "8", "32", "64"}) {
    const std::string img = path(std::string("rc") + bits + ".qcow2");
    create(img, std::string("-o refcount_bits=") + bits);
    io(img, "-c 'write -P 1 0 200k' -c 'write -P 2 50M 64k'");
    if (std::string(bits) != "1") run("qemu-img snapshot -c s1 " + sq(img));
    io(img, "-c 'write -P 3 0 64k'");
    expect_clean(img);
  }
}

TEST_F(ReferenceScanTest, SmallAndLargeClusters) {
  const std::string small = path("c512.qcow2");
  create(small, "-o cluster_size=512", "16M");
  io(small, "-c 'write -P 1 0 100k' -c 'write -P 2 8M 3k' -c 'write -z 50k 1k'");
  ReferenceScan s = expect_clean(small);
  EXPECT_GT(s.l2_tables, 3u);  // an L2 table maps 32 KiB

  const std::string large = path("c2m.qcow2");
  create(large, "-o cluster_size=2M", "1G");
  io(large, "-c 'write -P 1 0 1M' -c 'write -P 2 600M 3M'");
  run("qemu-img snapshot -c s1 " + sq(large));
  io(large, "-c 'write -P 3 0 4k'");
  expect_clean(large);
}

TEST_F(ReferenceScanTest, ExternalDataFile) {
  const std::string img = path("ext-data.qcow2");
  create(img, "-o data_file=" + sq(path("ext-data.raw")));
  io(img, "-c 'write -P 1 0 1M' -c 'write -P 2 40M 64k' -c 'write -z 0 64k'");
  ReferenceScan s = expect_clean(img);
  EXPECT_GT(s.data_clusters, 0u);
  const std::string raw_img = path("ext-raw.qcow2");
  create(raw_img, "-o data_file=" + sq(path("ext-raw.raw")) + ",data_file_raw=on");
  io(raw_img, "-c 'write -P 1 0 1M'");
  expect_clean(raw_img);
}

// --- corrupt images ---

TEST_F(ReferenceScanTest, L2EntryPastTheEndOfTheFile) {
  const std::string img = path("bad-l2.qcow2");
  create(img, "");
  io(img, "-c 'write -P 1 0 128k'");
  Image m = load(img);
  patch64(img, first_l2(m) + 8, kFlagCopied | (1ull << 40));
  m = load(img);
  ReferenceScan s = scan(img, m);
  EXPECT_TRUE(mentions(s, "outside the image file")) << all_problems(s);
  EXPECT_EQ(s.problems.size(), 1u) << all_problems(s);
}

TEST_F(ReferenceScanTest, L1EntryWithReservedBits) {
  const std::string img = path("bad-l1.qcow2");
  create(img, "");
  io(img, "-c 'write -P 1 0 64k'");
  Image m = load(img);
  patch64(img, m.h.l1_table_offset, m.l1[0] | 0x2);
  m = load(img);
  ReferenceScan s = scan(img, m);
  EXPECT_TRUE(mentions(s, "reserved bits")) << all_problems(s);
  // The L2 table is still scanned: its data cluster keeps its reference.
  EXPECT_EQ(s.data_clusters, 1u);
}

TEST_F(ReferenceScanTest, MisalignedBitmapTable) {
  const std::string img = path("bad-bitmap.qcow2");
  create(img, "");
  run("qemu-img bitmap --add " + sq(img) + " b0");
  io(img, "-c 'write -P 1 0 64k'");
  Image m = load(img);
  ASSERT_TRUE(m.h.bitmaps.has_value());
  const uint64_t entry = m.h.bitmaps->directory_offset;
  const uint64_t table = load_be64(m.bytes.data() + entry);
  patch64(img, entry, table + 512);
  m = load(img);
  ReferenceScan s = scan(img, m);
  EXPECT_TRUE(mentions(s, "not cluster aligned")) << all_problems(s);
}

TEST_F(ReferenceScanTest, BumpedRefcountIsALeak) {
  const std::string img = path("leak.qcow2");
  create(img, "");
  io(img, "-c 'write -P 1 0 64k'");
  Image m = load(img);
  // Not a cluster an entry with the COPIED flag points at (that would be an error too):
  // the refcount table's cluster.
  const uint64_t cluster = m.h.refcount_table_offset >> m.g.cluster_bits;
  ASSERT_EQ(m.stored_refcount(cluster), 1u);
  // Refcount 2 in the (16-bit) refcount block.
  const uint64_t block = m.rt[cluster >> m.g.refblock_bits] & ~uint64_t{0x1ff};
  {
    std::byte b[2];
    store_be16(b, 2);
    std::fstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(block + (cluster & (m.g.refblock_entries - 1)) * 2));
    f.write(reinterpret_cast<const char*>(b), 2);
    ASSERT_TRUE(f.good());
  }
  auto check = shell("qemu-img check " + sq(img));
  EXPECT_EQ(check.exit_code, 3) << check.output;  // leaked clusters
  m = load(img);
  ReferenceScan s = scan(img, m);
  EXPECT_TRUE(s.problems.empty()) << all_problems(s);
  for (uint64_t c = 0; c < s.refs.size(); ++c) {
    if (c == cluster) {
      EXPECT_EQ(s.refs[c], 1u);
      EXPECT_EQ(m.stored_refcount(c), 2u);
    } else {
      EXPECT_EQ(s.refs[c], m.stored_refcount(c)) << "cluster " << c;
    }
  }
}

// Random garbage over every metadata cluster: problems, never a crash or a hang.
TEST_F(ReferenceScanTest, GarbageMetadataNeverCrashes) {
  const std::string img = path("garbage.qcow2");
  create(img, "-o cluster_size=4k", "64M");
  run("qemu-img bitmap --add " + sq(img) + " b0");
  io(img, "-c 'write -P 1 0 300k' -c 'write -c -P 2 1M 4k' -c 'write -P 3 40M 8k'");
  run("qemu-img snapshot -c s1 " + sq(img));
  const Image clean = load(img);
  std::mt19937_64 rng(42);
  int reported = 0;
  for (int round = 0; round < 40; ++round) {
    Image m = clean;
    // Scramble words of the L2 tables and sometimes of L1 and the refcount table.
    for (int k = 0; k < 64; ++k) {
      const uint64_t l2 = first_l2(m);
      const uint64_t word = rng() % (m.g.cluster_size / 8);
      const uint64_t v = (round % 3 == 0) ? rng() : (rng() & 0x00ffffffffffff00ull);
      store_be64(m.bytes.data() + l2 + word * 8, v);
    }
    if (round % 4 == 1) m.l1[0] = rng();
    if (round % 5 == 2) m.rt[rng() % m.rt.size()] = rng();
    if (round % 6 == 3 && !m.snapshots.empty()) m.snapshots[0].l1_size = 0x3fffff;
    if (round % 7 == 4) {  // garbage in the bitmap directory
      const uint64_t d = m.h.bitmaps->directory_offset;
      for (uint64_t j = 0; j + 8 <= m.h.bitmaps->directory_size; j += 8) {
        store_be64(m.bytes.data() + d + j, rng());
      }
    }
    const std::string bad = path("garbage-" + std::to_string(round) + ".qcow2");
    {
      std::ofstream out(bad, std::ios::binary);
      out.write(reinterpret_cast<const char*>(m.bytes.data()),
                static_cast<std::streamsize>(m.bytes.size()));
    }
    ReferenceScan s = scan(bad, m);
    EXPECT_LE(s.problems.size(), kMaxReportedProblems + 1);
    if (!s.problems.empty()) ++reported;
    EXPECT_EQ(s.refs.size(), (m.bytes.size() + m.g.cluster_size - 1) / m.g.cluster_size);
    std::remove(bad.c_str());
  }
  EXPECT_GE(reported, 30);
}

}  // namespace
}  // namespace blockcore::qcow2
