// Dirty bitmaps in the configuration: `bitmap-file` on file and raw nodes (accepted,
// kept as written, refused on qcow2 with a located reason, one container per node, never
// an image file), the `bitmaps:` section's `disabled` key, and the rule that a
// persistent bitmap needs a node that can store it.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "config/yaml_loader.h"

namespace config {
namespace {

LoadResult load(const std::string& yaml) { return load_config_string(yaml, "b.yaml"); }

// True if some error is at `line` with `path` and a message containing `part`.
bool has_error(const LoadResult& r, int line, const std::string& path, const std::string& part) {
  for (const ConfigError& e : r.errors()) {
    if (e.where.line == line && e.path == path && e.message.find(part) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(BitmapConfig, BitmapFileOnFileAndRawNodes) {
  LoadResult r = load(
      "nodes:\n"
      "  - node-name: img\n"
      "    driver: file\n"
      "    filename: /i/a.img\n"
      "    bitmap-file: /i/a.img.bitmaps\n"
      "  - node-name: disk0\n"
      "    driver: raw\n"
      "    file: { driver: file, filename: /i/b.img }\n"
      "    bitmap-file: \"relative dir/b:1,x.qcow2\"\n"
      "  - node-name: plain\n"
      "    driver: raw\n"
      "    file: { driver: file, filename: /i/c.img, bitmap-file: /i/c.bitmaps }\n");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Config& c = r.value();
  ASSERT_TRUE(c.nodes[0].bitmap_file);
  EXPECT_EQ(*c.nodes[0].bitmap_file, "/i/a.img.bitmaps");
  // A relative name is kept as written (it resolves like `filename`: against fleeced's
  // working directory), and nothing in it is parsed.
  ASSERT_TRUE(c.nodes[1].bitmap_file);
  EXPECT_EQ(*c.nodes[1].bitmap_file, "relative dir/b:1,x.qcow2");
  EXPECT_FALSE(c.nodes[1].file_child->inline_spec->bitmap_file);
  EXPECT_FALSE(c.nodes[2].bitmap_file);
  ASSERT_TRUE(c.nodes[2].file_child->inline_spec->bitmap_file);
  EXPECT_EQ(*c.nodes[2].file_child->inline_spec->bitmap_file, "/i/c.bitmaps");
}

TEST(BitmapConfig, BitmapFileRefusedOnQcow2WithReason) {
  LoadResult r = load(
      "nodes:\n"
      "  - node-name: disk0\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/d.qcow2 }\n"
      "    bitmap-file: /i/d.bitmaps\n");
  ASSERT_EQ(r.errors().size(), 1u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 5, "nodes[0].bitmap-file",
                        "driver 'qcow2' takes no bitmap-file (it keeps persistent bitmaps in its "
                        "own image); bitmap-file is for file and raw nodes"))
      << r.status().to_string();
  EXPECT_EQ(r.errors()[0].to_string().rfind("b.yaml:5: nodes[0].bitmap-file: ", 0), 0u);
}

TEST(BitmapConfig, BitmapFileMustBeAStringAndNotEmpty) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: a, driver: file, filename: /i/a, bitmap-file: \"\" }\n"
      "  - { node-name: b, driver: file, filename: /i/b,\n"
      "      bitmap-file: [x] }\n");
  EXPECT_EQ(r.errors().size(), 2u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 2, "nodes[0].bitmap-file", "the file name is empty"));
  EXPECT_TRUE(has_error(r, 4, "nodes[1].bitmap-file", "expected a string"));
}

TEST(BitmapConfig, OneContainerPerNode) {
  LoadResult r = load(
      "nodes:\n"
      "  - node-name: a\n"
      "    driver: file\n"
      "    filename: /i/a.img\n"
      "    bitmap-file: /i/shared.bitmaps\n"
      "  - node-name: b\n"
      "    driver: raw\n"
      "    file: { driver: file, filename: /i/b.img }\n"
      "    bitmap-file: /i/x/../shared.bitmaps\n");
  ASSERT_EQ(r.errors().size(), 1u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 9, "nodes[1].bitmap-file",
                        "bitmap-file '/i/x/../shared.bitmaps' is already the bitmap-file of "
                        "nodes[0] ('a') (at b.yaml:5); every node needs its own container"))
      << r.status().to_string();
}

TEST(BitmapConfig, RelativeAndAbsoluteSpellingsOfOneContainerClash) {
  const std::string cwd = std::filesystem::current_path().string();
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: a, driver: file, filename: /i/a.img, bitmap-file: c.bitmaps }\n"
      "  - { node-name: b, driver: file, filename: /i/b.img, bitmap-file: " + cwd +
      "/./c.bitmaps }\n");
  ASSERT_EQ(r.errors().size(), 1u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 3, "nodes[1].bitmap-file", "already the bitmap-file of nodes[0] ('a')"));
}

TEST(BitmapConfig, ContainerMustNotBeAnImageFile) {
  LoadResult r = load(
      "nodes:\n"
      "  - node-name: disk0\n"
      "    driver: raw\n"
      "    file: { driver: file, filename: /i/disk0.img }\n"
      "    bitmap-file: /i/disk0.img\n");
  ASSERT_EQ(r.errors().size(), 1u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 5, "nodes[0].bitmap-file",
                        "bitmap-file '/i/disk0.img' is the image file of nodes[0].file (at "
                        "b.yaml:4); the bitmaps container must be a file of its own"))
      << r.status().to_string();
}

TEST(BitmapConfig, DisabledKeyAndDefaults) {
  LoadResult r = load(
      "nodes:\n"
      "  - node-name: disk0\n"
      "    driver: qcow2\n"
      "    file: { driver: file, filename: /i/d.qcow2 }\n"
      "bitmaps:\n"
      "  - { node: disk0, name: nightly }\n"
      "  - { node: disk0, name: paused, disabled: true, persistent: false, granularity: 1M }\n");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  const Config& c = r.value();
  ASSERT_EQ(c.bitmaps.size(), 2u);
  EXPECT_EQ(c.bitmaps[0].name, "nightly");
  EXPECT_TRUE(c.bitmaps[0].persistent);
  EXPECT_FALSE(c.bitmaps[0].disabled);
  EXPECT_EQ(c.bitmaps[0].granularity, 65536u);
  EXPECT_EQ(c.bitmaps[0].where.line, 6);
  EXPECT_TRUE(c.bitmaps[1].disabled);
  EXPECT_FALSE(c.bitmaps[1].persistent);
  EXPECT_EQ(c.bitmaps[1].granularity, 1u << 20);
}

TEST(BitmapConfig, DisabledMustBeABoolean) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: d, driver: qcow2, file: { driver: file, filename: /i/d.qcow2 } }\n"
      "bitmaps:\n"
      "  - node: d\n"
      "    name: b\n"
      "    disabled: yes\n");
  ASSERT_EQ(r.errors().size(), 1u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 6, "bitmaps[0].disabled", "expected true or false"));
}

TEST(BitmapConfig, PersistentBitmapNeedsAStore) {
  LoadResult r = load(
      "nodes:\n"
      "  - { node-name: raw0, driver: raw, file: { driver: file, filename: /i/r.img } }\n"
      "  - { node-name: file0, driver: file, filename: /i/f.img }\n"
      "  - { node-name: kept, driver: raw, bitmap-file: /i/k.bitmaps,\n"
      "      file: { driver: file, filename: /i/k.img } }\n"
      "bitmaps:\n"
      "  - { node: raw0, name: nightly }\n"                    // 7: persistent by default
      "  - { node: file0, name: b, persistent: true }\n"       // 8
      "  - { node: raw0, name: scratch, persistent: false }\n"  // fine: in memory
      "  - { node: kept, name: nightly }\n");                  // fine: has a container
  ASSERT_EQ(r.errors().size(), 2u) << r.status().to_string();
  EXPECT_TRUE(has_error(r, 7, "bitmaps[0]",
                        "bitmap 'nightly' is persistent, but node 'raw0' (driver raw) has nowhere "
                        "to store it: give the node a bitmap-file (a qcow2 container for its "
                        "bitmaps), or set persistent: false"))
      << r.status().to_string();
  EXPECT_TRUE(has_error(r, 8, "bitmaps[1]", "node 'file0' (driver file) has nowhere to store it"));
}

}  // namespace
}  // namespace config
