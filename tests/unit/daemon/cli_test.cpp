#include "server/daemon/cli.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "server/daemon/serve_config.h"
#include "testing/temp_dir.h"

namespace server::daemon {
namespace {

std::optional<CommandLine> parse(std::vector<std::string> args, std::string* error) {
  std::vector<char*> argv;
  static std::string prog = "fleeced";
  argv.push_back(prog.data());
  for (auto& a : args) argv.push_back(a.data());
  return parse_command_line(static_cast<int>(argv.size()), argv.data(), error);
}

TEST(CommandLine, ConfigMode) {
  std::string err;
  auto cl = parse({"--config", "/etc/f.yaml", "--log-level", "debug"}, &err);
  ASSERT_TRUE(cl) << err;
  EXPECT_EQ(cl->mode, CommandLine::Mode::kRun);
  EXPECT_EQ(cl->config_path, "/etc/f.yaml");
  EXPECT_EQ(cl->log_level, "debug");
}

TEST(CommandLine, CheckConfigNeedsConfig) {
  std::string err;
  EXPECT_FALSE(parse({"--check-config"}, &err));
  EXPECT_NE(err.find("--config"), std::string::npos);
  auto cl = parse({"--check-config", "-c", "x.yaml"}, &err);
  ASSERT_TRUE(cl);
  EXPECT_EQ(cl->mode, CommandLine::Mode::kCheckConfig);
}

TEST(CommandLine, ServeMode) {
  std::string err;
  auto cl = parse({"serve", "/img with spaces, and:colons.raw", "--name", "d", "--listen",
                   "unix:/tmp/a.sock", "--listen", "tcp:[::1]:10809", "-r"},
                  &err);
  ASSERT_TRUE(cl) << err;
  EXPECT_EQ(cl->mode, CommandLine::Mode::kServe);
  EXPECT_EQ(cl->image, "/img with spaces, and:colons.raw");
  EXPECT_EQ(cl->export_name, "d");
  EXPECT_TRUE(cl->read_only);
  ASSERT_EQ(cl->listen.size(), 2u);

  auto cfg = make_serve_config(*cl, false);
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  ASSERT_EQ(cfg->listen.size(), 2u);
  EXPECT_EQ(cfg->listen[1].host, "::1");
  EXPECT_EQ(cfg->listen[1].port, 10809);
  ASSERT_EQ(cfg->exports.size(), 1u);
  EXPECT_FALSE(cfg->exports[0].writable);
  ASSERT_EQ(cfg->nodes.size(), 1u);
  ASSERT_TRUE(cfg->nodes[0].file_child);
  EXPECT_EQ(cfg->nodes[0].file_child->inline_spec->file.filename,
            "/img with spaces, and:colons.raw");
}

TEST(CommandLine, ServeDefaultsToLoopbackUnlessActivated) {
  std::string err;
  auto cl = parse({"serve", "a.raw"}, &err);
  ASSERT_TRUE(cl);
  auto cfg = make_serve_config(*cl, false);
  ASSERT_TRUE(cfg.is_ok());
  ASSERT_EQ(cfg->listen.size(), 1u);
  EXPECT_EQ(cfg->listen[0].to_string(), "tcp:127.0.0.1:10809");
  auto activated = make_serve_config(*cl, true);
  ASSERT_TRUE(activated.is_ok());
  EXPECT_TRUE(activated->listen.empty());
}

TEST(CommandLine, Errors) {
  std::string err;
  EXPECT_FALSE(parse({"serve"}, &err));
  EXPECT_FALSE(parse({"serve", "a.raw", "--format", "vmdk"}, &err));
  EXPECT_NE(err.find("vmdk"), std::string::npos);
  EXPECT_FALSE(parse({"--bogus"}, &err));
  EXPECT_FALSE(parse({"--config"}, &err));
  std::string e2;
  auto cl = parse({"serve", "a.raw", "--listen", "bogus:x"}, &e2);
  ASSERT_TRUE(cl);
  EXPECT_FALSE(make_serve_config(*cl, false).is_ok());
}

TEST(CommandLine, ServeFormat) {
  std::string err;
  auto cl = parse({"serve", "a.img"}, &err);
  ASSERT_TRUE(cl) << err;
  EXPECT_EQ(cl->format, "");  // probed
  cl = parse({"serve", "a.img", "--format", "qcow2"}, &err);
  ASSERT_TRUE(cl) << err;
  EXPECT_EQ(cl->format, "qcow2");
  cl = parse({"serve", "a.img", "--format", "raw"}, &err);
  ASSERT_TRUE(cl) << err;
  EXPECT_EQ(cl->format, "raw");
  EXPECT_FALSE(parse({"serve", "a.img", "--format"}, &err));
  EXPECT_FALSE(parse({"serve", "a.img", "--format", "QCOW2"}, &err));
  EXPECT_NE(err.find("supported: raw, qcow2"), std::string::npos) << err;
}

TEST(CommandLine, ServeZeroCopy) {
  std::string err;
  auto cl = parse({"serve", "a.raw", "--format", "raw"}, &err);
  ASSERT_TRUE(cl) << err;
  auto cfg = make_serve_config(*cl, false);
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  EXPECT_EQ(cfg.value().server.zero_copy, config::ZeroCopy::kAuto);
  cl = parse({"serve", "a.raw", "--format", "raw", "--zero-copy", "never"}, &err);
  ASSERT_TRUE(cl) << err;
  cfg = make_serve_config(*cl, false);
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  EXPECT_EQ(cfg.value().server.zero_copy, config::ZeroCopy::kNever);
  EXPECT_FALSE(parse({"serve", "a.raw", "--zero-copy", "sometimes"}, &err));
  EXPECT_NE(err.find("supported: auto, always, never"), std::string::npos) << err;
  EXPECT_FALSE(parse({"serve", "a.raw", "--zero-copy"}, &err));
}

// Writes `bytes` to a new file in `dir`.
std::string write_image(fleece_test::TempDir& dir, const std::string& name,
                        const std::string& bytes) {
  std::string path = dir.file(name);
  FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

TEST(CommandLine, ServeQcow2BuildsAQcow2NodeOverAnInlineFile) {
  std::string err;
  auto cl = parse({"serve", "/x/disk.qcow2", "--format", "qcow2", "-r"}, &err);
  ASSERT_TRUE(cl) << err;
  auto cfg = make_serve_config(*cl, false);
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  ASSERT_EQ(cfg->nodes.size(), 1u);
  const blockcore::NodeSpec& n = cfg->nodes[0];
  EXPECT_EQ(n.driver, "qcow2");
  EXPECT_TRUE(n.read_only);
  EXPECT_EQ(n.backing_mode, blockcore::BackingMode::kFromImage);  // the header's chain
  ASSERT_TRUE(n.file_child && n.file_child->inline_spec);
  EXPECT_EQ(n.file_child->inline_spec->driver, "file");
  EXPECT_EQ(n.file_child->inline_spec->file.filename, "/x/disk.qcow2");
  EXPECT_TRUE(n.file_child->inline_spec->read_only);
}

TEST(CommandLine, ServeProbesTheFormatOnlyWithoutFormat) {
  fleece_test::TempDir dir;
  const std::string qcow2 = write_image(dir, "q.img", std::string("QFI\xfb\0\0\0\3", 8));
  const std::string raw = write_image(dir, "r.img", std::string(512, '\0'));
  const std::string tiny = write_image(dir, "t.img", "QF");
  EXPECT_EQ(probe_image_format(qcow2), "qcow2");
  EXPECT_EQ(probe_image_format(raw), "raw");
  EXPECT_EQ(probe_image_format(tiny), "raw");
  EXPECT_EQ(probe_image_format(dir.file("missing.img")), "raw");

  std::string err;
  auto probed = make_serve_config(*parse({"serve", qcow2}, &err), false);
  ASSERT_TRUE(probed.is_ok());
  EXPECT_EQ(probed->nodes[0].driver, "qcow2");
  probed = make_serve_config(*parse({"serve", raw}, &err), false);
  ASSERT_TRUE(probed.is_ok());
  EXPECT_EQ(probed->nodes[0].driver, "raw");
  // An explicit --format raw never probes, even over a qcow2 header.
  auto forced = make_serve_config(*parse({"serve", qcow2, "--format", "raw"}, &err), false);
  ASSERT_TRUE(forced.is_ok());
  EXPECT_EQ(forced->nodes[0].driver, "raw");
}

}  // namespace
}  // namespace server::daemon
