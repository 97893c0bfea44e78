// The `qcow2` node driver in the configuration: file, backing (absent / null / a name /
// an inline node) and data-file, the read-only rule of inline backing nodes, and the
// located errors for dangling references, cycles through backing and data-file,
// duplicate names and writers of backing nodes.
#include <gtest/gtest.h>

#include <string>

#include "config/yaml_loader.h"

namespace config {
namespace {

using blockcore::BackingMode;

LoadResult load(const std::string& yaml) { return load_config_string(yaml, "q.yaml"); }

const blockcore::NodeSpec& node(const Config& c, size_t i) { return c.nodes.at(i); }

// True if some error is at `line` with `path` and a message containing `part`.
bool has_error(const LoadResult& r, int line, const std::string& path, const std::string& part) {
  for (const ConfigError& e : r.errors()) {
    if (e.where.line == line && e.path == path && e.message.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(Qcow2Config, BackingAbsentNullNameAndInline) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: base, driver: qcow2, read-only: true,\n"
      "      file: { driver: file, filename: /i/base.qcow2 } }\n"
      "  - node-name: from-image\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/a.qcow2 }\n"
      "  - node-name: none\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/b.qcow2 }\n"
      "    backing: null\n"
      "  - node-name: by-name\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/c.qcow2 }\n"
      "    backing: base\n"
      "  - node-name: inline\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/d.qcow2 }\n"
      "    backing:\n"
      "      driver: qcow2\n"
      "      file: { driver: file, filename: /i/d-base.qcow2 }\n"
      "      backing: ~\n");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Config& c = r.value();
  EXPECT_EQ(node(c, 0).backing_mode, BackingMode::kFromImage);
  EXPECT_EQ(node(c, 1).backing_mode, BackingMode::kFromImage);
  EXPECT_FALSE(node(c, 1).backing_child);
  ASSERT_TRUE(node(c, 1).file_child && node(c, 1).file_child->inline_spec);
  EXPECT_EQ(node(c, 1).file_child->inline_spec->file.filename, "/i/a.qcow2");
  EXPECT_EQ(node(c, 2).backing_mode, BackingMode::kNone);
  EXPECT_FALSE(node(c, 2).backing_child);
  EXPECT_EQ(node(c, 3).backing_mode, BackingMode::kChild);
  ASSERT_TRUE(node(c, 3).backing_child);
  EXPECT_EQ(node(c, 3).backing_child->node_name, "base");
  EXPECT_EQ(node(c, 4).backing_mode, BackingMode::kChild);
  ASSERT_TRUE(node(c, 4).backing_child && node(c, 4).backing_child->inline_spec);
  const blockcore::NodeSpec& b = *node(c, 4).backing_child->inline_spec;
  EXPECT_EQ(b.driver, "qcow2");
  EXPECT_EQ(b.backing_mode, BackingMode::kNone);
  // An inline backing node is read-only under a writable parent, and so is its file.
  EXPECT_FALSE(node(c, 4).read_only);
  EXPECT_TRUE(b.read_only);
  EXPECT_TRUE(b.file_child->inline_spec->read_only);
  EXPECT_FALSE(node(c, 4).file_child->inline_spec->read_only);
}

TEST(Qcow2Config, ReadOnlyBackingUnderWritableParentIsFine) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: base, driver: raw, read-only: true,\n"
      "      file: { driver: file, filename: /i/base.raw } }\n"
      "  - node-name: top\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/top.qcow2 }\n"
      "    backing: base\n"
      "  - node-name: top2\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/top2.qcow2 }\n"
      "    backing: { node-name: b2, driver: raw, read-only: true,\n"
      "               file: { driver: file, filename: /i/b2.raw } }\n"
      "exports:\n"
      "  - { name: top, node: top, writable: true }\n"
      "  - { name: base, node: base }\n");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(r.value().nodes[2].backing_child->inline_spec->read_only);
}

TEST(Qcow2Config, DataFileNameOrInline) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: data, driver: file, filename: /i/data.raw }\n"
      "  - node-name: a\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/a.qcow2 }\n"
      "    data-file: data\n"
      "  - node-name: b\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/b.qcow2 }\n"
      "    data-file: { driver: file, filename: /i/b.data }\n");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Config& c = r.value();
  ASSERT_TRUE(node(c, 1).data_file_child);
  EXPECT_EQ(node(c, 1).data_file_child->node_name, "data");
  ASSERT_TRUE(node(c, 2).data_file_child && node(c, 2).data_file_child->inline_spec);
  EXPECT_EQ(node(c, 2).data_file_child->inline_spec->file.filename, "/i/b.data");
  EXPECT_FALSE(node(c, 2).data_file_child->inline_spec->read_only);
  EXPECT_FALSE(node(c, 0).data_file_child);
}

TEST(Qcow2Config, MissingFileAndUnknownKeys) {
  LoadResult r = load("nodes:\n  - { node-name: a, driver: qcow2, backing: null }\n");
  EXPECT_TRUE(has_error(r, 2, "nodes[0]", "missing required key 'file'")) << r.status().to_string();
  r = load(
      "nodes:\n"
      "  - node-name: a\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /x }\n"
      "    backing-file: /y\n");
  EXPECT_TRUE(has_error(r, 5, "nodes[0]", "unknown key 'backing-file'")) << r.status().to_string();
  r = load(
      "nodes:\n"
      "  - node-name: a\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /x }\n"
      "    backing: [b]\n");
  EXPECT_TRUE(has_error(r, 5, "nodes[0].backing", "expected a node name or an inline node"))
      << r.status().to_string();
  // Other drivers do not take backing or data-file.
  r = load(
      "nodes:\n"
      "  - { node-name: f, driver: file, filename: /x }\n"
      "  - { node-name: r, driver: raw, file: f, backing: null }\n");
  EXPECT_TRUE(has_error(r, 3, "nodes[1]", "unknown key 'backing'")) << r.status().to_string();
}

TEST(Qcow2Config, DanglingBackingAndDataFileReferences) {
  LoadResult r = load(
      "nodes:\n"
      "  - node-name: a\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /x }\n"
      "    backing: nosuch\n"
      "    data-file: nodata\n");
  EXPECT_EQ(r.errors().size(), 2u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 5, "nodes[0].backing", "unknown node 'nosuch'"));
  EXPECT_TRUE(has_error(r, 6, "nodes[0].data-file", "unknown node 'nodata'"));
}

TEST(Qcow2Config, CyclesThroughBacking) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: a, driver: qcow2, file: { driver: file, filename: /a }, backing: b }\n"
      "  - { node-name: b, driver: qcow2, file: { driver: file, filename: /b }, backing: a }\n");
  ASSERT_FALSE(r.is_ok());
  EXPECT_TRUE(has_error(r, 3, "nodes[1].backing", "makes a cycle")) << r.status().to_string();

  r = load(
      "nodes:\n"
      "  - { node-name: a, driver: qcow2, file: { driver: file, filename: /a }, backing: a }\n");
  EXPECT_TRUE(has_error(r, 2, "nodes[0].backing", "cannot use itself")) << r.status().to_string();

  // Through an inline named backing node and a data-file reference.
  r = load(
      "nodes:\n"
      "  - node-name: a\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /a }\n"
      "    backing:\n"
      "      node-name: inner\n"
      "      driver: qcow2\n"
      "      file: { driver: file, filename: /i }\n"
      "      data-file: a\n");
  EXPECT_TRUE(has_error(r, 9, "nodes[0].backing.data-file", "makes a cycle"))
      << r.status().to_string();
}

TEST(Qcow2Config, DuplicateNamesInBackingChildren) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: base, driver: file, filename: /b }\n"
      "  - node-name: a\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /a }\n"
      "    backing: { node-name: base, driver: file, filename: /c }\n");
  EXPECT_TRUE(has_error(r, 6, "nodes[1].backing.node-name", "duplicate node name 'base'"))
      << r.status().to_string();
}

TEST(Qcow2Config, BackingNodeMustNotBeWritten) {
  // A writable parent writes `base` as its file while `top` reads it as backing.
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: base, driver: file, filename: /b }\n"
      "  - { node-name: w, driver: raw, file: base }\n"
      "  - { node-name: top, driver: qcow2, file: { driver: file, filename: /t }, backing: base }\n");
  EXPECT_TRUE(has_error(r, 4, "nodes[2].backing", "is the backing node of nodes[2] ('top')"))
      << r.status().to_string();
  // A writable export of a backing node.
  r = load(
      "nodes:\n"
      "  - { node-name: base, driver: file, filename: /b }\n"
      "  - { node-name: top, driver: qcow2, file: { driver: file, filename: /t }, backing: base }\n"
      "exports:\n"
      "  - { name: e, node: base, writable: true }\n");
  EXPECT_TRUE(has_error(r, 5, "exports[0].node", "backing node of nodes[1] ('top')"))
      << r.status().to_string();
  // Reading it is fine.
  r = load(
      "nodes:\n"
      "  - { node-name: base, driver: file, filename: /b }\n"
      "  - { node-name: top, driver: qcow2, file: { driver: file, filename: /t }, backing: base }\n"
      "exports:\n"
      "  - { name: e, node: base }\n");
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
}

}  // namespace
}  // namespace config
