// Tests of the fleecectl backup manifest: names of point files, the JSON round trip, the
// chain rules a manifest must follow, loading and saving in a folder, finding a point.
#include "server/fleecectl/backup_client/manifest.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/temp_dir.h"

namespace fleecectl::backup {
namespace {

using nlohmann::json;

Manifest chain_of(unsigned n) {
  Manifest m;
  for (unsigned i = 0; i < n; ++i) {
    Point p;
    p.index = i;
    p.kind = i == 0 ? "full" : "incremental";
    p.file = point_file_name(i, p.kind);
    p.backing = i == 0 ? "" : m.points.back().file;
    p.time = "2026-11-22T11:33:40Z";
    p.node = "disk0";
    p.bitmap = "nightly";
    p.virtual_size = 1 << 20;
    p.bytes_read = 65536 * (i + 1);
    p.bytes_written = 65536;
    m.points.push_back(p);
  }
  return m;
}

TEST(Manifest, PointFileNames) {
  EXPECT_EQ(point_file_name(0, "full"), "0000-full.qcow2");
  EXPECT_EQ(point_file_name(12, "incremental"), "0012-inc.qcow2");
}

TEST(Manifest, JsonRoundTrip) {
  Manifest m = chain_of(3);
  json j = manifest_to_json(m);
  EXPECT_EQ(j["format"], "fleecectl-backup");
  EXPECT_EQ(j["points"][2]["backing"], "0001-inc.qcow2");
  EXPECT_FALSE(j["points"][0].contains("backing"));
  std::string error;
  auto back = manifest_from_json(j, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(manifest_to_json(*back), j);
}

// The manifest of chain_of(3) changed by `edit` must be refused with `message` in the error.
void expect_refused(void (*edit)(json&), const std::string& message) {
  json j = manifest_to_json(chain_of(3));
  edit(j);
  std::string error;
  EXPECT_FALSE(manifest_from_json(j, &error));
  EXPECT_NE(error.find(message), std::string::npos) << error;
}

TEST(Manifest, BrokenChainsAreRefused) {
  expect_refused([](json& j) { j["format"] = "other"; }, "not a fleecectl-backup manifest");
  expect_refused([](json& j) { j["version"] = 2; }, "unsupported manifest version");
  expect_refused([](json& j) { j["points"][0]["kind"] = "incremental"; }, "start with its only full");
  expect_refused([](json& j) { j["points"][1]["kind"] = "full"; }, "start with its only full");
  expect_refused([](json& j) { j["points"][2]["point"] = 5; }, "numbered 0, 1, 2");
  expect_refused([](json& j) { j["points"][2]["backing"] = "0000-full.qcow2"; }, "the point before");
  expect_refused([](json& j) { j["points"][1]["file"] = "../x.qcow2"; }, "bad file name");
  expect_refused([](json& j) { j["points"][1].erase("bytes-read"); }, "no \"bytes-read\"");
  expect_refused([](json& j) { j["points"][1]["node"] = 3; }, "wrong type");
}

TEST(Manifest, SaveLoadAndFind) {
  fleece_test::TempDir dir;
  std::string error;
  EXPECT_FALSE(load_manifest(dir.path(), &error));
  EXPECT_TRUE(error.empty()) << "a folder without a manifest is not an error";
  ASSERT_TRUE(save_manifest(dir.path(), chain_of(2), &error)) << error;
  auto m = load_manifest(dir.path(), &error);
  ASSERT_TRUE(m) << error;
  EXPECT_EQ(find_point(*m, std::nullopt)->file, "0001-inc.qcow2");
  EXPECT_EQ(find_point(*m, 0u)->kind, "full");
  EXPECT_EQ(find_point(*m, 2u), nullptr);
  EXPECT_EQ(find_point(Manifest{}, std::nullopt), nullptr);
  EXPECT_FALSE(std::filesystem::exists(dir.file("manifest.json.tmp")));

  std::ofstream(dir.file("manifest.json")) << "{not json";
  EXPECT_FALSE(load_manifest(dir.path(), &error));
  EXPECT_NE(error.find("is not JSON"), std::string::npos) << error;
}

TEST(Manifest, UtcNowLooksLikeIso8601) {
  const std::string t = utc_now();
  ASSERT_EQ(t.size(), 20u) << t;
  EXPECT_EQ(t[10], 'T');
  EXPECT_EQ(t.back(), 'Z');
}

}  // namespace
}  // namespace fleecectl::backup
