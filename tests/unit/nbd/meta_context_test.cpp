// Metadata contexts: LIST/SET query matching, the provider extension point, and the
// base:allocation extents (mapping, alignment, limits).
#include "server/nbd/meta_context.h"

#include <gtest/gtest.h>

#include "run_task.h"
#include "server/nbd/base_allocation_context.h"
#include "server/nbd/protocol.h"
#include "testing/memory_node.h"

namespace server::nbd {
namespace {

using Names = std::vector<std::string>;

// A stand-in for the future qemu: provider, to prove providers plug in without the
// handshake knowing: qemu:allocation-depth and qemu:dirty-bitmap:<name>.
class FakeQemuProvider final : public MetaContextProvider {
 public:
  std::string_view name_space() const override { return "qemu"; }
  void list(const Export& exp, std::string_view leaf,
            std::vector<std::string>& out) const override {
    if (exp.allocation_depth && (leaf.empty() || leaf == "allocation-depth")) {
      out.push_back("qemu:allocation-depth");
    }
    for (const auto& b : exp.bitmaps) {
      if (leaf.empty() || leaf == "dirty-bitmap:" || leaf == "dirty-bitmap:" + b) {
        out.push_back("qemu:dirty-bitmap:" + b);
      }
    }
  }
  MetaContextPtr resolve(const ExportPtr& exp, std::string_view leaf) const override {
    std::vector<std::string> names;
    list(*exp, leaf, names);
    // Exact names only: a wildcard leaf never resolves.
    for (const auto& n : names) {
      if (n == "qemu:" + std::string(leaf)) return std::make_shared<Fixed>(n);
    }
    return nullptr;
  }

 private:
  struct Fixed final : MetaContext {
    explicit Fixed(std::string n) : MetaContext(std::move(n)) {}
    blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> extents(uint64_t, uint64_t len,
                                                                        size_t) override {
      co_return std::vector<MetaExtent>{{len, 1}};
    }
  };
};

class MetaContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = std::make_shared<Export>();
    e->name = "disk";
    e->root = fleece_test::MemoryNode::create(1 << 20);
    e->bitmaps = {"b", "b2"};
    e->allocation_depth = true;
    exp_ = e;
    registry_.add(std::make_unique<FakeQemuProvider>());
  }
  Names list(Names queries) { return registry_.list(*exp_, queries); }
  Names select(Names queries) {
    Names out;
    for (auto& c : registry_.select(exp_, queries)) out.push_back(c->name());
    return out;
  }

  ExportPtr exp_;
  MetaContextRegistry registry_;
};

TEST_F(MetaContextTest, ListWithoutQueriesListsEverything) {
  EXPECT_EQ(list({}), (Names{"base:allocation", "qemu:allocation-depth", "qemu:dirty-bitmap:b",
                             "qemu:dirty-bitmap:b2"}));
}

TEST_F(MetaContextTest, ListQueries) {
  EXPECT_EQ(list({"base:"}), Names{"base:allocation"});
  EXPECT_EQ(list({"base:allocation"}), Names{"base:allocation"});
  EXPECT_EQ(list({"base:nosuch"}), Names{});
  EXPECT_EQ(list({"qemu:"}),
            (Names{"qemu:allocation-depth", "qemu:dirty-bitmap:b", "qemu:dirty-bitmap:b2"}));
  EXPECT_EQ(list({"qemu:dirty-bitmap:"}), (Names{"qemu:dirty-bitmap:b", "qemu:dirty-bitmap:b2"}));
  EXPECT_EQ(list({"qemu:dirty-bitmap:nosuch"}), Names{});
  // Unknown namespaces and strings without a namespace are ignored, not errors.
  EXPECT_EQ(list({"nosuch:x"}), Names{});
  EXPECT_EQ(list({"nonamespace"}), Names{});
  EXPECT_EQ(list({"nosuch:x", "base:"}), Names{"base:allocation"});
  // A context matched by several queries is listed once.
  EXPECT_EQ(list({"base:", "base:allocation"}), Names{"base:allocation"});
}

TEST_F(MetaContextTest, SetSelectsExactNamesOnly) {
  EXPECT_EQ(select({"base:allocation"}), Names{"base:allocation"});
  EXPECT_EQ(select({"base:"}), Names{});
  EXPECT_EQ(select({"qemu:dirty-bitmap:"}), Names{});
  EXPECT_EQ(select({"qemu:"}), Names{});
  EXPECT_EQ(select({"qemu:dirty-bitmap:b2", "base:allocation"}),
            (Names{"qemu:dirty-bitmap:b2", "base:allocation"}));
  EXPECT_EQ(select({"base:allocation", "base:allocation"}), Names{"base:allocation"});
  EXPECT_EQ(select({"nosuch:x", "x"}), Names{});
  EXPECT_EQ(select({}), Names{});
}

TEST_F(MetaContextTest, EmptyRegistryOffersNothing) {
  MetaContextRegistry empty = MetaContextRegistry::empty_registry();
  EXPECT_EQ(empty.list(*exp_, {}), Names{});
  EXPECT_EQ(empty.resolve(exp_, "base:allocation"), nullptr);
}

TEST_F(MetaContextTest, ProviderForSameNamespaceReplaces) {
  MetaContextRegistry r = MetaContextRegistry::empty_registry();
  r.add(std::make_unique<BaseAllocationProvider>());
  r.add(std::make_unique<BaseAllocationProvider>());
  EXPECT_EQ(r.list(*exp_, {}), Names{"base:allocation"});
}

TEST(SplitContextName, Splits) {
  std::string_view ns, leaf;
  ASSERT_TRUE(split_context_name("qemu:dirty-bitmap:x", ns, leaf));
  EXPECT_EQ(ns, "qemu");
  EXPECT_EQ(leaf, "dirty-bitmap:x");
  EXPECT_FALSE(split_context_name("base", ns, leaf));
}

TEST(BaseAllocation, MapsFlags) {
  blockcore::ExtentList in{{4096, 0, 1},
                           {4096, blockcore::kExtentHole | blockcore::kExtentZero, 1},
                           {4096, blockcore::kExtentZero, 1},
                           {4096, blockcore::kExtentZero, 2},
                           {4096, blockcore::kExtentHole, 0}};
  std::vector<MetaExtent> out = to_allocation_extents(in);
  EXPECT_EQ(out, (std::vector<MetaExtent>{{4096, 0},
                                          {4096, kStateHole | kStateZero},
                                          {8192, kStateZero},  // merged across depths
                                          {4096, kStateHole}}));
}

TEST(BaseAllocation, AlignsBoundariesConservatively) {
  // 512-byte blocks: [0,700) data, [700,2048) zero, [2048,2100) hole
  std::vector<MetaExtent> in{{700, 0}, {1348, kStateZero | kStateHole}, {52, kStateHole}};
  auto out = align_extents_and(in, 512, true);
  // [0,512) data, [512,1024) straddles → data (AND), [1024,2048) zero|hole, tail hole (EOF)
  EXPECT_EQ(
      out, (std::vector<MetaExtent>{{1024, 0}, {1024, kStateZero | kStateHole}, {52, kStateHole}}));
  // Not at EOF: an unaligned tail is cut back to the last boundary.
  out = align_extents_and(in, 512, false);
  EXPECT_EQ(out, (std::vector<MetaExtent>{{1024, 0}, {1024, kStateZero | kStateHole}}));
  // Already aligned input is unchanged.
  std::vector<MetaExtent> aligned{{512, 1}, {1024, 3}};
  EXPECT_EQ(align_extents_and(aligned, 512, false), aligned);
  // A lone short extent is kept so the answer is never empty.
  std::vector<MetaExtent> tiny{{100, 3}};
  EXPECT_EQ(align_extents_and(tiny, 512, false), tiny);
}

TEST(BaseAllocation, ExtentsFromTheRootNode) {
  auto node = fleece_test::MemoryNode::create(64 * 1024);
  node->fill(8192, 4096, std::byte{1});
  auto e = std::make_shared<Export>();
  e->name = "d";
  e->root = node;
  MetaContextRegistry r;
  MetaContextPtr ctx = r.resolve(e, "base:allocation");
  ASSERT_NE(ctx, nullptr);
  auto res = nbd_test::run_task(ctx->extents(0, 64 * 1024, 100));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (std::vector<MetaExtent>{{8192, kStateHole | kStateZero},
                                           {4096, 0},
                                           {64 * 1024 - 12288, kStateHole | kStateZero}}));
  res = nbd_test::run_task(ctx->extents(0, 64 * 1024, 1));
  ASSERT_TRUE(res.is_ok());
  EXPECT_EQ(*res, (std::vector<MetaExtent>{{8192, kStateHole | kStateZero}}));
}

TEST(BaseAllocation, PropagatesErrors) {
  auto node = fleece_test::MemoryNode::create(64 * 1024);
  node->set_fail_hook([](auto, auto, auto) { return EIO; });
  auto e = std::make_shared<Export>();
  e->name = "d";
  e->root = node;
  MetaContextPtr ctx = MetaContextRegistry().resolve(e, "base:allocation");
  auto res = nbd_test::run_task(ctx->extents(0, 4096, 10));
  ASSERT_FALSE(res.is_ok());
  EXPECT_EQ(res.status().code(), EIO);
}

}  // namespace
}  // namespace server::nbd
