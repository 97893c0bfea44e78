// Tests of fleecectl backup's progress output: --json lines (start, at most one progress
// line a second, done / failed) and silence when there is no terminal.
#include "server/fleecectl/backup_client/progress.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace fleecectl::backup {
namespace {

using nlohmann::json;

std::vector<json> lines_of(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

TEST(Progress, JsonLinesForScripts) {
  std::ostringstream out, err;
  Progress p(Progress::Mode::kJson, out, err);
  p.start(1000, {{"point", 3}, {"kind", "incremental"}});
  p.update(10);  // within the first second: no line
  p.update(500);
  p.finish({{"point", 3}, {"bytes-read", 1000}});
  auto lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), 2u) << out.str();
  EXPECT_EQ(lines[0]["event"], "start");
  EXPECT_EQ(lines[0]["point"], 3);
  EXPECT_EQ(lines[0]["total-bytes"], 1000);
  EXPECT_EQ(lines[1]["event"], "done");
  EXPECT_EQ(lines[1]["bytes-read"], 1000);
  EXPECT_TRUE(lines[1]["elapsed-seconds"].is_number());
  EXPECT_TRUE(err.str().empty());
}

TEST(Progress, FailureIsALineToo) {
  std::ostringstream out, err;
  Progress p(Progress::Mode::kJson, out, err);
  p.start(10, json::object());
  p.fail("read failed: Input/output error");
  auto lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], (json{{"event", "failed"}, {"error", "read failed: Input/output error"}}));
}

TEST(Progress, SilentPrintsNothing) {
  std::ostringstream out, err;
  Progress p(Progress::Mode::kSilent, out, err);
  p.start(10, json::object());
  p.update(5);
  p.finish(json::object());
  EXPECT_TRUE(out.str().empty());
  EXPECT_TRUE(err.str().empty());
}

TEST(Progress, BarGoesToStderr) {
  std::ostringstream out, err;
  Progress p(Progress::Mode::kBar, out, err);
  p.start(2 << 20, json::object());
  p.finish(json::object());
  EXPECT_TRUE(out.str().empty());
  EXPECT_NE(err.str().find("100.0%"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("2.0 MiB / 2.0 MiB"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace fleecectl::backup
