// qemu:allocation-depth: LIST/SET matching exactly as QEMU (offered only where the export
// enables it), depth values from a node reporting chosen depths, merging of equal runs,
// alignment, and over the wire together with base:allocation (with and without REQ_ONE).
#include "server/nbd/allocation_depth_context.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "nbd_test_server.h"
#include "run_task.h"
#include "server/nbd/base_allocation_context.h"
#include "server/nbd/protocol.h"
#include "testing/memory_node.h"

namespace server::nbd {
namespace {

using blockcore::Extent;
using blockcore::ExtentList;
using blockcore::kExtentHole;
using blockcore::kExtentZero;
using Names = std::vector<std::string>;

// A node whose block_status reports a fixed extent map (covering the whole node).
class DepthNode final : public fleece_test::MemoryNode {
 public:
  DepthNode(ExtentList map, uint32_t align = 1)
      : MemoryNode("depth0", info_for(map, align)), map_(std::move(map)) {}

 protected:
  blockcore::Task<blockcore::Result<ExtentList>> do_block_status(uint64_t off,
                                                                 uint64_t len) override {
    ExtentList out;
    uint64_t pos = 0;
    const uint64_t end = off + len;
    for (const Extent& e : map_) {
      const uint64_t s = std::max(pos, off);
      const uint64_t t = std::min(pos + e.length, end);
      if (s < t) out.push_back(Extent{t - s, e.flags, e.depth});  // not merged on purpose
      pos += e.length;
    }
    co_return out;
  }

 private:
  static blockcore::NodeInfo info_for(const ExtentList& map, uint32_t align) {
    blockcore::NodeInfo info = default_info(blockcore::extents_length(map));
    info.request_alignment = align;
    return info;
  }
  ExtentList map_;
};

// 0-8K top, 8K-16K top again (a separate extent), 16K-24K unallocated, 24K-28K backing,
// 28K-32K second backing.
ExtentList sample_map() {
  return {{8192, 0, 1},
          {8192, kExtentZero, 1},
          {8192, kExtentHole | kExtentZero, 0},
          {4096, 0, 2},
          {4096, 0, 3}};
}

ExportPtr make_export(blockcore::BlockNodePtr root, bool depth) {
  auto e = std::make_shared<Export>();
  e->name = "disk";
  e->root = std::move(root);
  e->allocation_depth = depth;
  return e;
}

Names list(const MetaContextRegistry& r, const ExportPtr& e, Names q) { return r.list(*e, q); }
Names select(const MetaContextRegistry& r, const ExportPtr& e, Names q) {
  Names out;
  for (auto& c : r.select(e, q)) out.push_back(c->name());
  return out;
}

TEST(AllocationDepth, ListAndSetLikeQemu) {
  MetaContextRegistry r;
  ExportPtr e = make_export(std::make_shared<DepthNode>(sample_map()), true);
  EXPECT_EQ(list(r, e, {}), (Names{"base:allocation", "qemu:allocation-depth"}));
  EXPECT_EQ(list(r, e, {"qemu:"}), Names{"qemu:allocation-depth"});
  EXPECT_EQ(list(r, e, {"qemu:allocation-depth"}), Names{"qemu:allocation-depth"});
  EXPECT_EQ(list(r, e, {"qemu:dirty-bitmap:"}), Names{});
  EXPECT_EQ(list(r, e, {"qemu:allocation"}), Names{});
  EXPECT_EQ(list(r, e, {"base:"}), Names{"base:allocation"});
  EXPECT_EQ(select(r, e, {"qemu:"}), Names{});
  EXPECT_EQ(select(r, e, {"qemu:allocation-depth", "base:allocation"}),
            (Names{"qemu:allocation-depth", "base:allocation"}));

  // Not offered on an export that does not enable it.
  ExportPtr plain = make_export(std::make_shared<DepthNode>(sample_map()), false);
  EXPECT_EQ(list(r, plain, {}), Names{"base:allocation"});
  EXPECT_EQ(list(r, plain, {"qemu:"}), Names{});
  EXPECT_EQ(select(r, plain, {"qemu:allocation-depth"}), Names{});
}

TEST(AllocationDepth, DepthsFromTheRootMergedByValue) {
  ExportPtr e = make_export(std::make_shared<DepthNode>(sample_map()), true);
  MetaContextPtr ctx = MetaContextRegistry().resolve(e, "qemu:allocation-depth");
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(ctx->name(), "qemu:allocation-depth");
  auto res = nbd_test::run_task(ctx->extents(0, 32768, 100));
  ASSERT_TRUE(res.is_ok()) << res.status().to_string();
  // The two top extents differ in flags but not in depth: one run.
  EXPECT_EQ(*res, (std::vector<MetaExtent>{{16384, 1}, {8192, 0}, {4096, 2}, {4096, 3}}));

  // A window, and a single extent (REQ_ONE).
  res = nbd_test::run_task(ctx->extents(12288, 16384, 100));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (std::vector<MetaExtent>{{4096, 1}, {8192, 0}, {4096, 2}}));
  res = nbd_test::run_task(ctx->extents(0, 32768, 1));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (std::vector<MetaExtent>{{16384, 1}}));
}

TEST(AllocationDepth, AlignedBlocksTakeTheTopmostLayer) {
  EXPECT_EQ(combine_depths(0, 0), 0u);
  EXPECT_EQ(combine_depths(0, 2), 2u);
  EXPECT_EQ(combine_depths(3, 0), 3u);
  EXPECT_EQ(combine_depths(3, 2), 2u);
  // 4 KiB alignment over [0,6K) depth 2, [6K,8K) unallocated, [8K,12K) depth 1.
  ExtentList map{{6144, 0, 2}, {2048, kExtentHole, 0}, {4096, 0, 1}};
  ExportPtr e = make_export(std::make_shared<DepthNode>(map, 4096), true);
  MetaContextPtr ctx = MetaContextRegistry().resolve(e, "qemu:allocation-depth");
  auto res = nbd_test::run_task(ctx->extents(0, 12288, 100));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (std::vector<MetaExtent>{{8192, 2}, {4096, 1}}));
}

TEST(AllocationDepth, PropagatesErrors) {
  auto node = fleece_test::MemoryNode::create(64 * 1024);
  node->set_fail_hook([](auto, auto, auto) { return EIO; });
  MetaContextPtr ctx =
      MetaContextRegistry().resolve(make_export(node, true), "qemu:allocation-depth");
  auto res = nbd_test::run_task(ctx->extents(0, 4096, 10));
  ASSERT_FALSE(res.is_ok());
  EXPECT_EQ(res.status().code(), EIO);
}

// ---- Over the wire ----

class AllocationDepthWire : public nbd_test::NbdServerFixture {
 protected:
  void SetUp() override {
    NbdServerFixture::SetUp();
    auto e = std::make_shared<Export>();
    e->name = "chain";
    e->root = std::make_shared<DepthNode>(sample_map());
    e->allocation_depth = true;
    ASSERT_TRUE(exports_.add(e).is_ok());
  }
  // (context id -> [(length, value)...]) of one BLOCK_STATUS reply.
  using Chunks = std::map<uint32_t, std::vector<std::pair<uint32_t, uint32_t>>>;
  static Chunks decode(const std::vector<nbd_test::Reply>& chunks) {
    Chunks out;
    for (const auto& c : chunks) {
      EXPECT_EQ(c.type, kReplyTypeBlockStatus);
      const auto& p = c.payload;
      auto& v = out[nbd_test::load_be32(p.data())];
      for (size_t i = 4; i + 8 <= p.size(); i += 8) {
        v.emplace_back(nbd_test::load_be32(p.data() + i), nbd_test::load_be32(p.data() + i + 4));
      }
    }
    return out;
  }
};

TEST_F(AllocationDepthWire, BothContextsInOneRequest) {
  auto c = connect();
  nbd_test::GoResult g = c->negotiate("chain", true, {"base:allocation", "qemu:allocation-depth"});
  ASSERT_EQ(g.contexts.size(), 2u);
  uint32_t base_id = 0, depth_id = 0;
  for (const auto& [id, name] : g.contexts) (name == "base:allocation" ? base_id : depth_id) = id;
  ASSERT_NE(base_id, depth_id);

  c->send_request(kCmdBlockStatus, 0, 1, 0, 32768);
  Chunks got = decode(c->read_chunks());
  ASSERT_EQ(got.size(), 2u);
  using V = std::vector<std::pair<uint32_t, uint32_t>>;
  EXPECT_EQ(got[depth_id], (V{{16384, 1}, {8192, 0}, {4096, 2}, {4096, 3}}));
  EXPECT_EQ(got[base_id], (V{{8192, 0}, {8192, kStateZero}, {8192, kStateHole | kStateZero},
                             {8192, 0}}));

  // REQ_ONE: one extent per context, never longer than the request.
  c->send_request(kCmdBlockStatus, kCmdFlagReqOne, 2, 4096, 20000);
  got = decode(c->read_chunks());
  EXPECT_EQ(got[depth_id], (V{{12288, 1}}));
  EXPECT_EQ(got[base_id], (V{{4096, 0}}));
  c->send_request(kCmdBlockStatus, kCmdFlagReqOne, 3, 16384, 1000);
  got = decode(c->read_chunks());
  EXPECT_EQ(got[depth_id], (V{{1000, 0}}));
}

TEST_F(AllocationDepthWire, NotOfferedWhereTheExportDoesNotEnableIt) {
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply);
  EXPECT_EQ(c->read_option_reply().type, kRepAck);
  c->send_option(kOptListMetaContext, nbd_test::TestClient::meta_data("disk", {}));
  Names names;
  for (auto& r : c->read_option_replies()) {
    if (r.type == kRepMetaContext) names.push_back(nbd_test::to_string(r.data, 4));
  }
  EXPECT_EQ(names, Names{"base:allocation"});
  c->send_option(kOptListMetaContext, nbd_test::TestClient::meta_data("chain", {"qemu:"}));
  names.clear();
  for (auto& r : c->read_option_replies()) {
    if (r.type == kRepMetaContext) names.push_back(nbd_test::to_string(r.data, 4));
  }
  EXPECT_EQ(names, Names{"qemu:allocation-depth"});
}

}  // namespace
}  // namespace server::nbd
