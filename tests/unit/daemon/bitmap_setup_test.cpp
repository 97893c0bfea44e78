// ensure_config_bitmaps: the config's `bitmaps:` on opened nodes — missing bitmaps are
// created with the entry's granularity and disabled flag, existing ones are kept (never
// cleared), and mismatches or a persistent bitmap without a store are located errors
// that change nothing. In-memory bitmaps on a raw node; the persistent path through a
// bitmap-file container is covered by tests/unit/blockcore/bitmap_file_test.cpp and
// tests/integration/test_bitmap_file.py.
#include "server/daemon/bitmap_setup.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "blockcore/graph.h"
#include "testing/temp_dir.h"

namespace server::daemon {
namespace {

using blockcore::DirtyBitmapPtr;
using blockcore::NodeSpec;
using fleece_test::TempDir;

constexpr uint64_t kSize = 8 << 20;

config::BitmapConfig entry(const std::string& name, uint64_t granularity, bool persistent,
                           int line, bool disabled = false) {
  config::BitmapConfig b;
  b.node = "disk0";
  b.name = name;
  b.granularity = granularity;
  b.persistent = persistent;
  b.disabled = disabled;
  b.where = config::SourceLocation{"f.yaml", line};
  return b;
}

class BitmapSetupTest : public ::testing::Test {
 protected:
  BitmapSetupTest() : pool_(0), graph_(pool_) {
    fleece_test::make_file(dir_.file("disk0.img"), kSize);
    NodeSpec file;
    file.driver = "file";
    file.file.filename = dir_.file("disk0.img");
    NodeSpec raw;
    raw.node_name = "disk0";
    raw.driver = "raw";
    raw.file_child = blockcore::ChildRef{"", std::make_shared<NodeSpec>(file)};
    auto added = graph_.add(raw);
    EXPECT_TRUE(added.is_ok()) << added.status().to_string();
  }

  blockcore::NodeBitmaps& bitmaps() { return graph_.find("disk0")->bitmaps(); }

  TempDir dir_;
  blockcore::io::BlockingPool pool_;
  blockcore::Graph graph_;
};

TEST_F(BitmapSetupTest, CreatesMissingBitmapsAsConfigured) {
  const std::vector<config::BitmapConfig> cfg = {
      entry("nightly", 65536, false, 3),
      entry("paused", 1 << 20, false, 4, /*disabled=*/true),
  };
  ASSERT_TRUE(ensure_config_bitmaps_blocking(cfg, graph_).is_ok());
  DirtyBitmapPtr nightly = bitmaps().find("nightly");
  ASSERT_TRUE(nightly);
  EXPECT_EQ(nightly->granularity(), 65536u);
  EXPECT_TRUE(nightly->enabled());
  EXPECT_FALSE(nightly->persistent());
  EXPECT_EQ(nightly->disk_size(), kSize);
  EXPECT_EQ(nightly->dirty_bytes(), 0u);
  DirtyBitmapPtr paused = bitmaps().find("paused");
  ASSERT_TRUE(paused);
  EXPECT_EQ(paused->granularity(), 1u << 20);
  EXPECT_FALSE(paused->enabled());
}

TEST_F(BitmapSetupTest, ExistingBitmapIsKeptNeverCleared) {
  const std::vector<config::BitmapConfig> cfg = {entry("nightly", 65536, false, 3)};
  ASSERT_TRUE(ensure_config_bitmaps_blocking(cfg, graph_).is_ok());
  DirtyBitmapPtr first = bitmaps().find("nightly");
  first->mark(3 * 65536, 100);
  first->set_enabled(false);
  bitmaps().update_tracking();
  ASSERT_TRUE(ensure_config_bitmaps_blocking(cfg, graph_).is_ok());
  DirtyBitmapPtr again = bitmaps().find("nightly");
  EXPECT_EQ(again, first);  // the same bitmap, not a new one
  EXPECT_EQ(again->dirty_bytes(), 65536u);
  EXPECT_FALSE(again->enabled());  // its recording state is its own
}

TEST_F(BitmapSetupTest, GranularityMismatchNamesBothValues) {
  ASSERT_TRUE(ensure_config_bitmaps_blocking({entry("nightly", 65536, false, 3)}, graph_).is_ok());
  blockcore::Status s =
      ensure_config_bitmaps_blocking({entry("nightly", 131072, false, 7)}, graph_);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_EQ(s.message(),
            "f.yaml:7: bitmap 'nightly' of node 'disk0': the bitmap exists with granularity "
            "65536, but the configuration asks for 131072 (a bitmap keeps its granularity: write "
            "65536 in the configuration, or remove the bitmap to start it again)");
  EXPECT_EQ(bitmaps().find("nightly")->granularity(), 65536u);
}

TEST_F(BitmapSetupTest, PersistenceMismatchIsAnError) {
  ASSERT_TRUE(ensure_config_bitmaps_blocking({entry("nightly", 65536, false, 3)}, graph_).is_ok());
  blockcore::Status s = ensure_config_bitmaps_blocking({entry("nightly", 65536, true, 9)}, graph_);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.message(),
            "f.yaml:9: bitmap 'nightly' of node 'disk0': the bitmap exists and is not "
            "persistent, but the configuration says persistent: true (change the configuration, "
            "or remove the bitmap to create it again)");
}

TEST_F(BitmapSetupTest, PersistentWithoutStoreSuggestsBitmapFile) {
  blockcore::Status s = ensure_config_bitmaps_blocking({entry("nightly", 65536, true, 5)}, graph_);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), ENOTSUP);
  EXPECT_EQ(s.message(),
            "f.yaml:5: bitmap 'nightly' of node 'disk0': node 'disk0' (driver raw) has nowhere "
            "to store a persistent bitmap: give it a bitmap-file (a qcow2 container for its "
            "bitmaps), or set persistent: false");
  EXPECT_TRUE(bitmaps().list().empty());
}

TEST_F(BitmapSetupTest, AllOrNothing) {
  // The first entry is fine, the second cannot be created: neither is.
  blockcore::Status s = ensure_config_bitmaps_blocking(
      {entry("a", 65536, false, 3), entry("b", 65536, true, 4)}, graph_);
  ASSERT_FALSE(s.is_ok());
  EXPECT_TRUE(bitmaps().list().empty());
}

TEST_F(BitmapSetupTest, UnknownNode) {
  config::BitmapConfig b = entry("x", 65536, false, 2);
  b.node = "nope";
  blockcore::Status s = ensure_config_bitmaps_blocking({b}, graph_);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_EQ(s.message(), "f.yaml:2: bitmap 'x' of node 'nope': node 'nope' does not exist");
}

}  // namespace
}  // namespace server::daemon
