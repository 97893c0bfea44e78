// qemu:dirty-bitmap:NAME: LIST/SET matching exactly as QEMU (sharing "qemu:" with
// allocation-depth, wildcards), the extents (granule boundaries, merged runs, the cap,
// REQ_ONE, alignment to a minimum block larger than the granularity, inconsistent
// bitmaps, a bitmap smaller than the export), speed on a 1 TiB bitmap, and over the wire
// after writes through the same export.
#include "server/nbd/dirty_bitmap_context.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include "blockcore/bitmap/dirty_bitmap.h"
#include "nbd_test_server.h"
#include "run_task.h"
#include "server/export/export_bitmaps.h"
#include "server/nbd/protocol.h"
#include "testing/memory_node.h"

namespace server::nbd {
namespace {

using blockcore::DirtyBitmap;
using blockcore::DirtyBitmapPtr;
using Names = std::vector<std::string>;
using Extents = std::vector<MetaExtent>;

constexpr uint64_t K = 1024;
constexpr uint64_t kGran = 64 * K;

DirtyBitmapPtr make_bitmap(const std::string& name, uint64_t size, uint64_t gran = kGran) {
  return std::make_shared<DirtyBitmap>(name, size, gran);
}

ExportPtr make_export(std::vector<std::pair<std::string, DirtyBitmapPtr>> bitmaps, bool depth,
                      uint64_t size = 1 << 20) {
  auto e = std::make_shared<Export>();
  e->name = "disk";
  e->root = fleece_test::MemoryNode::create(size);
  e->allocation_depth = depth;
  for (auto& [name, b] : bitmaps) EXPECT_TRUE(add_export_bitmap(*e, name, b).is_ok());
  return e;
}

Names list(const ExportPtr& e, Names q) { return MetaContextRegistry().list(*e, q); }
Names select(const ExportPtr& e, Names q) {
  Names out;
  for (auto& c : MetaContextRegistry().select(e, q)) out.push_back(c->name());
  return out;
}

TEST(DirtyBitmapContext, ListAndSetLikeQemu) {
  ExportPtr e = make_export({{"b", make_bitmap("b", 1 << 20)}, {"b2", make_bitmap("b2", 1 << 20)}},
                            /*depth=*/true);
  EXPECT_EQ(list(e, {}), (Names{"base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:b",
                                "qemu:dirty-bitmap:b2"}));
  EXPECT_EQ(list(e, {"qemu:"}),
            (Names{"qemu:allocation-depth", "qemu:dirty-bitmap:b", "qemu:dirty-bitmap:b2"}));
  EXPECT_EQ(list(e, {"qemu:dirty-bitmap:"}),
            (Names{"qemu:dirty-bitmap:b", "qemu:dirty-bitmap:b2"}));
  EXPECT_EQ(list(e, {"qemu:dirty-bitmap:b2"}), Names{"qemu:dirty-bitmap:b2"});
  // Not prefixes of a name, not the family without its colon, not other namespaces.
  EXPECT_EQ(list(e, {"qemu:dirty-bitmap:b3"}), Names{});
  EXPECT_EQ(list(e, {"qemu:dirty-bitmap:b2x"}), Names{});
  EXPECT_EQ(list(e, {"qemu:dirty-bitmap"}), Names{});
  EXPECT_EQ(list(e, {"qemu:dirty"}), Names{});
  EXPECT_EQ(list(e, {"base:dirty-bitmap:b"}), Names{});
  EXPECT_EQ(list(e, {"qemu:dirty-bitmap:b", "qemu:"}),
            (Names{"qemu:dirty-bitmap:b", "qemu:allocation-depth", "qemu:dirty-bitmap:b2"}));

  // SET: exact names only, in query order, once each.
  EXPECT_EQ(select(e, {"qemu:dirty-bitmap:b2", "base:allocation", "qemu:dirty-bitmap:b2"}),
            (Names{"qemu:dirty-bitmap:b2", "base:allocation"}));
  EXPECT_EQ(select(e, {"qemu:"}), Names{});
  EXPECT_EQ(select(e, {"qemu:dirty-bitmap:"}), Names{});
  EXPECT_EQ(select(e, {"qemu:dirty-bitmap:nosuch"}), Names{});
  EXPECT_EQ(select(e, {"qemu:dirty-bitmap:b"}), Names{"qemu:dirty-bitmap:b"});
}

TEST(DirtyBitmapContext, OnlyBoundBitmapsAreOffered) {
  // Without allocation-depth "qemu:" lists just the bitmaps.
  ExportPtr e = make_export({{"b", make_bitmap("b", 1 << 20)}}, false);
  EXPECT_EQ(list(e, {"qemu:"}), Names{"qemu:dirty-bitmap:b"});
  EXPECT_EQ(list(e, {}), (Names{"base:allocation", "qemu:dirty-bitmap:b"}));

  // A name with no bitmap behind it (never bound) is not offered.
  auto bare = std::make_shared<Export>();
  bare->name = "bare";
  bare->root = fleece_test::MemoryNode::create(1 << 20);
  bare->bitmaps = {"ghost"};
  EXPECT_EQ(list(bare, {"qemu:"}), Names{});
  EXPECT_EQ(select(bare, {"qemu:dirty-bitmap:ghost"}), Names{});
}

TEST(DirtyBitmapContext, TheContextKeepsTheBitmapBusy) {
  DirtyBitmapPtr b = make_bitmap("b", 1 << 20);
  MetaContextPtr ctx;
  {
    ExportPtr e = make_export({{"b", b}}, false);
    EXPECT_TRUE(b->busy());
    ctx = MetaContextRegistry().resolve(e, "qemu:dirty-bitmap:b");
    ASSERT_NE(ctx, nullptr);
  }
  EXPECT_TRUE(b->busy());  // the connection's context still holds the export
  ctx.reset();
  EXPECT_FALSE(b->busy());
}

TEST(DirtyBitmapContext, ExtentsFollowGranulesAndMergeRuns) {
  DirtyBitmapPtr b = make_bitmap("b", 1 << 20);
  b->mark(64 * K, 1);           // granule 1
  b->mark(128 * K + 5, 10);     // granule 2: joins granule 1 in one run
  b->mark(256 * K + 100, 4 * K);  // granule 4
  ExportPtr e = make_export({{"b", b}}, false);
  MetaContextPtr ctx = MetaContextRegistry().resolve(e, "qemu:dirty-bitmap:b");
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(ctx->name(), "qemu:dirty-bitmap:b");

  auto res = nbd_test::run_task(ctx->extents(0, 1 << 20, kMaxExtentsPerChunk));
  ASSERT_TRUE(res.is_ok()) << res.status().to_string();
  EXPECT_EQ(*res, (Extents{{64 * K, 0},
                           {128 * K, kStateDirty},
                           {64 * K, 0},
                           {64 * K, kStateDirty},
                           {(1 << 20) - 320 * K, 0}}));

  // A window starting and ending inside granules: the first and last runs are partial,
  // the inner boundaries stay on granule boundaries, never past the request.
  res = nbd_test::run_task(ctx->extents(96 * K, 200 * K, kMaxExtentsPerChunk));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (Extents{{96 * K, kStateDirty}, {64 * K, 0}, {40 * K, kStateDirty}}));

  // The cap: the first runs only; REQ_ONE: one.
  res = nbd_test::run_task(ctx->extents(0, 1 << 20, 2));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (Extents{{64 * K, 0}, {128 * K, kStateDirty}}));
  res = nbd_test::run_task(ctx->extents(0, 1 << 20, 1));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (Extents{{64 * K, 0}}));
  res = nbd_test::run_task(ctx->extents(70 * K, 1000, 1));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (Extents{{1000, kStateDirty}}));

  // Writes after the context was made show at once (a live bitmap).
  b->mark(512 * K, 1);
  res = nbd_test::run_task(ctx->extents(448 * K, 192 * K, kMaxExtentsPerChunk));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (Extents{{64 * K, 0}, {64 * K, kStateDirty}, {64 * K, 0}}));
}

TEST(DirtyBitmapContext, AClearBitmapIsOneCleanExtent) {
  DirtyBitmapPtr b = make_bitmap("b", 1 << 20);
  EXPECT_EQ(dirty_bitmap_extents(*b, 0, 1 << 20, 100, 1), (Extents{{1 << 20, 0}}));
  b->set_all();
  EXPECT_EQ(dirty_bitmap_extents(*b, 4096, 8192, 100, 1), (Extents{{8192, kStateDirty}}));
}

TEST(DirtyBitmapContext, AnInconsistentBitmapIsDirtyEverywhere) {
  DirtyBitmapPtr b = make_bitmap("b", 1 << 20);
  b->set_inconsistent(true);
  EXPECT_EQ(dirty_bitmap_extents(*b, 0, 1 << 20, 100, 1), (Extents{{1 << 20, kStateDirty}}));
  EXPECT_EQ(dirty_bitmap_extents(*b, 12345, 100, 1, 1), (Extents{{100, kStateDirty}}));
}

TEST(DirtyBitmapContext, BlocksLargerThanGranulesAreDirtyIfAnyGranuleIs) {
  // 512-byte granules under a 4 KiB minimum block.
  DirtyBitmapPtr b = make_bitmap("b", 64 * K, 512);
  b->mark(5000, 1);    // block 1
  b->mark(16 * K, 1);  // block 4 (first granule)
  b->mark(24 * K - 1, 1);  // block 5 (last granule): merges with block 4
  b->mark(40 * K, 8 * K);  // blocks 10-11
  EXPECT_EQ(dirty_bitmap_extents(*b, 0, 64 * K, 100, 4096),
            (Extents{{4 * K, 0},
                     {4 * K, kStateDirty},
                     {8 * K, 0},
                     {8 * K, kStateDirty},
                     {16 * K, 0},
                     {8 * K, kStateDirty},
                     {16 * K, 0}}));
  // Capped, and one extent.
  EXPECT_EQ(dirty_bitmap_extents(*b, 0, 64 * K, 3, 4096),
            (Extents{{4 * K, 0}, {4 * K, kStateDirty}, {8 * K, 0}}));
  EXPECT_EQ(dirty_bitmap_extents(*b, 4 * K, 60 * K, 1, 4096), (Extents{{4 * K, kStateDirty}}));
  // Every boundary lands on the block size.
  for (const MetaExtent& x : dirty_bitmap_extents(*b, 8 * K, 56 * K, 100, 4096)) {
    EXPECT_EQ(x.length % 4096, 0u);
  }
}

TEST(DirtyBitmapContext, PastTheBitmapsDiskIsDirty) {
  // A bitmap of a smaller node (say a backing file) never calls the rest clean.
  DirtyBitmapPtr b = make_bitmap("b", 256 * K);
  b->mark(192 * K, 1);
  EXPECT_EQ(dirty_bitmap_extents(*b, 0, 512 * K, 100, 1),
            (Extents{{192 * K, 0}, {320 * K, kStateDirty}}));
  EXPECT_EQ(dirty_bitmap_extents(*b, 384 * K, 64 * K, 100, 1), (Extents{{64 * K, kStateDirty}}));
  b->reset(192 * K, 64 * K);
  EXPECT_EQ(dirty_bitmap_extents(*b, 128 * K, 384 * K, 100, 1),
            (Extents{{128 * K, 0}, {256 * K, kStateDirty}}));
  EXPECT_EQ(dirty_bitmap_extents(*b, 128 * K, 384 * K, 1, 1), (Extents{{128 * K, 0}}));
}

TEST(DirtyBitmapContext, ATebibyteMostlyCleanBitmapAnswersFast) {
  constexpr uint64_t kDisk = 1ull << 40;
  DirtyBitmapPtr b = make_bitmap("big", kDisk);
  // A few thousand scattered granules (none adjacent): 4000 dirty runs.
  constexpr uint64_t kDirty = 4000;
  const uint64_t stride = kDisk / kDirty / kGran * kGran;
  for (uint64_t i = 0; i < kDirty; ++i) b->mark(i * stride + (i % 7) * kGran, 1);

  // Walk the whole disk the way nbdinfo --map does: 4 GiB requests (minus a granule, the
  // largest length a 32-bit request can carry), asking again after a short answer.
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t pos = 0, dirty_bytes = 0, runs = 0;
  const uint64_t max_req = (1ull << 32) - kGran;
  while (pos < kDisk) {
    const uint64_t len = std::min(max_req, kDisk - pos);
    Extents got = dirty_bitmap_extents(*b, pos, len, kMaxExtentsPerChunk, 1);
    ASSERT_FALSE(got.empty());
    for (const MetaExtent& x : got) {
      ASSERT_GT(x.length, 0u);
      if (x.flags == kStateDirty) {
        dirty_bytes += x.length;
        ++runs;
        EXPECT_EQ(pos % kGran, 0u);
        EXPECT_EQ(x.length, kGran);
      }
      pos += x.length;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(pos, kDisk);
  EXPECT_EQ(runs, kDirty);
  EXPECT_EQ(dirty_bytes, kDirty * kGran);
  EXPECT_LT(secs, 0.5) << "block status of a 1 TiB bitmap took " << secs << " s";
}

// ---- Over the wire ----

class DirtyBitmapWire : public nbd_test::NbdServerFixture {
 protected:
  void SetUp() override {
    NbdServerFixture::SetUp();
    auto r = nbd_test::run_task(node_->bitmaps().create({.name = "nightly"}, node_->size()));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    bitmap_ = *r;
    auto e = std::make_shared<Export>();
    e->name = "tracked";
    e->root = node_;
    e->writable = true;
    e->bitmaps = {"nightly"};
    ASSERT_TRUE(bind_export_bitmaps(*e).is_ok());
    ASSERT_TRUE(exports_.add(e).is_ok());
  }
  using V = std::vector<std::pair<uint32_t, uint32_t>>;
  // (context id -> [(length, value)...]) of one BLOCK_STATUS reply.
  static std::map<uint32_t, V> decode(const std::vector<nbd_test::Reply>& chunks) {
    std::map<uint32_t, V> out;
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
  DirtyBitmapPtr bitmap_;
};

TEST_F(DirtyBitmapWire, WritesThroughTheExportShowAsDirtyGranules) {
  auto c = connect();
  nbd_test::GoResult g = c->negotiate("tracked", true, {"qemu:dirty-bitmap:nightly"});
  ASSERT_EQ(g.contexts.size(), 1u);
  const uint32_t id = g.contexts[0].first;
  EXPECT_EQ(g.contexts[0].second, "qemu:dirty-bitmap:nightly");
  EXPECT_TRUE(bitmap_->busy());

  c->send_request(kCmdBlockStatus, 0, 1, 0, kSize);
  EXPECT_EQ(decode(c->read_chunks())[id], (V{{kSize, 0}}));

  // A 100-byte write inside granule 1, a write-zeroes across granules 3 and 4, a trim of
  // granule 9.
  std::vector<std::byte> data(100, std::byte{7});
  c->send_request(kCmdWrite, 0, 2, 70000, 100, data);
  EXPECT_EQ(c->read_reply().error, 0u);
  c->send_request(kCmdWriteZeroes, 0, 3, 3 * kGran + 512, kGran);
  EXPECT_EQ(c->read_reply().error, 0u);
  c->send_request(kCmdTrim, 0, 4, 9 * kGran, 4096);
  EXPECT_EQ(c->read_reply().error, 0u);

  c->send_request(kCmdBlockStatus, 0, 5, 0, kSize);
  EXPECT_EQ(decode(c->read_chunks())[id], (V{{kGran, 0},
                                            {kGran, kStateDirty},
                                            {kGran, 0},
                                            {2 * kGran, kStateDirty},
                                            {4 * kGran, 0},
                                            {kGran, kStateDirty},
                                            {kSize - 10 * kGran, 0}}));
  // REQ_ONE: one extent, never longer than the request.
  c->send_request(kCmdBlockStatus, kCmdFlagReqOne, 6, 3 * kGran, 5000);
  EXPECT_EQ(decode(c->read_chunks())[id], (V{{5000, kStateDirty}}));
  c->send_request(kCmdBlockStatus, kCmdFlagReqOne, 7, 0, kSize);
  EXPECT_EQ(decode(c->read_chunks())[id], (V{{kGran, 0}}));
}

TEST_F(DirtyBitmapWire, ListOverTheWire) {
  auto c = connect();
  c->start();
  c->send_option(kOptStructuredReply);
  EXPECT_EQ(c->read_option_reply().type, kRepAck);
  auto names = [&](const std::string& exp, Names queries) {
    c->send_option(kOptListMetaContext, nbd_test::TestClient::meta_data(exp, queries));
    Names out;
    for (auto& r : c->read_option_replies()) {
      if (r.type == kRepMetaContext) out.push_back(nbd_test::to_string(r.data, 4));
    }
    return out;
  };
  EXPECT_EQ(names("tracked", {}), (Names{"base:allocation", "qemu:dirty-bitmap:nightly"}));
  EXPECT_EQ(names("tracked", {"qemu:"}), Names{"qemu:dirty-bitmap:nightly"});
  EXPECT_EQ(names("tracked", {"qemu:dirty-bitmap:"}), Names{"qemu:dirty-bitmap:nightly"});
  EXPECT_EQ(names("disk", {"qemu:dirty-bitmap:"}), Names{});  // same node, not offered
}

}  // namespace
}  // namespace server::nbd
