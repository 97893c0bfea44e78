// Graph on real temp files: file + raw nodes by reference and inline, generated names,
// removal rules (in use, cascades), permission conflicts, and all-or-nothing adds.
#include "blockcore/graph.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "blockcore/node_name.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::read_file;
using fleece_test::run_task;
using fleece_test::TempDir;

constexpr uint64_t kSize = 1 << 20;

NodeSpec file_spec(const std::string& name, const std::string& path, bool read_only = false) {
  NodeSpec s;
  s.node_name = name;
  s.driver = "file";
  s.read_only = read_only;
  s.file.filename = path;
  return s;
}

NodeSpec raw_ref(const std::string& name, const std::string& child, bool read_only = false) {
  NodeSpec s;
  s.node_name = name;
  s.driver = "raw";
  s.read_only = read_only;
  s.file_child = ChildRef{child, nullptr};
  return s;
}

NodeSpec raw_inline(const std::string& name, const NodeSpec& child, bool read_only = false) {
  NodeSpec s;
  s.node_name = name;
  s.driver = "raw";
  s.read_only = read_only;
  s.file_child = ChildRef{"", std::make_shared<NodeSpec>(child)};
  return s;
}

std::vector<std::string> names(const Graph& g) {
  std::vector<std::string> out;
  for (const BlockNodePtr& n : g.nodes()) out.push_back(n->name());
  return out;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class GraphTest : public ::testing::Test {
 protected:
  GraphTest() : pool_(0), graph_(pool_) {
    image_ = dir_.file("disk:a,b c.img");  // names are never parsed
    make_file(image_, kSize);
    other_ = dir_.file("other.img");
    make_file(other_, kSize);
  }

  // Adds and drops the returned reference, so only the graph holds the node.
  void add_ok(const NodeSpec& spec) {
    Result<BlockNodePtr> r = graph_.add(spec);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  }

  TempDir dir_;
  io::BlockingPool pool_;
  Graph graph_;
  std::string image_;
  std::string other_;
};

TEST_F(GraphTest, AddsFileAndRawByReference) {
  add_ok(file_spec("f0", image_));
  Result<BlockNodePtr> r = graph_.add(raw_ref("r0", "f0"));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  BlockNodePtr raw = r.value();
  EXPECT_EQ(raw->name(), "r0");
  EXPECT_EQ(raw->driver(), "raw");
  EXPECT_EQ(raw->size(), kSize);
  EXPECT_FALSE(raw->read_only());
  EXPECT_EQ(names(graph_), (std::vector<std::string>{"f0", "r0"}));
  BlockNodePtr file = graph_.find("f0");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->describe(), image_);
  EXPECT_EQ(graph_.parents_of(file.get()), std::vector<std::string>{"r0"});
  EXPECT_TRUE(graph_.parents_of(raw.get()).empty());
  EXPECT_FALSE(graph_.find("nope"));
  EXPECT_FALSE(graph_.is_inline("f0"));

  // Data written through the raw node reaches the file.
  std::vector<std::byte> data(4096, std::byte{0x5a});
  ASSERT_TRUE(run_task(raw->write(8192, data, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(raw->flush()).is_ok());
  EXPECT_EQ(read_file(image_, 8192, 4096), data);
}

TEST_F(GraphTest, InlineChildGetsGeneratedNameAndIsRemovedWithParent) {
  Result<BlockNodePtr> r = graph_.add(raw_inline("r0", file_spec("", image_)));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r.value()->children().size(), 1u);
  const std::string child = r.value()->children()[0].node->name();
  EXPECT_TRUE(is_generated_node_name(child)) << child;
  EXPECT_EQ(child.rfind("#block", 0), 0u);
  EXPECT_TRUE(graph_.is_inline(child));
  EXPECT_EQ(names(graph_), (std::vector<std::string>{child, "r0"}));
  EXPECT_EQ(graph_.parents_of(graph_.find(child).get()), std::vector<std::string>{"r0"});

  // A second inline child gets a different name.
  Result<BlockNodePtr> r2 = graph_.add(raw_inline("r1", file_spec("", other_)));
  ASSERT_TRUE(r2.is_ok()) << r2.status().to_string();
  EXPECT_NE(r2.value()->children()[0].node->name(), child);

  // The inline child cannot be removed under its parent.
  Status busy = graph_.remove(child);
  EXPECT_EQ(busy.code(), EBUSY);
  EXPECT_TRUE(contains(busy.message(), "node 'r0'")) << busy.message();

  r = Status::error(EIO, "drop");  // release the test's references
  r2 = Status::error(EIO, "drop");
  ASSERT_TRUE(graph_.remove("r0").is_ok());
  EXPECT_FALSE(graph_.find(child));
  EXPECT_EQ(names(graph_).size(), 2u);  // r1 and its child remain
  ASSERT_TRUE(graph_.remove("r1").is_ok());
  EXPECT_TRUE(graph_.nodes().empty());
  // The files were closed: a writable node can open them again.
  add_ok(file_spec("again", image_));
}

TEST_F(GraphTest, NamedInlineChildIsRemovedWithParentUnlessStillReferenced) {
  add_ok(raw_inline("r0", file_spec("img", image_)));
  EXPECT_TRUE(graph_.is_inline("img"));
  add_ok(raw_ref("reader", "img", /*read_only=*/true));  // reading it alongside is fine
  ASSERT_TRUE(graph_.remove("r0").is_ok());
  ASSERT_TRUE(graph_.find("img"));  // still used by "reader": it now stands on its own
  EXPECT_FALSE(graph_.is_inline("img"));
  ASSERT_TRUE(graph_.remove("reader").is_ok());  // "img" is not reader's inline child
  ASSERT_TRUE(graph_.find("img"));
  ASSERT_TRUE(graph_.remove("img").is_ok());
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(GraphTest, ReadOnlyParentOpensInlineChildReadOnly) {
  NodeSpec child = file_spec("", image_);  // not marked read-only itself
  add_ok(raw_inline("r0", child, /*read_only=*/true));
  BlockNodePtr r0 = graph_.find("r0");
  ASSERT_TRUE(r0);
  EXPECT_TRUE(r0->read_only());
  EXPECT_TRUE(r0->children()[0].node->read_only());
}

TEST_F(GraphTest, WritableParentWithReadOnlyInlineChildIsRefused) {
  Result<BlockNodePtr> r = graph_.add(raw_inline("r0", file_spec("", image_, /*read_only=*/true)));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_TRUE(contains(r.status().message(), "read-only")) << r.status().message();
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(GraphTest, DuplicateNameIsEexist) {
  add_ok(file_spec("f0", image_));
  Result<BlockNodePtr> r = graph_.add(file_spec("f0", other_));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EEXIST);
  EXPECT_TRUE(contains(r.status().message(), "'f0'"));
  EXPECT_EQ(graph_.find("f0")->describe(), image_);  // the first one is untouched

  // An inline child may not take an existing name either; nothing stays registered.
  Result<BlockNodePtr> r2 = graph_.add(raw_inline("r0", file_spec("f0", other_)));
  EXPECT_EQ(r2.status().code(), EEXIST);
  EXPECT_EQ(names(graph_), std::vector<std::string>{"f0"});
}

TEST_F(GraphTest, DanglingReferenceIsEnoent) {
  Result<BlockNodePtr> r = graph_.add(raw_ref("r0", "missing"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_TRUE(contains(r.status().message(), "'missing'")) << r.status().message();
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(GraphTest, BadSpecsAreEinval) {
  NodeSpec unknown = file_spec("q", image_);
  unknown.driver = "vmdk";
  Result<BlockNodePtr> r = graph_.add(unknown);
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_TRUE(contains(r.status().message(), "known drivers: file, raw")) << r.status().message();

  EXPECT_EQ(graph_.add(file_spec("", image_)).status().code(), EINVAL);         // no name
  EXPECT_EQ(graph_.add(file_spec("#block1", image_)).status().code(), EINVAL);  // reserved
  EXPECT_EQ(graph_.add(file_spec("a b", image_)).status().code(), EINVAL);

  NodeSpec no_child = raw_ref("r0", "x");
  no_child.file_child.reset();
  EXPECT_EQ(graph_.add(no_child).status().code(), EINVAL);
  NodeSpec file_with_child = file_spec("f1", image_);
  file_with_child.file_child = ChildRef{"x", nullptr};
  EXPECT_EQ(graph_.add(file_with_child).status().code(), EINVAL);
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(GraphTest, RemoveRefusesNodesInUse) {
  add_ok(file_spec("f0", image_));
  add_ok(raw_ref("r0", "f0"));

  Status by_parent = graph_.remove("f0");
  EXPECT_EQ(by_parent.code(), EBUSY);
  EXPECT_TRUE(contains(by_parent.message(), "in use by node 'r0'")) << by_parent.message();

  BlockNodePtr held = graph_.find("r0");  // like an export or a connection
  Status by_holder = graph_.remove("r0");
  EXPECT_EQ(by_holder.code(), EBUSY);
  EXPECT_TRUE(contains(by_holder.message(), "1 other reference")) << by_holder.message();
  EXPECT_TRUE(graph_.find("r0"));

  held.reset();
  EXPECT_TRUE(graph_.remove("r0").is_ok());
  EXPECT_TRUE(graph_.remove("f0").is_ok());
  EXPECT_EQ(graph_.remove("f0").code(), ENOENT);
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(GraphTest, TwoWritableParentsAreRefused) {
  add_ok(file_spec("f0", image_));
  add_ok(raw_ref("w0", "f0"));
  Result<BlockNodePtr> r = graph_.add(raw_ref("w1", "f0"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_TRUE(contains(r.status().message(), "two writers")) << r.status().message();
  EXPECT_TRUE(contains(r.status().message(), "node 'w0'")) << r.status().message();
  EXPECT_FALSE(graph_.find("w1"));

  // Readers may join a writer (raw keeps no metadata in its file).
  add_ok(raw_ref("ro", "f0", /*read_only=*/true));
  EXPECT_EQ(graph_.uses_of("f0").size(), 2u);
}

TEST_F(GraphTest, WritableParentOverReadOnlyReferenceIsRefused) {
  add_ok(file_spec("f0", image_, /*read_only=*/true));
  Result<BlockNodePtr> r = graph_.add(raw_ref("r0", "f0"));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_TRUE(contains(r.status().message(), "node 'f0', but it is read-only"))
      << r.status().message();
  add_ok(raw_ref("r1", "f0", /*read_only=*/true));
}

TEST_F(GraphTest, ExportsAndParentsDoNotBothWrite) {
  add_ok(file_spec("f0", image_));
  add_ok(raw_ref("r0", "f0"));
  // Writing f0 directly while r0 writes it would corrupt it.
  Status s = graph_.add_user("f0", "export 'direct'", /*write=*/true);
  EXPECT_EQ(s.code(), EBUSY);
  EXPECT_TRUE(contains(s.message(), "export 'direct'")) << s.message();
  // Reading it is fine, and several exports may write the top node.
  EXPECT_TRUE(graph_.add_user("f0", "export 'peek'", /*write=*/false).is_ok());
  EXPECT_TRUE(graph_.add_user("r0", "export 'a'", /*write=*/true).is_ok());
  EXPECT_TRUE(graph_.add_user("r0", "export 'b'", /*write=*/true).is_ok());
  EXPECT_EQ(graph_.add_user("r0", "export 'a'", true).code(), EEXIST);
  EXPECT_EQ(graph_.add_user("nope", "export 'x'", false).code(), ENOENT);

  Status busy = graph_.remove("r0");
  EXPECT_EQ(busy.code(), EBUSY);
  EXPECT_TRUE(contains(busy.message(), "export 'a', export 'b'")) << busy.message();
  EXPECT_TRUE(graph_.remove_user("r0", "export 'a'").is_ok());
  EXPECT_TRUE(graph_.remove_user("r0", "export 'b'").is_ok());
  EXPECT_EQ(graph_.remove_user("r0", "export 'b'").code(), ENOENT);
  EXPECT_TRUE(graph_.remove("r0").is_ok());

  // And the other way round: a writing export blocks a new writable parent.
  EXPECT_TRUE(graph_.add_user("f0", "export 'w'", /*write=*/true).is_ok());
  Result<BlockNodePtr> r = graph_.add(raw_ref("r1", "f0"));
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_TRUE(contains(r.status().message(), "export 'w'")) << r.status().message();
}

TEST_F(GraphTest, FailedAddLeavesNothingRegistered) {
  add_ok(file_spec("f0", image_));
  // The inner file opens, then the raw window over it fails: both go away.
  NodeSpec inner_raw = raw_inline("", file_spec("inner", other_));
  inner_raw.raw.offset = 2 * kSize;  // past the end
  Result<BlockNodePtr> r = graph_.add(raw_inline("top", inner_raw));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_EQ(names(graph_), std::vector<std::string>{"f0"});
  // "inner" was closed too: its name and its file are free again.
  add_ok(file_spec("inner", other_));

  // A missing file deep inside fails the whole add.
  Result<BlockNodePtr> r2 =
      graph_.add(raw_inline("top", raw_inline("", file_spec("", dir_.file("absent.img")))));
  EXPECT_EQ(r2.status().code(), ENOENT);
  EXPECT_EQ(names(graph_), (std::vector<std::string>{"f0", "inner"}));
}

TEST(GraphFactoryTest, ParentOpenFailureReleasesItsChildren) {
  TempDir dir;
  make_file(dir.file("a.img"), kSize);
  io::BlockingPool pool(0);
  std::weak_ptr<BlockNode> seen_child;
  NodeFactory factory = NodeFactory::with_builtin_drivers();
  factory.add(DriverEntry{"failing", /*takes_file_child=*/true, /*stable_file_reads=*/true,
                          [&](const OpenRequest& req) -> Result<BlockNodePtr> {
                            seen_child = req.file_child;
                            return Status::io_error("failing: cannot open");
                          }});
  Graph graph(pool, factory);
  NodeSpec top;
  top.node_name = "top";
  top.driver = "failing";
  top.file_child = ChildRef{"", std::make_shared<NodeSpec>(file_spec("", dir.file("a.img")))};
  Result<BlockNodePtr> r = graph.add(top);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EIO);
  EXPECT_TRUE(contains(r.status().message(), "node 'top'")) << r.status().message();
  EXPECT_TRUE(graph.nodes().empty());
  EXPECT_TRUE(seen_child.expired());  // the inline file node was closed
}

TEST(GraphFactoryTest, StableReadersRefuseWriters) {
  // A read-only node of a metadata format still needs its file unchanged.
  TempDir dir;
  make_file(dir.file("a.img"), kSize);
  io::BlockingPool pool(0);
  NodeFactory factory = NodeFactory::with_builtin_drivers();
  DriverEntry fmt = *factory.find("raw");
  fmt.name = "fmt";
  fmt.stable_file_reads = true;
  fmt.open = [](const OpenRequest& req) -> Result<BlockNodePtr> {
    NodeSpec s = req.spec;
    s.driver = "raw";
    return NodeFactory::with_builtin_drivers().find("raw")->open(
        OpenRequest{s, req.pool, req.file_child});
  };
  factory.add(fmt);
  Graph graph(pool, factory);
  ASSERT_TRUE(graph.add(file_spec("f0", dir.file("a.img"))).is_ok());
  NodeSpec reader = raw_ref("meta", "f0", /*read_only=*/true);
  reader.driver = "fmt";
  ASSERT_TRUE(graph.add(reader).is_ok());
  Result<BlockNodePtr> w = graph.add(raw_ref("w", "f0"));
  EXPECT_EQ(w.status().code(), EBUSY);
  EXPECT_TRUE(contains(w.status().message(), "needs it unchanged")) << w.status().message();
  EXPECT_EQ(graph.add_user("f0", "export 'x'", /*write=*/true).code(), EBUSY);
}

}  // namespace
}  // namespace blockcore
