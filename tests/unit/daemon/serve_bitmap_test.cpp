// `fleeced serve IMAGE --bitmap NAME [--bitmap-file PATH]`: the command line and the
// Config it becomes (a persistent bitmap ensured on the served node and offered by the
// export; a raw image keeps its bitmaps in the --bitmap-file container).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/daemon/cli.h"
#include "server/daemon/serve_config.h"

namespace server::daemon {
namespace {

std::optional<CommandLine> parse(std::vector<std::string> args, std::string* error) {
  std::vector<char*> argv;
  static std::string prog = "fleeced";
  argv.push_back(prog.data());
  for (auto& a : args) argv.push_back(a.data());
  return parse_command_line(static_cast<int>(argv.size()), argv.data(), error);
}

blockcore::Result<config::Config> serve(std::vector<std::string> args) {
  std::string err;
  auto cl = parse(std::move(args), &err);
  if (!cl) return blockcore::Status::invalid(err);
  return make_serve_config(*cl, /*activated=*/false);
}

TEST(ServeBitmaps, Qcow2ImageBitmapsAreEnsuredAndOffered) {
  auto cfg = serve({"serve", "/i/d.qcow2", "--format", "qcow2", "--bitmap", "nightly", "--bitmap",
                    "weekly"});
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  ASSERT_EQ(cfg->bitmaps.size(), 2u);
  EXPECT_EQ(cfg->bitmaps[0].node, "disk0");
  EXPECT_EQ(cfg->bitmaps[0].name, "nightly");
  EXPECT_TRUE(cfg->bitmaps[0].persistent);
  EXPECT_FALSE(cfg->bitmaps[0].disabled);
  EXPECT_EQ(cfg->bitmaps[0].granularity, 65536u);
  EXPECT_EQ(cfg->bitmaps[0].where.to_string(), "--bitmap nightly");
  EXPECT_EQ(cfg->bitmaps[1].name, "weekly");
  ASSERT_EQ(cfg->exports.size(), 1u);
  EXPECT_EQ(cfg->exports[0].node, "disk0");
  EXPECT_EQ(cfg->exports[0].bitmaps, (std::vector<std::string>{"nightly", "weekly"}));
  EXPECT_FALSE(cfg->nodes[0].bitmap_file);
}

TEST(ServeBitmaps, RawImageKeepsThemInTheBitmapFile) {
  auto cfg = serve({"serve", "/i/d.img", "--format", "raw", "--bitmap-file", "rel/d.bitmaps",
                    "--bitmap", "nightly"});
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  ASSERT_EQ(cfg->nodes.size(), 1u);
  EXPECT_EQ(cfg->nodes[0].driver, "raw");
  ASSERT_TRUE(cfg->nodes[0].bitmap_file);
  EXPECT_EQ(*cfg->nodes[0].bitmap_file, "rel/d.bitmaps");
  ASSERT_EQ(cfg->bitmaps.size(), 1u);
  EXPECT_EQ(cfg->exports[0].bitmaps, (std::vector<std::string>{"nightly"}));

  // A container alone is fine too (bitmaps added later over the control socket).
  auto only_file = serve({"serve", "/i/d.img", "--format", "raw", "--bitmap-file", "/i/b"});
  ASSERT_TRUE(only_file.is_ok()) << only_file.status().to_string();
  EXPECT_TRUE(only_file->bitmaps.empty());
  EXPECT_TRUE(only_file->exports[0].bitmaps.empty());
}

TEST(ServeBitmaps, Errors) {
  auto raw_without_container = serve({"serve", "/i/d.img", "--format", "raw", "--bitmap", "b"});
  ASSERT_FALSE(raw_without_container.is_ok());
  EXPECT_EQ(raw_without_container.status().message(),
            "--bitmap b: a raw image keeps persistent bitmaps in a separate container; give one "
            "with --bitmap-file PATH");

  auto qcow2_with_container =
      serve({"serve", "/i/d.qcow2", "--format", "qcow2", "--bitmap-file", "/i/b"});
  ASSERT_FALSE(qcow2_with_container.is_ok());
  EXPECT_EQ(qcow2_with_container.status().message(),
            "--bitmap-file is for raw images; a qcow2 image keeps its persistent bitmaps itself");

  auto twice =
      serve({"serve", "/i/d.qcow2", "--format", "qcow2", "--bitmap", "b", "--bitmap", "b"});
  ASSERT_FALSE(twice.is_ok());
  EXPECT_EQ(twice.status().message(), "--bitmap b: the bitmap is listed twice");

  std::string err;
  EXPECT_FALSE(parse({"serve", "/i/d.qcow2", "--bitmap"}, &err));
  EXPECT_EQ(err, "option --bitmap needs a value");
  // Only serve mode has these options.
  EXPECT_FALSE(parse({"--config", "/c.yaml", "--bitmap", "b"}, &err));
  EXPECT_EQ(err, "unknown or misplaced argument '--bitmap'");
}

}  // namespace
}  // namespace server::daemon
