// The bitmaps-only qcow2 container of a raw node: created when missing, checked against
// the node's size and for guest data, locked like any image, repaired after a crash,
// and readable by QEMU (qemu-img info, qemu-nbd -B) with the bitmaps the raw node
// recorded.
#include <gtest/gtest.h>

#include <filesystem>

#include "blockcore/drivers/raw_node.h"
#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "qcow2_bitmap_test_util.h"

namespace blockcore::qcow2::bitmap_test {
namespace {

using node_test::expect_check_clean;
using node_test::Fixture;

constexpr uint64_t kMiB = 1ull << 20;

class BitmapContainerTest : public QemuBitmapTest {
 protected:
  // A raw node over `disk` with its bitmaps in `container` (what the node factory does
  // for a `bitmap-file`).
  Result<BlockNodePtr> open_raw(const std::string& disk, const std::string& container,
                                bool read_only = false, bool create = true) {
    NodeSpec fs;
    fs.driver = "file";
    fs.read_only = read_only;
    fs.file.filename = disk;
    auto file = FileNode::open(fs, f.pool);
    if (!file.is_ok()) return file.status();
    NodeSpec rs;
    rs.node_name = "raw0";
    rs.driver = "raw";
    rs.read_only = read_only;
    auto raw = RawNode::open(rs, file.value());
    if (!raw.is_ok()) return raw.status();
    std::vector<DirtyBitmapPtr> loaded;
    auto store = open_bitmap_container(container, raw.value()->size(), read_only, create, f.pool,
                                       loaded);
    if (!store.is_ok()) return store.status();
    raw.value()->bitmaps().attach_store(store.value(), std::move(loaded));
    return BlockNodePtr(raw.value());
  }
  void make_raw(const std::string& path, uint64_t size) {
    run("qemu-img create -q -f raw " + sq(path) + " " + std::to_string(size));
  }
  Fixture f;
};

TEST_F(BitmapContainerTest, RawNodeBitmapsLiveInTheContainer) {
  const std::string disk = f.path("disk.raw");
  const std::string bm = f.path("disk.bitmaps.qcow2");
  const uint64_t size = 48 * kMiB;
  make_raw(disk, size);
  const std::vector<std::pair<uint64_t, uint64_t>> writes = {{0, 512}, {7 * kMiB, 200000}};
  {
    Result<BlockNodePtr> n = open_raw(disk, bm);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    ASSERT_TRUE(std::filesystem::exists(bm));
    auto b = add_bitmap(*n.value(), "nightly");
    ASSERT_TRUE(b);
    EXPECT_TRUE(b->durable());
    for (const auto& [o, l] : writes) {
      ASSERT_TRUE(node_test::write(*n.value(), o, node_test::pattern(l, 1)).is_ok());
    }
    // The container is locked while in use: QEMU cannot open it for writing.
    auto r = shell("qemu-io -f qcow2 -c 'write 0 512' " + sq(bm));
    EXPECT_NE(r.exit_code, 0) << r.output;
    // And another fleece node cannot take it either.
    std::vector<DirtyBitmapPtr> loaded;
    auto second = open_bitmap_container(bm, size, false, true, f.pool, loaded);
    ASSERT_FALSE(second.is_ok());
    EXPECT_EQ(second.status().code(), EAGAIN) << second.status().to_string();
  }
  // Closed: QEMU reads the container and its bitmap.
  auto r = shell("qemu-img info --output=json " + sq(bm));
  EXPECT_NE(r.output.find("\"virtual-size\": " + std::to_string(size)), std::string::npos) << r.output;
  auto infos = qemu_bitmaps(bm);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].flags, std::vector<std::string>{"auto"});
  EXPECT_EQ(qemu_dirty_ranges(bm, "nightly"), granules_of(writes, 65536, size));
  expect_check_clean(bm);
  EXPECT_EQ(node_test::raw_header(bm).incompatible & kIncompatDirty, 0u);
  // Reopened, the bitmap is back with its content, and keeps recording.
  {
    Result<BlockNodePtr> n = open_raw(disk, bm);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    auto b = n.value()->bitmaps().find("nightly");
    ASSERT_TRUE(b);
    EXPECT_EQ(dirty_ranges(*b), granules_of(writes, 65536, size));
    ASSERT_TRUE(node_test::write(*n.value(), 40 * kMiB, node_test::pattern(512, 2)).is_ok());
  }
  auto all = writes;
  all.push_back({40 * kMiB, 512});
  EXPECT_EQ(qemu_dirty_ranges(bm, "nightly"), granules_of(all, 65536, size));
  // Read-only: loaded, nothing written.
  const auto before = fleece_test::read_whole_file(bm);
  {
    Result<BlockNodePtr> n = open_raw(disk, bm, /*read_only=*/true, /*create=*/false);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    EXPECT_TRUE(n.value()->bitmaps().find("nightly")->read_only());
  }
  EXPECT_EQ(fleece_test::read_whole_file(bm), before);
}

TEST_F(BitmapContainerTest, RefusesWhatIsNotAContainerForThisDisk) {
  const std::string bm = f.path("c.qcow2");
  std::vector<DirtyBitmapPtr> loaded;
  // Missing and not to be created.
  auto r = open_bitmap_container(bm, 16 * kMiB, false, /*create=*/false, f.pool, loaded);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  r = open_bitmap_container(bm, 16 * kMiB, /*read_only=*/true, true, f.pool, loaded);
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_FALSE(std::filesystem::exists(bm));
  // Another disk's size.
  run("qemu-img create -q -f qcow2 " + sq(bm) + " 32M");
  r = open_bitmap_container(bm, 16 * kMiB, false, true, f.pool, loaded);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find(bm), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("33554432"), std::string::npos) << r.status().message();
  // Guest data in it.
  run("qemu-io -f qcow2 -c 'write 0 4k' " + sq(bm));
  r = open_bitmap_container(bm, 32 * kMiB, false, true, f.pool, loaded);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("guest data"), std::string::npos) << r.status().message();
  // A backing file.
  std::filesystem::remove(bm);
  const std::string base = f.path("base.raw");
  run("qemu-img create -q -f raw " + sq(base) + " 32M");
  run("qemu-img create -q -f qcow2 -b " + sq(base) + " -F raw " + sq(bm));
  r = open_bitmap_container(bm, 32 * kMiB, false, true, f.pool, loaded);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("guest data"), std::string::npos) << r.status().message();
  // Not qcow2 at all.
  std::filesystem::remove(bm);
  run("qemu-img create -q -f raw " + sq(bm) + " 32M");
  r = open_bitmap_container(bm, 32 * kMiB, false, true, f.pool, loaded);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find(bm), std::string::npos) << r.status().message();
  // A v2 image.
  std::filesystem::remove(bm);
  run("qemu-img create -q -f qcow2 -o compat=0.10 " + sq(bm) + " 32M");
  r = open_bitmap_container(bm, 32 * kMiB, false, true, f.pool, loaded);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("v3"), std::string::npos) << r.status().message();
  EXPECT_TRUE(loaded.empty());
}

TEST_F(BitmapContainerTest, OddDiskSizeAndCrashRepair) {
  const std::string disk = f.path("odd.raw");
  const std::string bm = f.path("odd.bitmaps");
  const std::string crash = f.path("crash.bitmaps");
  const uint64_t size = 10 * kMiB + 1000;  // not a multiple of 512
  fleece_test::make_file(disk, size);
  {
    Result<BlockNodePtr> n = open_raw(disk, bm);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    add_bitmap(*n.value(), "b", 512);
    ASSERT_TRUE(node_test::write(*n.value(), size - 100, node_test::pattern(100, 1)).is_ok());
    std::filesystem::copy_file(bm, crash);
  }
  // The crash copy: dirty, in use, yet trusted through fleece's record.
  EXPECT_NE(node_test::raw_header(crash).incompatible & kIncompatDirty, 0u);
  {
    std::vector<DirtyBitmapPtr> loaded;
    auto store = open_bitmap_container(crash, size, false, false, f.pool, loaded);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_FALSE(loaded[0]->inconsistent());
    EXPECT_EQ(dirty_ranges(*loaded[0]), granules_of({{size - 100, 100}}, 512, size));
    ASSERT_TRUE(fleece_test::run_task(store.value()->close()).is_ok());
  }
  expect_check_clean(crash);
  EXPECT_EQ(node_test::raw_header(crash).incompatible & kIncompatDirty, 0u);
  // QEMU sees the rounded-up size and the last granule.
  EXPECT_EQ(qemu_dirty_ranges(bm, "b"), (Ranges{{10 * kMiB + 512, 512}}));
}

}  // namespace
}  // namespace blockcore::qcow2::bitmap_test
