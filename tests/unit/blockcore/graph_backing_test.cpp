// Graph with backing and data-file children, using fake drivers registered in a
// NodeFactory: "blob" (a RAM node standing for an image file, no children) and "fmt" (a
// format node over a `file` child that takes `backing` and `data-file` and, with
// BackingMode::kFromImage, opens the backing chain its fake "image header" names through
// OpenRequest::open_implicit_child). Covers references and inline children, the
// permission rules of backing nodes, implicit chains (removal, depth limit, rollback),
// and drivers that take neither child.
#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "blockcore/graph.h"
#include "testing/memory_node.h"

namespace blockcore {
namespace {

constexpr uint64_t kSize = 64 * 1024;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A RAM node with children and a description, for both fake drivers.
class FakeNode final : public fleece_test::MemoryNode {
 public:
  FakeNode(const NodeSpec& spec, std::string driver_desc)
      : MemoryNode(spec.node_name, info_for(spec)), desc_(std::move(driver_desc)) {}
  std::string describe() const override { return desc_; }
  void attach(ChildRole role, BlockNodePtr child) {
    if (child) add_child(role, std::move(child));
  }

 private:
  static NodeInfo info_for(const NodeSpec& spec) {
    NodeInfo info = default_info(kSize);
    info.read_only = spec.read_only;
    return info;
  }
  std::string desc_;
};

NodeSpec blob(const std::string& name, const std::string& filename, bool read_only = false) {
  NodeSpec s;
  s.node_name = name;
  s.driver = "blob";
  s.read_only = read_only;
  s.file.filename = filename;
  return s;
}

ChildRef ref(const std::string& name) { return ChildRef{name, nullptr}; }
ChildRef inline_ref(const NodeSpec& spec) { return ChildRef{"", std::make_shared<NodeSpec>(spec)}; }

// A "fmt" node over an inline blob `filename`.
NodeSpec fmt(const std::string& name, const std::string& filename, bool read_only = false) {
  NodeSpec s;
  s.node_name = name;
  s.driver = "fmt";
  s.read_only = read_only;
  s.file_child = inline_ref(blob("", filename));
  return s;
}

class GraphBackingTest : public ::testing::Test {
 protected:
  GraphBackingTest() : pool_(0), graph_(pool_, make_factory()) {}

  NodeFactory make_factory() {
    NodeFactory f = NodeFactory::with_builtin_drivers();
    f.add(DriverEntry{"blob", false, false, [this](const OpenRequest& req) -> Result<BlockNodePtr> {
                        if (req.spec.file.filename == fail_file_) {
                          return Status::io_error("blob: cannot open " + fail_file_);
                        }
                        auto n = std::make_shared<FakeNode>(req.spec, req.spec.file.filename);
                        opened_.push_back(n);
                        return BlockNodePtr(n);
                      }});
    DriverEntry e{"fmt", /*takes_file_child=*/true, /*stable_file_reads=*/true,
                  [this](const OpenRequest& req) { return open_fmt(req); }};
    e.takes_backing = true;
    e.takes_data_file = true;
    f.add(std::move(e));
    return f;
  }

  // The fake qcow2: the "header" of a file names its backing file in header_.
  Result<BlockNodePtr> open_fmt(const OpenRequest& req) {
    depths_.push_back(req.chain.depth);
    auto n = std::make_shared<FakeNode>(req.spec, "fmt");
    n->attach(ChildRole::kFile, req.file_child);
    n->attach(ChildRole::kDataFile, req.data_file_child);
    if (req.spec.backing_mode == BackingMode::kChild) {
      EXPECT_TRUE(req.backing_child);
      n->attach(ChildRole::kBacking, req.backing_child);
    } else {
      EXPECT_FALSE(req.backing_child);
    }
    if (req.spec.backing_mode == BackingMode::kFromImage) {
      auto it = header_.find(req.file_child->describe());
      if (it != header_.end()) {
        EXPECT_TRUE(req.open_implicit_child);
        NodeSpec b = fmt("", it->second, /*read_only=*/true);
        ChainContext chain = req.chain;
        chain.depth += 1;
        chain.image_ids.push_back(req.file_child->describe());
        Result<BlockNodePtr> backing = req.open_implicit_child(b, chain);
        if (!backing.is_ok()) return backing.status();
        n->attach(ChildRole::kBacking, backing.value());
      }
    }
    if (req.file_child->describe() == fail_fmt_file_) return Status::io_error("fmt: bad header");
    return BlockNodePtr(n);
  }

  void add_ok(const NodeSpec& spec) {
    Result<BlockNodePtr> r = graph_.add(spec);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  }

  BlockNodePtr child(const std::string& parent, ChildRole role) {
    BlockNodePtr p = graph_.find(parent);
    if (!p) return nullptr;
    for (const ChildEdge& e : p->children()) {
      if (e.role == role) return e.node;
    }
    return nullptr;
  }

  io::BlockingPool pool_;
  std::map<std::string, std::string> header_;  // image -> backing image
  std::string fail_file_;                      // blob open fails for this file
  std::string fail_fmt_file_;                  // fmt open fails over this file
  std::vector<unsigned> depths_;               // chain depth of each fmt open
  std::vector<std::weak_ptr<BlockNode>> opened_;
  Graph graph_;
};

TEST_F(GraphBackingTest, BackingByReference) {
  add_ok(blob("base", "base.img"));
  NodeSpec top = fmt("top", "top.img");
  top.backing_mode = BackingMode::kChild;
  top.backing_child = ref("base");
  add_ok(top);
  EXPECT_EQ(child("top", ChildRole::kBacking), graph_.find("base"));
  EXPECT_FALSE(graph_.is_inline("base"));
  EXPECT_EQ(graph_.parents_of(graph_.find("base").get()), std::vector<std::string>{"top"});

  // Reading the backing node is fine; writing it is not, from an export or a parent.
  EXPECT_TRUE(graph_.add_user("base", "export 'peek'", /*write=*/false).is_ok());
  Status w = graph_.add_user("base", "export 'w'", /*write=*/true);
  EXPECT_EQ(w.code(), EBUSY);
  EXPECT_TRUE(contains(w.message(), "needs it unchanged")) << w.message();
  NodeSpec writer;
  writer.node_name = "writer";
  writer.driver = "raw";
  writer.file_child = ref("base");
  Result<BlockNodePtr> r = graph_.add(writer);
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_FALSE(graph_.find("writer"));

  // The backing node outlives its parent (it was added on its own).
  EXPECT_EQ(graph_.remove("base").code(), EBUSY);
  ASSERT_TRUE(graph_.remove("top").is_ok());
  ASSERT_TRUE(graph_.find("base"));
}

TEST_F(GraphBackingTest, WrittenNodeCannotBecomeBacking) {
  add_ok(blob("base", "base.img"));
  ASSERT_TRUE(graph_.add_user("base", "export 'live'", /*write=*/true).is_ok());
  NodeSpec top = fmt("top", "top.img");
  top.backing_mode = BackingMode::kChild;
  top.backing_child = ref("base");
  Result<BlockNodePtr> r = graph_.add(top);
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_TRUE(contains(r.status().message(), "export 'live'")) << r.status().message();
  EXPECT_EQ(graph_.nodes().size(), 1u);  // the inline file child was rolled back
}

TEST_F(GraphBackingTest, InlineBackingIsReadOnlyAndRemovedWithParent) {
  NodeSpec top = fmt("top", "top.img");  // writable
  top.backing_mode = BackingMode::kChild;
  top.backing_child = inline_ref(fmt("", "base.img"));  // not marked read-only
  add_ok(top);
  BlockNodePtr base = child("top", ChildRole::kBacking);
  ASSERT_TRUE(base);
  EXPECT_TRUE(base->read_only());
  EXPECT_EQ(base->name().rfind("#block", 0), 0u) << base->name();
  EXPECT_TRUE(graph_.is_inline(base->name()));
  EXPECT_FALSE(graph_.find("top")->read_only());
  EXPECT_EQ(graph_.nodes().size(), 4u);  // top, its file, base, base's file
  base.reset();
  ASSERT_TRUE(graph_.remove("top").is_ok());
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(GraphBackingTest, SameNodeAsFileAndBackingIsRefused) {
  add_ok(blob("f0", "f0.img"));
  NodeSpec top;
  top.node_name = "top";
  top.driver = "fmt";
  top.file_child = ref("f0");
  top.backing_mode = BackingMode::kChild;
  top.backing_child = ref("f0");
  Result<BlockNodePtr> r = graph_.add(top);
  EXPECT_EQ(r.status().code(), EBUSY) << r.status().to_string();
}

TEST_F(GraphBackingTest, NoBackingOpensNothingFromTheHeader) {
  header_["top.img"] = "base.img";
  NodeSpec top = fmt("top", "top.img");
  top.backing_mode = BackingMode::kNone;
  add_ok(top);
  EXPECT_FALSE(child("top", ChildRole::kBacking));
  EXPECT_EQ(graph_.nodes().size(), 2u);
}

TEST_F(GraphBackingTest, ImplicitChainIsRegisteredAndRemovedWithParent) {
  header_["top.img"] = "mid.img";
  header_["mid.img"] = "base.img";
  add_ok(fmt("top", "top.img"));
  EXPECT_EQ(depths_, (std::vector<unsigned>{0, 1, 2}));
  BlockNodePtr mid = child("top", ChildRole::kBacking);
  ASSERT_TRUE(mid);
  EXPECT_TRUE(mid->read_only());
  EXPECT_TRUE(graph_.is_inline(mid->name()));
  EXPECT_EQ(graph_.parents_of(mid.get()), std::vector<std::string>{"top"});
  EXPECT_EQ(graph_.nodes().size(), 6u);  // three fmt nodes and their files
  // Nothing may write a node of the chain.
  EXPECT_EQ(graph_.add_user(mid->name(), "export 'x'", true).code(), EINVAL);  // read-only
  EXPECT_EQ(graph_.remove(mid->name()).code(), EBUSY);
  mid.reset();
  ASSERT_TRUE(graph_.remove("top").is_ok());
  EXPECT_TRUE(graph_.nodes().empty());
  for (const auto& w : opened_) EXPECT_TRUE(w.expired());
}

TEST_F(GraphBackingTest, ChainDeeperThanTheLimitIsEloop) {
  header_["loop.img"] = "loop.img";  // a header naming itself
  Result<BlockNodePtr> r = graph_.add(fmt("top", "loop.img"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ELOOP);
  EXPECT_TRUE(contains(r.status().message(), "backing chain deeper than 64"))
      << r.status().message();
  EXPECT_EQ(depths_.size(), kMaxImplicitChainDepth + 1);
  EXPECT_TRUE(graph_.nodes().empty());
  for (const auto& w : opened_) EXPECT_TRUE(w.expired());
}

TEST_F(GraphBackingTest, FailureDeepInTheChainRollsEverythingBack) {
  header_["top.img"] = "mid.img";
  header_["mid.img"] = "gone.img";
  fail_file_ = "gone.img";
  add_ok(blob("other", "other.img"));
  Result<BlockNodePtr> r = graph_.add(fmt("top", "top.img"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EIO);
  EXPECT_EQ(graph_.nodes().size(), 1u);
  ASSERT_TRUE(graph_.find("other"));

  // The parent failing after its chain opened releases the chain too.
  fail_file_.clear();
  header_["mid.img"] = "base.img";
  fail_fmt_file_ = "top.img";
  r = graph_.add(fmt("top", "top.img"));
  EXPECT_EQ(r.status().code(), EIO);
  EXPECT_EQ(graph_.nodes().size(), 1u);
  size_t alive = 0;
  for (const auto& w : opened_) alive += !w.expired();
  EXPECT_EQ(alive, 1u);  // "other"
}

TEST_F(GraphBackingTest, DataFileIsWrittenLikeFile) {
  add_ok(blob("data", "data.img"));
  NodeSpec top = fmt("top", "top.img");
  top.data_file_child = ref("data");
  add_ok(top);
  EXPECT_EQ(child("top", ChildRole::kDataFile), graph_.find("data"));
  EXPECT_EQ(graph_.add_user("data", "export 'x'", true).code(), EBUSY);
  NodeSpec second = fmt("second", "second.img");
  second.data_file_child = ref("data");
  Result<BlockNodePtr> r = graph_.add(second);
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_TRUE(contains(r.status().message(), "two writers")) << r.status().message();

  // Inline data-file children follow the `file` rules.
  NodeSpec third = fmt("third", "third.img");
  third.data_file_child = inline_ref(blob("", "d3.img", /*read_only=*/true));
  EXPECT_EQ(graph_.add(third).status().code(), EINVAL);
  third.data_file_child = inline_ref(blob("", "d3.img"));
  add_ok(third);
  EXPECT_FALSE(child("third", ChildRole::kDataFile)->read_only());
}

TEST_F(GraphBackingTest, DriversWithoutBackingOrDataFileRefuseThem) {
  add_ok(blob("f0", "f0.img"));
  NodeSpec raw;
  raw.node_name = "r0";
  raw.driver = "raw";
  raw.file_child = ref("f0");
  raw.backing_mode = BackingMode::kNone;
  Result<BlockNodePtr> r = graph_.add(raw);
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_TRUE(contains(r.status().message(), "takes no 'backing'")) << r.status().message();
  raw.backing_mode = BackingMode::kFromImage;
  raw.data_file_child = ref("f0");
  r = graph_.add(raw);
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_TRUE(contains(r.status().message(), "takes no 'data-file'")) << r.status().message();
  EXPECT_EQ(graph_.nodes().size(), 1u);
}

TEST(NodeSpecTest, EquivalentAndReferencesCoverBackingAndDataFile) {
  NodeSpec a = fmt("top", "top.img");
  NodeSpec b = a;
  EXPECT_TRUE(equivalent(a, b));
  b.backing_mode = BackingMode::kNone;
  EXPECT_FALSE(equivalent(a, b));
  a.backing_mode = b.backing_mode = BackingMode::kChild;
  a.backing_child = ref("base");
  b.backing_child = ref("base");
  EXPECT_TRUE(equivalent(a, b));
  b.backing_child = inline_ref(blob("", "base.img"));
  EXPECT_FALSE(equivalent(a, b));
  a.backing_child = inline_ref(blob("", "base.img"));
  EXPECT_TRUE(equivalent(a, b));
  b.backing_child = inline_ref(blob("", "other.img"));
  EXPECT_FALSE(equivalent(a, b));
  b.backing_child = a.backing_child;
  b.data_file_child = ref("data");
  EXPECT_FALSE(equivalent(a, b));

  NodeSpec c = fmt("c", "c.img");
  c.file_child = ref("f");
  c.backing_mode = BackingMode::kChild;
  NodeSpec inner = fmt("", "x.img");
  inner.backing_mode = BackingMode::kChild;
  inner.backing_child = ref("deep");
  c.backing_child = inline_ref(inner);
  c.data_file_child = ref("d");
  std::vector<std::string> refs;
  collect_references(c, refs);
  EXPECT_EQ(refs, (std::vector<std::string>{"f", "deep", "d"}));
}

}  // namespace
}  // namespace blockcore
