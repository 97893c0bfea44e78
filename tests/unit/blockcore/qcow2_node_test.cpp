// Qcow2Node through the BlockNode API on images made by qemu-img: reads, partial and
// whole-cluster writes, write_zeroes (kMayTrim, kFastZero), discard, flush and
// block_status on v2/v3, extended L2, 512-byte and 2 MiB clusters, refcount table
// growth, compressed clusters, internal snapshots and backing chains. Every scenario
// closes the node and checks the file with `qemu-img check` and `qemu-img compare`
// against a model of the guest disk.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "qcow2_node_test_util.h"

namespace blockcore::qcow2::node_test {
namespace {

constexpr uint64_t K = 1024;
constexpr uint64_t M = 1024 * 1024;

// A mixed workload on one image, checked against the model as it goes.
void basic_workload(Fixture& fx, const std::string& img, uint64_t size, uint64_t cluster,
                    bool v3) {
  Model m(size);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  EXPECT_EQ(n->size(), size);
  EXPECT_FALSE(n->read_only());
  // Fresh image: all zero, unallocated everywhere (depth 0).
  ExtentList st = status(*n, 0, size);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].flags, kExtentZero | kExtentHole);
  EXPECT_EQ(st[0].depth, 0u);
  // Unaligned write across cluster boundaries.
  auto a = pattern(3 * cluster + 777, 1);
  ASSERT_TRUE(write(*n, cluster / 2 + 3, a).is_ok());
  m.write(cluster / 2 + 3, a);
  expect_reads(*n, m, 0, 5 * cluster);
  // In-place overwrite of part of an allocated cluster.
  auto b = pattern(100, 2);
  ASSERT_TRUE(write(*n, cluster + 10, b).is_ok());
  m.write(cluster + 10, b);
  // A small write far away, with FUA.
  auto c = pattern(4096, 3);
  const uint64_t far_off = size - 3 * cluster - 8192 + 512;
  ASSERT_TRUE(write(*n, far_off, c, IoFlags::kFua).is_ok());
  m.write(far_off, c);
  expect_reads(*n, m, 0, size);
  st = status(*n, 0, size);
  EXPECT_EQ(extent_at(st, 0, cluster + 1).flags, 0u);
  EXPECT_EQ(extent_at(st, 0, cluster + 1).depth, 1u);
  EXPECT_EQ(extent_at(st, 0, 0).depth, 1u);  // cluster 0 was partially written
  EXPECT_EQ(extent_at(st, 0, 6 * cluster).depth, 0u);
  EXPECT_EQ(extent_at(st, 0, 6 * cluster).flags, kExtentZero | kExtentHole);

  // write_zeroes of an allocated whole cluster without trim: zero flag, depth 1.
  ASSERT_TRUE(zero(*n, cluster, cluster).is_ok());
  m.zero(cluster, cluster);
  // With kMayTrim on another.
  ASSERT_TRUE(zero(*n, 2 * cluster, cluster, IoFlags::kMayTrim).is_ok());
  m.zero(2 * cluster, cluster);
  // Partial cluster zeroing writes zeroes.
  ASSERT_TRUE(zero(*n, 3 * cluster + 5, 100).is_ok());
  m.zero(3 * cluster + 5, 100);
  // kFastZero: ENOTSUP on a partial cluster, fine on whole ones.
  EXPECT_EQ(zero(*n, 10, 100, IoFlags::kFastZero).code(), ENOTSUP);
  EXPECT_EQ(zero(*n, cluster - 1, cluster + 2, IoFlags::kFastZero).code(), ENOTSUP);
  EXPECT_TRUE(zero(*n, 4 * cluster, 2 * cluster, IoFlags::kFastZero).is_ok());
  m.zero(4 * cluster, 2 * cluster);
  expect_reads(*n, m, 0, size);
  st = status(*n, 0, size);
  EXPECT_TRUE(extent_at(st, 0, cluster).flags & kExtentZero);
  EXPECT_TRUE(extent_at(st, 0, 2 * cluster).flags & kExtentZero);
  EXPECT_EQ(extent_at(st, 0, 3 * cluster).flags, 0u);
  // Discard of whole clusters reads as zeroes afterwards (no backing); a partial
  // discard changes nothing.
  ASSERT_TRUE(discard(*n, size - 4 * cluster, 2 * cluster).is_ok());
  m.zero(size - 4 * cluster, 2 * cluster);
  ASSERT_TRUE(discard(*n, 3 * cluster + 1, 10).is_ok());
  // The last partial cluster of the disk counts as whole when the range reaches the end.
  auto tail = pattern(cluster, 4);
  ASSERT_TRUE(write(*n, size - cluster, tail).is_ok());
  m.write(size - cluster, tail);
  ASSERT_TRUE(zero(*n, size - cluster + 7, cluster - 7, IoFlags::kMayTrim).is_ok());
  m.zero(size - cluster + 7, cluster - 7);
  ASSERT_TRUE(flush(*n).is_ok());
  expect_reads(*n, m, 0, size);
  // Errors from the central checks.
  EXPECT_EQ(write(*n, size - 1, pattern(2, 5)).code(), ENOSPC);
  n.reset();  // closes the image

  expect_check_clean(img);
  expect_content(img, m);
  auto h = raw_header(img);
  EXPECT_EQ(h.version, v3 ? 3u : 2u);
  EXPECT_EQ(h.incompatible & kIncompatDirty, 0u);
  // A fresh node reads the same.
  BlockNodePtr again = fx.open(img, /*read_only=*/true);
  ASSERT_TRUE(again);
  expect_reads(*again, m, 0, size);
}

TEST(Qcow2NodeTest, V3Basic) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 4 * M, "compat=1.1");
  basic_workload(fx, img, 4 * M, 64 * K, true);
}

TEST(Qcow2NodeTest, V2Basic) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 4 * M, "compat=0.10");
  basic_workload(fx, img, 4 * M, 64 * K, false);
}

TEST(Qcow2NodeTest, V3NoPoolThreads) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx(0);
  const std::string img = fx.path("a.qcow2");
  create_image(img, 2 * M, "compat=1.1,cluster_size=4096");
  basic_workload(fx, img, 2 * M, 4 * K, true);
}

TEST(Qcow2NodeTest, SmallClusters512) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 2 * M, "cluster_size=512");
  basic_workload(fx, img, 2 * M, 512, true);
}

TEST(Qcow2NodeTest, HugeClusters2M) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 32 * M, "cluster_size=2M");
  basic_workload(fx, img, 32 * M, 2 * M, true);
}

TEST(Qcow2NodeTest, UnalignedDiskSize) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  const uint64_t size = 1 * M + 3 * 512;  // qemu rounds sizes to sectors
  create_image(img, size, "cluster_size=64k");
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  ASSERT_EQ(n->size(), size);
  Model m(size);
  auto a = pattern(5000, 9);
  ASSERT_TRUE(write(*n, size - 5000, a).is_ok());
  m.write(size - 5000, a);
  // Zeroing up to the end counts the last partial cluster as whole: fast zero works.
  EXPECT_TRUE(zero(*n, 1 * M, size - 1 * M, IoFlags::kFastZero).is_ok());
  m.zero(1 * M, size - 1 * M);
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);
}

// v2 images have no zero flag: write_zeroes must not set bit 0 of an L2 entry there
// (the spec: "With version 2 ..., this is always 0"). QEMU falls back to writing zeroes
// (or to deallocation without backing).
TEST(Qcow2NodeTest, V2WriteZeroesNeverSetsTheZeroFlag) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 1 * M, "compat=0.10");
  qemu_io(img, "-c 'write -P 0x5a 0 128k'");
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  ASSERT_TRUE(zero(*n, 0, 64 * K).is_ok());                      // without kMayTrim
  ASSERT_TRUE(zero(*n, 64 * K, 64 * K, IoFlags::kMayTrim).is_ok());
  n.reset();
  expect_check_clean(img);
  Model m(1 * M);
  expect_content(img, m);
  for (uint64_t g : {uint64_t{0}, 64 * K}) {
    const uint64_t at = l2_entry_offset(img, g);
    ASSERT_NE(at, 0u);
    const uint64_t e = read_be64_at(img, at);
    EXPECT_EQ(e & 1, 0u) << "v2 L2 entry of guest " << g << " has the zero flag: " << std::hex << e;
  }
}

TEST(Qcow2NodeTest, ExtendedL2SubclusterWrites) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  const uint64_t cs = 64 * K, sc = 2 * K, size = 4 * M;
  create_image(img, size, "extended_l2=on,cluster_size=64k");
  Model m(size);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  // A few bytes inside subcluster 1 of cluster 0.
  auto a = pattern(100, 1);
  ASSERT_TRUE(write(*n, sc + 10, a).is_ok());
  m.write(sc + 10, a);
  ExtentList st = status(*n, 0, cs);
  EXPECT_EQ(extent_at(st, 0, 0).depth, 0u);       // subcluster 0 untouched
  EXPECT_EQ(extent_at(st, 0, sc).depth, 1u);      // subcluster 1 allocated
  EXPECT_EQ(extent_at(st, 0, sc).flags, 0u);
  EXPECT_EQ(extent_at(st, 0, 2 * sc).depth, 0u);  // subcluster 2 untouched
  // Another subcluster of the same cluster (in-place action, unallocated subcluster).
  auto b = pattern(3 * sc, 2);
  ASSERT_TRUE(write(*n, 5 * sc + 1, b).is_ok());
  m.write(5 * sc + 1, b);
  // Zero the whole cluster then write part: zero bits must not leak old data.
  ASSERT_TRUE(zero(*n, 0, cs).is_ok());
  m.zero(0, cs);
  expect_reads(*n, m, 0, cs);
  auto c = pattern(sc / 2, 3);
  ASSERT_TRUE(write(*n, 5 * sc + 100, c).is_ok());
  m.write(5 * sc + 100, c);
  expect_reads(*n, m, 0, cs);
  // A partial zero inside a subcluster, across subclusters, and kFastZero rules.
  ASSERT_TRUE(zero(*n, 5 * sc + 50, 2 * sc).is_ok());
  m.zero(5 * sc + 50, 2 * sc);
  EXPECT_EQ(zero(*n, cs + sc, sc, IoFlags::kFastZero).code(), ENOTSUP);
  // Writes spanning clusters, then discard one whole cluster.
  auto d = pattern(3 * cs, 4);
  ASSERT_TRUE(write(*n, 2 * cs - 3 * sc - 7, d).is_ok());
  m.write(2 * cs - 3 * sc - 7, d);
  ASSERT_TRUE(discard(*n, 3 * cs, cs).is_ok());
  m.zero(3 * cs, cs);
  ASSERT_TRUE(zero(*n, 2 * cs, cs, IoFlags::kMayTrim).is_ok());
  m.zero(2 * cs, cs);
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);
}

TEST(Qcow2NodeTest, RefcountTableGrowsWith512ByteClusters) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  const uint64_t size = 64 * M;
  create_image(img, size, "cluster_size=512");
  const uint64_t rt_before = raw_header(img).refcount_table_offset;
  Model m(size);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  // 20 MiB in 1 MiB writes at an odd offset, plus a far-away write.
  for (uint64_t i = 0; i < 20; ++i) {
    auto p = pattern(1 * M, static_cast<uint32_t>(100 + i));
    ASSERT_TRUE(write(*n, 333 + i * M, p).is_ok()) << i;
    m.write(333 + i * M, p);
  }
  auto far = pattern(10000, 7);
  ASSERT_TRUE(write(*n, size - 20000, far).is_ok());
  m.write(size - 20000, far);
  ASSERT_TRUE(flush(*n).is_ok());
  expect_reads(*n, m, 0, 21 * M);
  n.reset();
  EXPECT_NE(raw_header(img).refcount_table_offset, rt_before) << "the refcount table never moved";
  expect_check_clean(img);
  expect_content(img, m);
}

TEST(Qcow2NodeTest, SixtyFourBitRefcountsWith512ByteClusters) {
  // 512-byte clusters with 64-bit refcounts: one refcount block covers only 32 KiB, so
  // allocations keep creating blocks. Writes stay below 64 clusters (see
  // AllocatingAsManyClustersAsARefcountBlockCoversTerminates). (Overflowing
  // the 1024-block cache needs > 32 MiB of host clusters here, which took 65 s: too slow
  // for a unit test.)
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  const uint64_t size = 8 * M;
  create_image(img, size, "cluster_size=512,refcount_bits=64");
  Model m(size);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  const uint64_t chunk = 16 * K;
  for (uint64_t off = 0; off + chunk <= 4 * M; off += chunk) {
    auto p = pattern(chunk, static_cast<uint32_t>(off / chunk));
    ASSERT_TRUE(write(*n, off, p).is_ok()) << off;
    m.write(off, p);
  }
  // Free some and reallocate through the freed space.
  ASSERT_TRUE(discard(*n, 1 * M, 1 * M).is_ok());
  m.zero(1 * M, 1 * M);
  ASSERT_TRUE(flush(*n).is_ok());
  for (uint64_t off = 5 * M; off < 6 * M; off += chunk) {
    auto p = pattern(chunk - 512, static_cast<uint32_t>(off));
    ASSERT_TRUE(write(*n, off + 512, p).is_ok());
    m.write(off + 512, p);
  }
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);
}

// A regression test: Refcounts::allocate(n) once never returned when n >= refblock_entries
// and the clusters it looked at had no refcount blocks yet (runs are capped since). Every new block is placed at
// the start of the range it describes (self-describing), so every run of
// refblock_entries consecutive clusters contains a block's cluster once the blocks
// exist; allocate() creates the blocks of the run it found, finds the run taken, moves
// on and creates more blocks, forever, growing the file without bound. Standard L2
// entries with refcount_bits=64 make refblock_entries == l2_entries, so one aligned
// write of a whole L2 table's span (32 KiB with 512-byte clusters, 2 MiB with 4 KiB
// clusters) hangs. Runs in a child process so the hang becomes a failure.
TEST(Qcow2NodeTest, AllocatingAsManyClustersAsARefcountBlockCoversTerminates) {
  FLEECE_REQUIRE_QEMU();
  fleece_test::TempDir dir;
  const std::string img = dir.file("a.qcow2");
  create_image(img, 4 * M, "cluster_size=512,refcount_bits=64");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int rc = 1;
    {
      Fixture fx(0);
      BlockNodePtr n = fx.open(img);
      if (n && write(*n, 0, pattern(32 * K, 1)).is_ok()) rc = 0;
    }
    ::_exit(rc);
  }
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 100 && !exited; ++i) {
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
    if (!exited) ::usleep(50 * 1000);
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  EXPECT_TRUE(exited) << "a 64-cluster allocating write did not finish in 5 s";
  EXPECT_TRUE(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_LT(std::filesystem::file_size(img), 8 * M);
}

TEST(Qcow2NodeTest, CompressedClustersOverwrittenPartially) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string raw = fx.path("src.raw");
  const std::string img = fx.path("a.qcow2");
  const uint64_t size = 2 * M, cs = 64 * K;
  // Compressible but non-trivial content.
  Model m(size);
  for (uint64_t i = 0; i < size; ++i) m.bytes[i] = static_cast<std::byte>((i / 7) % 13 + (i >> 16));
  m.save_raw(raw);
  ASSERT_EQ(qemu_img("convert -c -O qcow2 " + sq(raw) + " " + sq(img)).exit_code, 0);
  {
    ShellResult r = qemu_img("check " + sq(img));
    ASSERT_NE(r.output.find("compressed clusters"), std::string::npos) << r.output;
    ASSERT_EQ(r.output.find(" 0.00% compressed"), std::string::npos) << r.output;
  }
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  expect_reads(*n, m, 0, size);
  auto a = pattern(1000, 1);
  ASSERT_TRUE(write(*n, cs + 100, a).is_ok());  // partial: copy-on-write from compressed
  m.write(cs + 100, a);
  auto b = pattern(cs + 200, 2);
  ASSERT_TRUE(write(*n, 3 * cs - 100, b).is_ok());  // straddles two compressed clusters
  m.write(3 * cs - 100, b);
  ASSERT_TRUE(zero(*n, 6 * cs, cs).is_ok());                       // whole compressed cluster
  m.zero(6 * cs, cs);
  ASSERT_TRUE(zero(*n, 7 * cs + 5, 10).is_ok());                   // partial
  m.zero(7 * cs + 5, 10);
  ASSERT_TRUE(discard(*n, 8 * cs, 2 * cs).is_ok());
  m.zero(8 * cs, 2 * cs);
  ASSERT_TRUE(write(*n, 12 * cs, pattern(cs, 3)).is_ok());       // whole-cluster overwrite
  m.write(12 * cs, pattern(cs, 3));
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);
}

TEST(Qcow2NodeTest, CompressedExtendedL2) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string raw = fx.path("src.raw");
  const std::string img = fx.path("a.qcow2");
  const uint64_t size = 1 * M, cs = 64 * K;
  Model m(size);
  for (uint64_t i = 0; i < size; ++i) m.bytes[i] = static_cast<std::byte>((i / 5) % 11 + 1);
  m.save_raw(raw);
  ASSERT_EQ(qemu_img("convert -c -O qcow2 -o extended_l2=on " + sq(raw) + " " + sq(img)).exit_code, 0);
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  auto a = pattern(100, 1);
  ASSERT_TRUE(write(*n, cs + 4 * K + 3, a).is_ok());
  m.write(cs + 4 * K + 3, a);
  ASSERT_TRUE(zero(*n, 2 * cs + 2 * K, 2 * K).is_ok());  // one whole subcluster
  m.zero(2 * cs + 2 * K, 2 * K);
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);
}

TEST(Qcow2NodeTest, InternalSnapshotStaysUnchanged) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  const uint64_t size = 4 * M, cs = 64 * K;
  create_image(img, size);
  qemu_io(img, "-c 'write -P 0x11 0 1M' -c 'write -P 0x22 2M 256k' -c 'write -z 3M 128k'");
  Model snap(size);
  std::memset(snap.bytes.data(), 0x11, 1 * M);
  std::memset(snap.bytes.data() + 2 * M, 0x22, 256 * K);
  ASSERT_EQ(qemu_img("snapshot -c snap1 " + sq(img)).exit_code, 0);
  Model m = snap;
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  auto a = pattern(1000, 1);
  ASSERT_TRUE(write(*n, 100, a).is_ok());  // partial write into a shared cluster
  m.write(100, a);
  auto b = pattern(2 * cs, 2);
  ASSERT_TRUE(write(*n, 4 * cs, b).is_ok());  // whole shared clusters
  m.write(4 * cs, b);
  ASSERT_TRUE(write(*n, 4 * cs + 10, pattern(10, 3)).is_ok());  // now ours: in place
  m.write(4 * cs + 10, pattern(10, 3));
  ASSERT_TRUE(zero(*n, 8 * cs, cs).is_ok());
  m.zero(8 * cs, cs);
  ASSERT_TRUE(zero(*n, 9 * cs, cs, IoFlags::kMayTrim).is_ok());
  m.zero(9 * cs, cs);
  ASSERT_TRUE(discard(*n, 2 * M, 128 * K).is_ok());
  m.zero(2 * M, 128 * K);
  ASSERT_TRUE(write(*n, 2 * M + 200 * K, pattern(100, 4)).is_ok());
  m.write(2 * M + 200 * K, pattern(100, 4));
  ASSERT_TRUE(write(*n, 3 * M + 1, pattern(5, 5)).is_ok());  // into a zero cluster
  m.write(3 * M + 1, pattern(5, 5));
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(img);
  expect_content(img, m);
  const std::string snap_raw = fx.path("snap.raw");
  ShellResult r = qemu_img("convert -l snapshot.name=snap1 -O raw " + sq(img) + " " + sq(snap_raw));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string want = fx.path("want.raw");
  snap.save_raw(want);
  r = shell("cmp " + sq(snap_raw) + " " + sq(want));
  EXPECT_EQ(r.exit_code, 0) << "the snapshot changed: " << r.output;
}

TEST(Qcow2NodeTest, BackingChainPartialWritesAndDepth) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string base = fx.path("base.qcow2");
  const std::string mid = fx.path("mid.qcow2");
  const std::string top = fx.path("top.qcow2");
  const uint64_t size = 4 * M, cs = 64 * K;
  create_image(base, size);
  qemu_io(base, "-c 'write -P 0x33 0 1M'");
  create_image(mid, size, "", "-b " + sq(base) + " -F qcow2");
  qemu_io(mid, "-c 'write -P 0x44 512k 1M'");
  create_image(top, size, "", "-b " + sq(mid) + " -F qcow2");
  Model m(size);
  std::memset(m.bytes.data(), 0x33, 1 * M);
  std::memset(m.bytes.data() + 512 * K, 0x44, 1 * M);

  BlockNodePtr n = fx.open(top);
  ASSERT_TRUE(n);
  ASSERT_EQ(n->children().size(), 2u);
  expect_reads(*n, m, 0, size);
  ExtentList st = status(*n, 0, size);
  EXPECT_EQ(extent_at(st, 0, 0).depth, 3u);
  EXPECT_EQ(extent_at(st, 0, 0).flags, 0u);
  EXPECT_EQ(extent_at(st, 0, 600 * K).depth, 2u);
  EXPECT_EQ(extent_at(st, 0, 2 * M).depth, 0u);
  EXPECT_EQ(extent_at(st, 0, 2 * M).flags, kExtentZero | kExtentHole);

  // Partial writes over clusters whose data comes from either backing layer.
  auto a = pattern(100, 1);
  ASSERT_TRUE(write(*n, 7, a).is_ok());
  m.write(7, a);
  auto b = pattern(cs, 2);
  ASSERT_TRUE(write(*n, 512 * K - cs / 2, b).is_ok());  // half base-only, half mid
  m.write(512 * K - cs / 2, b);
  auto c = pattern(10, 3);
  ASSERT_TRUE(write(*n, 1536 * K - 5, c).is_ok());  // mid | nothing
  m.write(1536 * K - 5, c);
  // Zeroing over backing data hides it (v3: zero flag).
  ASSERT_TRUE(zero(*n, 2 * cs, cs, IoFlags::kMayTrim).is_ok());
  m.zero(2 * cs, cs);
  ASSERT_TRUE(zero(*n, 3 * cs, cs, IoFlags::kFastZero).is_ok());
  m.zero(3 * cs, cs);
  ASSERT_TRUE(zero(*n, 4 * cs + 1, 10).is_ok());  // partial: COW from backing
  m.zero(4 * cs + 1, 10);
  ASSERT_TRUE(discard(*n, 10 * cs, 2 * cs).is_ok());  // reads as zeroes, not backing
  m.zero(10 * cs, 2 * cs);
  expect_reads(*n, m, 0, size);
  st = status(*n, 0, size);
  EXPECT_EQ(extent_at(st, 0, 0).depth, 1u);
  EXPECT_EQ(extent_at(st, 0, cs).depth, 3u);
  EXPECT_EQ(extent_at(st, 0, 2 * cs).flags, kExtentZero | kExtentHole);
  EXPECT_EQ(extent_at(st, 0, 2 * cs).depth, 1u);
  EXPECT_EQ(extent_at(st, 0, 10 * cs).flags & kExtentZero, kExtentZero);
  EXPECT_EQ(extent_at(st, 0, 10 * cs).depth, 1u);
  n.reset();
  expect_check_clean(top);
  expect_check_clean(mid);
  expect_check_clean(base);
  expect_content(top, m);
  // The backing images are untouched.
  Model mm(size);
  std::memset(mm.bytes.data(), 0x33, 1 * M);
  std::memset(mm.bytes.data() + 512 * K, 0x44, 1 * M);
  expect_content(mid, mm);
}

TEST(Qcow2NodeTest, BackingChainExtendedL2CopiesOnlyTouchedSubclusters) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string base = fx.path("base.raw");
  const std::string top = fx.path("top.qcow2");
  const uint64_t size = 1 * M, sc = 2 * K;
  Model m(size);
  for (uint64_t i = 0; i < size; ++i) m.bytes[i] = static_cast<std::byte>(i % 251 + 1);
  m.save_raw(base);
  create_image(top, size, "extended_l2=on", "-b " + sq(base) + " -F raw");
  BlockNodePtr n = fx.open(top);
  ASSERT_TRUE(n);
  auto a = pattern(10, 1);
  ASSERT_TRUE(write(*n, 3 * sc + 100, a).is_ok());
  m.write(3 * sc + 100, a);
  ExtentList st = status(*n, 0, 64 * K);
  EXPECT_EQ(extent_at(st, 0, 2 * sc).depth, 2u);
  EXPECT_EQ(extent_at(st, 0, 3 * sc).depth, 1u);
  EXPECT_EQ(extent_at(st, 0, 4 * sc).depth, 2u);
  ASSERT_TRUE(write(*n, 3 * sc + 1000, a).is_ok());  // same subcluster, in place
  m.write(3 * sc + 1000, a);
  ASSERT_TRUE(write(*n, 9 * sc - 1, a).is_ok());  // spans subclusters 8 and 9
  m.write(9 * sc - 1, a);
  ASSERT_TRUE(zero(*n, 20 * sc + 3, 5).is_ok());
  m.zero(20 * sc + 3, 5);
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(top);
  expect_content(top, m);
}

TEST(Qcow2NodeTest, V2OverlayWithBacking) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string base = fx.path("base.qcow2");
  const std::string top = fx.path("top.qcow2");
  const uint64_t size = 2 * M, cs = 64 * K;
  create_image(base, size, "compat=0.10");
  qemu_io(base, "-c 'write -P 0x55 0 2M'");
  create_image(top, size, "compat=0.10", "-b " + sq(base) + " -F qcow2");
  Model m(size);
  std::memset(m.bytes.data(), 0x55, size);
  BlockNodePtr n = fx.open(top);
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->info().can_fast_zero);
  EXPECT_EQ(zero(*n, 0, cs, IoFlags::kFastZero).code(), ENOTSUP);
  ASSERT_TRUE(zero(*n, 0, cs, IoFlags::kMayTrim).is_ok());  // must not expose backing
  m.zero(0, cs);
  ASSERT_TRUE(discard(*n, 2 * cs, cs).is_ok());  // a no-op hint: backing data stays
  ASSERT_TRUE(write(*n, 3 * cs + 9, pattern(20, 1)).is_ok());
  m.write(3 * cs + 9, pattern(20, 1));
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(top);
  expect_content(top, m);
}

TEST(Qcow2NodeTest, LazyRefcountsAndRefcountWidths) {
  FLEECE_REQUIRE_QEMU();
  for (const char* opts : {"lazy_refcounts=on", "refcount_bits=1", "refcount_bits=8",
                           "refcount_bits=32,cluster_size=4k", "refcount_bits=64,cluster_size=64k"}) {
    SCOPED_TRACE(opts);
    Fixture fx;
    const std::string img = fx.path("a.qcow2");
    const uint64_t size = 4 * M;
    create_image(img, size, opts);
    qemu_io(img, "-c 'write -P 0x42 100k 300k'");
    Model m(size);
    std::memset(m.bytes.data() + 100 * K, 0x42, 300 * K);
    BlockNodePtr n = fx.open(img);
    ASSERT_TRUE(n);
    for (uint64_t i = 0; i < 6; ++i) {
      auto p = pattern(70 * K, static_cast<uint32_t>(i));
      ASSERT_TRUE(write(*n, i * 500 * K + 3, p).is_ok());
      m.write(i * 500 * K + 3, p);
    }
    ASSERT_TRUE(zero(*n, 128 * K, 128 * K, IoFlags::kMayTrim).is_ok());
    m.zero(128 * K, 128 * K);
    ASSERT_TRUE(discard(*n, 1 * M, 1 * M).is_ok());
    m.zero(1 * M, 1 * M);
    ASSERT_TRUE(write(*n, 1 * M + 5, pattern(10, 9)).is_ok());
    m.write(1 * M + 5, pattern(10, 9));
    expect_reads(*n, m, 0, size);
    n.reset();
    expect_check_clean(img);
    expect_content(img, m);
  }
}

TEST(Qcow2NodeTest, BackingShorterThanTheOverlay) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string base = fx.path("base.qcow2");
  const std::string top = fx.path("top.qcow2");
  const uint64_t bsize = 1 * M + 32 * K, size = 3 * M;  // backing ends mid-cluster
  create_image(base, bsize);
  qemu_io(base, "-c 'write -P 0x61 0 " + std::to_string(bsize) + "'");
  create_image(top, size, "", "-b " + sq(base) + " -F qcow2");
  Model m(size);
  std::memset(m.bytes.data(), 0x61, bsize);
  BlockNodePtr n = fx.open(top);
  ASSERT_TRUE(n);
  expect_reads(*n, m, 0, size);
  ExtentList st = status(*n, 0, size);
  EXPECT_EQ(extent_at(st, 0, bsize - 1).depth, 2u);
  EXPECT_EQ(extent_at(st, 0, bsize).depth, 0u);
  EXPECT_EQ(extent_at(st, 0, bsize).flags, kExtentZero | kExtentHole);
  // Partial writes in the cluster that straddles the backing's end.
  ASSERT_TRUE(write(*n, bsize - 100, pattern(50, 1)).is_ok());
  m.write(bsize - 100, pattern(50, 1));
  ASSERT_TRUE(write(*n, bsize + 10, pattern(50, 2)).is_ok());
  m.write(bsize + 10, pattern(50, 2));
  ASSERT_TRUE(zero(*n, 1 * M + 64 * K, 64 * K, IoFlags::kFastZero).is_ok());
  m.zero(1 * M + 64 * K, 64 * K);
  expect_reads(*n, m, 0, size);
  n.reset();
  expect_check_clean(top);
  expect_content(top, m);
}

TEST(Qcow2NodeTest, ReadOnlyNodeRefusesWrites) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 1 * M);
  qemu_io(img, "-c 'write -P 0x66 0 64k'");
  const std::string before = shell("md5sum < " + sq(img)).output;
  BlockNodePtr n = fx.open(img, /*read_only=*/true);
  ASSERT_TRUE(n);
  EXPECT_EQ(write(*n, 0, pattern(10, 1)).code(), EROFS);
  EXPECT_EQ(zero(*n, 0, 64 * K).code(), EROFS);
  std::vector<std::byte> got = read(*n, 0, 64 * K);
  EXPECT_EQ(got[100], std::byte{0x66});
  EXPECT_TRUE(flush(*n).is_ok());
  n.reset();
  EXPECT_EQ(shell("md5sum < " + sq(img)).output, before);
}

}  // namespace
}  // namespace blockcore::qcow2::node_test
