// Bitmap containers through the graph: a raw (or file) node with a bitmap_file gets its
// qcow2 container created and attached when it opens, its persistent bitmaps are in
// that container for qemu-img after the node closes, and reopening loads them with the
// same dirty extents. Errors name the node and the container; two nodes never share one;
// a failed add leaves no container open.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "blockcore/graph.h"
#include "qcow2_test_util.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::have_qemu_tools;
using fleece_test::make_file;
using fleece_test::run_task;
using fleece_test::shell;
using fleece_test::sq;
using fleece_test::TempDir;

constexpr uint64_t kSize = 16 << 20;
constexpr uint64_t kGranularity = 65536;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string squeeze(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\n'; }),
          s.end());
  return s;
}

class BitmapFileTest : public ::testing::Test {
 protected:
  BitmapFileTest() : pool_(0), graph_(pool_) {
    image_ = dir_.file("disk 0:a,b.img");  // names are never parsed
    container_ = dir_.file("disk 0.bitmaps");
    make_file(image_, kSize);
  }

  NodeSpec raw_spec(bool read_only = false) const {
    NodeSpec file;
    file.driver = "file";
    file.read_only = read_only;
    file.file.filename = image_;
    NodeSpec raw;
    raw.node_name = "disk0";
    raw.driver = "raw";
    raw.read_only = read_only;
    raw.file_child = ChildRef{"", std::make_shared<NodeSpec>(file)};
    raw.bitmap_file = container_;
    return raw;
  }

  BlockNodePtr add(const NodeSpec& spec) {
    Result<BlockNodePtr> r = graph_.add(spec);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : nullptr;
  }

  void write(const BlockNodePtr& node, uint64_t off, size_t len) {
    std::vector<std::byte> data(len, std::byte{0x5a});
    Status s = run_task(node->write(off, data, IoFlags{}));
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  std::string qemu_img_info() const {
    auto r = shell("qemu-img info -U --output=json " + sq(container_));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return squeeze(r.output);
  }

  TempDir dir_;
  io::BlockingPool pool_;
  Graph graph_;
  std::string image_;
  std::string container_;
};

TEST_F(BitmapFileTest, ContainerCreatedStoredAndReloaded) {
  if (!have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  ASSERT_FALSE(std::filesystem::exists(container_));
  {
    BlockNodePtr node = add(raw_spec());
    ASSERT_TRUE(node);
    ASSERT_TRUE(std::filesystem::exists(container_));
    ASSERT_NE(node->bitmaps().store(), nullptr);
    EXPECT_TRUE(node->bitmaps().store()->writable());
    EXPECT_TRUE(node->bitmaps().list().empty());
    BitmapOptions opts;
    opts.name = "nightly";
    opts.persistent = true;
    auto made = run_task(node->bitmaps().create(opts, node->size()));
    ASSERT_TRUE(made.is_ok()) << made.status().to_string();
    write(node, 0, 4096);                           // granule 0
    write(node, 5 * kGranularity + 100, 2 * 65536);  // granules 5..7
    // While fleeced has it open read-write, QEMU must not trust the stored copy.
    EXPECT_TRUE(contains(qemu_img_info(), "\"flags\":[\"in-use\",\"auto\"],\"name\":\"nightly\""))
        << qemu_img_info();
  }
  ASSERT_TRUE(graph_.remove("disk0").is_ok());  // the last reference: the store closes

  const std::string info = qemu_img_info();
  EXPECT_TRUE(contains(info, "\"virtual-size\":" + std::to_string(kSize))) << info;
  EXPECT_TRUE(contains(info, "\"bitmaps\":[{\"flags\":[\"auto\"],\"name\":\"nightly\","
                             "\"granularity\":65536}]"))
      << info;
  auto check = shell("qemu-img check " + sq(container_));
  EXPECT_EQ(check.exit_code, 0) << check.output;

  // Reopen read-only: the bitmap loads with the same content and flags.
  BlockNodePtr again = add(raw_spec(/*read_only=*/true));
  ASSERT_TRUE(again);
  ASSERT_NE(again->bitmaps().store(), nullptr);
  EXPECT_FALSE(again->bitmaps().store()->writable());
  DirtyBitmapPtr b = again->bitmaps().find("nightly");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->persistent());
  EXPECT_TRUE(b->enabled());
  EXPECT_FALSE(b->inconsistent());
  EXPECT_EQ(b->granularity(), kGranularity);
  const std::vector<DirtyExtent> want = {{kGranularity, true},
                                         {4 * kGranularity, false},
                                         {3 * kGranularity, true},
                                         {kSize - 8 * kGranularity, false}};
  EXPECT_EQ(b->extents(0, kSize, 100), want);
}

TEST_F(BitmapFileTest, ReadOnlyNodeNeedsAnExistingContainer) {
  Result<BlockNodePtr> r = graph_.add(raw_spec(/*read_only=*/true));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_EQ(r.status().message(),
            "node 'disk0': bitmap file '" + container_ + "' does not exist");
  EXPECT_FALSE(std::filesystem::exists(container_));
  EXPECT_TRUE(graph_.nodes().empty());  // all or nothing: the inline file node is gone too
}

TEST_F(BitmapFileTest, ContainerOfAnotherSizeIsRefused) {
  if (!have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  auto made = shell("qemu-img create -q -f qcow2 " + sq(container_) + " 1M");
  ASSERT_EQ(made.exit_code, 0) << made.output;
  Result<BlockNodePtr> r = graph_.add(raw_spec());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL) << r.status().to_string();
  EXPECT_EQ(r.status().message().rfind("node 'disk0': bitmap file '" + container_ +
                                           "' has a virtual size of 1048576 bytes, but the node "
                                           "has 16777216",
                                       0),
            0u)
      << r.status().to_string();
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(BitmapFileTest, TwoNodesNeverShareAContainer) {
  ASSERT_TRUE(add(raw_spec()));
  make_file(dir_.file("other.img"), kSize);
  NodeSpec other;
  other.node_name = "other";
  other.driver = "file";
  other.file.filename = dir_.file("other.img");
  other.bitmap_file = dir_.path() + "/./disk 0.bitmaps";  // another spelling
  Result<BlockNodePtr> r = graph_.add(other);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_EQ(r.status().message(), "node 'other': bitmap-file '" + *other.bitmap_file +
                                      "' is already the bitmap-file of node 'disk0' (every node "
                                      "needs its own container)");
  EXPECT_FALSE(graph_.find("other"));
}

TEST_F(BitmapFileTest, Qcow2NodesTakeNoBitmapFile) {
  NodeSpec q;
  q.node_name = "q";
  q.driver = "qcow2";
  NodeSpec file;
  file.driver = "file";
  file.file.filename = image_;
  q.file_child = ChildRef{"", std::make_shared<NodeSpec>(file)};
  q.bitmap_file = container_;
  Result<BlockNodePtr> r = graph_.add(q);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_TRUE(contains(r.status().message(), "node 'q': driver 'qcow2' takes no 'bitmap-file'"))
      << r.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(container_));
}

TEST_F(BitmapFileTest, FailedAddReleasesTheContainer) {
  // The inline file child opens its container, then its raw parent fails (a window past
  // the end): nothing stays open, so the same container opens again afterwards.
  NodeSpec file;
  file.node_name = "img";
  file.driver = "file";
  file.file.filename = image_;
  file.bitmap_file = container_;
  NodeSpec bad;
  bad.node_name = "bad";
  bad.driver = "raw";
  bad.raw.offset = kSize + 4096;
  bad.file_child = ChildRef{"", std::make_shared<NodeSpec>(file)};
  ASSERT_FALSE(graph_.add(bad).is_ok());
  EXPECT_TRUE(graph_.nodes().empty());
  BlockNodePtr img = add(file);
  ASSERT_TRUE(img);
  EXPECT_NE(img->bitmaps().store(), nullptr);
}

}  // namespace
}  // namespace blockcore
