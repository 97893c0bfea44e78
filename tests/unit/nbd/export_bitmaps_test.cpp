// bind_export_bitmaps / find_export_bitmap: where a bare bitmap name is looked for (the
// root, then its backing child, or the file child of a node that passes data through,
// never the file of a qcow2 image), the first match winning, QEMU's error text, the busy
// hold lasting as long as the Export, and all-or-nothing binding.
#include "server/export/export_bitmaps.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "blockcore/bitmap/dirty_bitmap.h"
#include "run_task.h"

namespace server {
namespace {

using blockcore::BlockNode;
using blockcore::BlockNodePtr;
using blockcore::ChildRole;
using blockcore::DirtyBitmapPtr;

constexpr uint64_t kSize = 1 << 20;

// A node of a chosen driver name with chosen children; its I/O is never used here.
class ChainNode final : public BlockNode {
 public:
  ChainNode(std::string name, std::string driver) : BlockNode(std::move(name), std::move(driver)) {
    blockcore::NodeInfo info;
    info.size = kSize;
    info.read_only = false;
    // What the real drivers declare: qcow2 keeps its own layout in its file.
    info.file_offsets_match = this->driver() != "qcow2";
    set_info(info);
  }
  void child(ChildRole role, BlockNodePtr n) { add_child(role, std::move(n)); }

 protected:
  blockcore::Task<blockcore::Status> do_read(uint64_t, std::span<std::byte>) override {
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_write(uint64_t, std::span<const std::byte>,
                                              blockcore::IoFlags) override {
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_write_zeroes(uint64_t, uint64_t,
                                                     blockcore::IoFlags) override {
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_discard(uint64_t, uint64_t, blockcore::IoFlags) override {
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_flush() override { co_return blockcore::Status::ok(); }
  blockcore::Task<blockcore::Status> do_cache(uint64_t, uint64_t) override {
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Result<blockcore::ExtentList>> do_block_status(uint64_t,
                                                                            uint64_t len) override {
    co_return blockcore::ExtentList{blockcore::Extent{len, 0, 1}};
  }
};

std::shared_ptr<ChainNode> node(const std::string& name, const std::string& driver) {
  return std::make_shared<ChainNode>(name, driver);
}

DirtyBitmapPtr add_bitmap(BlockNode& n, const std::string& name) {
  auto r = nbd_test::run_task(n.bitmaps().create({.name = name}, n.size()));
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : nullptr;
}

std::string found_on(const BlockNode& root, const std::string& name) {
  auto r = find_export_bitmap(root, name);
  if (!r.is_ok()) return r.status().message();
  // Which node holds it: the bitmap objects are distinct per node.
  for (const BlockNode* n = &root; n; n = next_in_bitmap_chain(*n)) {
    if (n->bitmaps().find(name) == *r) return n->name();
  }
  return "?";
}

// top (qcow2) -> backing mid (qcow2) -> backing base (raw) -> file base-file (file);
// top's own protocol file is top-file.
struct Chain {
  std::shared_ptr<ChainNode> top = node("top", "qcow2");
  std::shared_ptr<ChainNode> top_file = node("top-file", "file");
  std::shared_ptr<ChainNode> mid = node("mid", "qcow2");
  std::shared_ptr<ChainNode> mid_file = node("mid-file", "file");
  std::shared_ptr<ChainNode> base = node("base", "raw");
  std::shared_ptr<ChainNode> base_file = node("base-file", "file");
  Chain() {
    top->child(ChildRole::kFile, top_file);
    top->child(ChildRole::kBacking, mid);
    mid->child(ChildRole::kFile, mid_file);
    mid->child(ChildRole::kBacking, base);
    base->child(ChildRole::kFile, base_file);
  }
};

TEST(ExportBitmaps, ABareNameIsFoundDownTheBackingChainFirstMatchWins) {
  Chain c;
  add_bitmap(*c.top, "both");
  add_bitmap(*c.mid, "both");
  add_bitmap(*c.mid, "mid-only");
  add_bitmap(*c.base_file, "on-base-file");
  EXPECT_EQ(found_on(*c.top, "both"), "top");
  EXPECT_EQ(found_on(*c.top, "mid-only"), "mid");
  // raw passes its file through at the same offsets: its file's bitmap counts.
  EXPECT_EQ(found_on(*c.top, "on-base-file"), "base-file");
  // From the middle the top is not visible.
  auto r = find_export_bitmap(*c.mid, "nope");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_EQ(r.status().message(), "Bitmap 'nope' is not found");
}

TEST(ExportBitmaps, TheFileOfAQcow2ImageIsNotSearched) {
  Chain c;
  add_bitmap(*c.top_file, "host-offsets");
  add_bitmap(*c.mid_file, "host-offsets2");
  EXPECT_EQ(found_on(*c.top, "host-offsets"), "Bitmap 'host-offsets' is not found");
  EXPECT_EQ(found_on(*c.top, "host-offsets2"), "Bitmap 'host-offsets2' is not found");
  // A qcow2 image without backing: its chain ends with it.
  auto lone = node("lone", "qcow2");
  auto lone_file = node("lone-file", "file");
  lone->child(ChildRole::kFile, lone_file);
  add_bitmap(*lone_file, "x");
  EXPECT_EQ(next_in_bitmap_chain(*lone), nullptr);
  EXPECT_EQ(found_on(*lone, "x"), "Bitmap 'x' is not found");
}

TEST(ExportBitmaps, FiltersPassTheirFileThrough) {
  auto filter = node("cbw", "copy-before-write");
  auto disk = node("disk", "qcow2");
  auto target = node("target", "qcow2");
  filter->child(ChildRole::kFile, disk);
  filter->child(ChildRole::kTarget, target);
  add_bitmap(*disk, "nightly");
  add_bitmap(*target, "t");
  EXPECT_EQ(found_on(*filter, "nightly"), "disk");
  EXPECT_EQ(found_on(*filter, "t"), "Bitmap 't' is not found");
}

TEST(ExportBitmaps, BindHoldsEveryBitmapBusyWhileTheExportLives) {
  Chain c;
  DirtyBitmapPtr a = add_bitmap(*c.top, "a");
  DirtyBitmapPtr b = add_bitmap(*c.mid, "b");
  auto e = std::make_shared<Export>();
  e->name = "x";
  e->root = c.top;
  e->bitmaps = {"b", "a"};
  ASSERT_TRUE(bind_export_bitmaps(*e).is_ok());
  ASSERT_EQ(e->bitmap_uses.size(), 2u);
  EXPECT_EQ(e->bitmap("a"), a);
  EXPECT_EQ(e->bitmap("b"), b);
  EXPECT_EQ(e->bitmap("c"), nullptr);
  EXPECT_TRUE(a->busy());
  EXPECT_TRUE(b->busy());
  // A busy bitmap cannot be removed (NodeBitmaps' rule), so it outlives the export's use.
  EXPECT_EQ(nbd_test::run_task(c.top->bitmaps().remove("a")).code(), EBUSY);

  ExportPtr shared = e;  // as the registry and a connection hold it
  ExportPtr connection = shared;
  e.reset();
  shared.reset();
  EXPECT_TRUE(a->busy());
  connection.reset();
  EXPECT_FALSE(a->busy());
  EXPECT_FALSE(b->busy());
  EXPECT_TRUE(nbd_test::run_task(c.top->bitmaps().remove("a")).is_ok());
}

TEST(ExportBitmaps, BindIsAllOrNothing) {
  Chain c;
  DirtyBitmapPtr a = add_bitmap(*c.top, "a");
  Export e;
  e.root = c.top;
  e.bitmaps = {"a", "missing"};
  blockcore::Status s = bind_export_bitmaps(e);
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_EQ(s.message(), "Bitmap 'missing' is not found");
  EXPECT_TRUE(e.bitmap_uses.empty());
  EXPECT_FALSE(a->busy());

  e.bitmaps = {"a", "a"};
  s = bind_export_bitmaps(e);
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_EQ(s.message(), "Bitmap 'a' is listed twice");
  EXPECT_FALSE(a->busy());

  e.bitmaps = {};
  EXPECT_TRUE(bind_export_bitmaps(e).is_ok());
  EXPECT_TRUE(e.bitmap_uses.empty());
}

TEST(ExportBitmaps, AddExportBitmapRefusesADuplicateName) {
  Chain c;
  DirtyBitmapPtr a = add_bitmap(*c.top, "a");
  DirtyBitmapPtr other = add_bitmap(*c.mid, "a");
  Export e;
  e.root = c.top;
  ASSERT_TRUE(add_export_bitmap(e, "a", a).is_ok());
  EXPECT_EQ(add_export_bitmap(e, "a", other).message(), "Bitmap 'a' is listed twice");
  EXPECT_EQ(e.bitmaps, std::vector<std::string>{"a"});
  EXPECT_FALSE(other->busy());
  EXPECT_EQ(e.bitmap("a"), a);
}

}  // namespace
}  // namespace server
