// Valid configurations load into the expected typed values: the DESIGN.md example, every
// documented key, filenames that must not be parsed, inline children, and files on disk.
#include "config/yaml_loader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace config {
namespace {

using blockcore::LockMode;

LoadResult load_ok(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "ok.yaml");
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r;
}

// DESIGN.md's example (with its backing comment as a real `backing:` key absent).
constexpr const char* kDesignExample = R"(listen:
  - unix: /run/fleeced/nbd.sock
  - tcp: 127.0.0.1:10809
control:
  unix: /run/fleeced/control.sock     # QMP-compatible management socket
log:
  level: info                         # trace|debug|info|warn|error
nodes:                                # the block graph; mirrors QMP blockdev-add
  - node-name: disk0
    driver: qcow2
    file: { driver: file, filename: /var/lib/fleeced/disk0.qcow2 }
exports:
  - name: disk0                       # NBD export name
    node: disk0
    description: "VM disk0"           # sent in LIST and NBD_INFO_DESCRIPTION
    writable: true
    bitmaps: [nightly]                # offered as qemu:dirty-bitmap:nightly
    allocation-depth: true            # offers qemu:allocation-depth
bitmaps:                              # ensured at start-up (created if missing)
  - { node: disk0, name: nightly, persistent: true, granularity: 65536 }
fleecing:
  overlay-dir: /var/lib/fleeced/fleece
tls:                                  # NBD over TLS (STARTTLS)
  x509-dir: /etc/fleeced/pki          # ca-cert.pem, server-cert.pem, server-key.pem (QEMU's layout)
  psk-file: /etc/fleeced/keys.psk     # identity:hexkey lines, as QEMU and nbdkit read them
  verify-peer: false                  # true: demand a client certificate signed by the CA
  required: true                      # refuse clients that do not STARTTLS
)";

TEST(YamlLoader, DesignExampleLoads) {
  LoadResult r = load_ok(kDesignExample);
  ASSERT_TRUE(r.is_ok());
  const Config& c = r.value();
  EXPECT_EQ(c.path, "ok.yaml");
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[0].to_string(), "unix:/run/fleeced/nbd.sock");
  EXPECT_EQ(c.listen[0].where.line, 2);
  EXPECT_EQ(c.listen[1].to_string(), "tcp:127.0.0.1:10809");
  EXPECT_EQ(c.control.unix_path, "/run/fleeced/control.sock");
  EXPECT_EQ(c.log.level, "info");
  ASSERT_EQ(c.nodes.size(), 1u);
  const blockcore::NodeSpec& n = c.nodes[0];
  EXPECT_EQ(n.node_name, "disk0");
  EXPECT_EQ(n.driver, "qcow2");
  EXPECT_EQ(n.backing_mode, blockcore::BackingMode::kFromImage);
  EXPECT_FALSE(n.read_only);
  EXPECT_EQ(n.origin, "ok.yaml:9");
  ASSERT_EQ(c.node_where.size(), 1u);
  EXPECT_EQ(c.node_where[0].line, 9);
  ASSERT_TRUE(n.file_child.has_value());
  ASSERT_TRUE(n.file_child->inline_spec);
  EXPECT_TRUE(n.file_child->node_name.empty());
  EXPECT_EQ(n.file_child->inline_spec->driver, "file");
  EXPECT_EQ(n.file_child->inline_spec->node_name, "");
  EXPECT_EQ(n.file_child->inline_spec->file.filename, "/var/lib/fleeced/disk0.qcow2");
  ASSERT_EQ(c.exports.size(), 1u);
  const ExportConfig& e = c.exports[0];
  EXPECT_EQ(e.name, "disk0");
  EXPECT_EQ(e.node, "disk0");
  EXPECT_EQ(e.node_where.line, 14);
  EXPECT_EQ(e.description, "VM disk0");
  EXPECT_TRUE(e.writable);
  EXPECT_EQ(e.bitmaps, std::vector<std::string>{"nightly"});
  EXPECT_TRUE(e.allocation_depth);
  EXPECT_EQ(e.where.line, 13);
  ASSERT_EQ(c.bitmaps.size(), 1u);
  EXPECT_EQ(c.bitmaps[0].node, "disk0");
  EXPECT_EQ(c.bitmaps[0].name, "nightly");
  EXPECT_TRUE(c.bitmaps[0].persistent);
  EXPECT_EQ(c.bitmaps[0].granularity, 65536u);
  ASSERT_TRUE(c.fleecing);
  EXPECT_EQ(c.fleecing->overlay_dir, "/var/lib/fleeced/fleece");
  ASSERT_TRUE(c.tls);
  EXPECT_EQ(c.tls->x509_dir, "/etc/fleeced/pki");
  EXPECT_EQ(c.tls->psk_file, "/etc/fleeced/keys.psk");
  EXPECT_FALSE(c.tls->verify_peer);
  EXPECT_TRUE(c.tls->required);
}

TEST(YamlLoader, Defaults) {
  LoadResult r = load_ok("log: { level: debug }\n");
  const Config& c = r.value();
  EXPECT_TRUE(c.listen.empty());
  EXPECT_TRUE(c.control.unix_path.empty());
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.server.io_threads, 0u);
  EXPECT_EQ(c.server.blocking_threads, 4u);
  EXPECT_EQ(c.server.max_connections, 256u);
  EXPECT_EQ(c.server.handshake_timeout_s, 10u);
  EXPECT_EQ(c.server.max_in_flight, 16u);
  EXPECT_FALSE(c.fleecing);
  EXPECT_FALSE(c.tls);
}

TEST(YamlLoader, ServerSection) {
  LoadResult r = load_ok(
      "server:\n  io-threads: 2\n  blocking-threads: 8\n  max-connections: 10\n"
      "  handshake-timeout: 30\n  max-in-flight: 64\n  zero-copy: always\n");
  const ServerConfig& s = r.value().server;
  EXPECT_EQ(s.io_threads, 2u);
  EXPECT_EQ(s.blocking_threads, 8u);
  EXPECT_EQ(s.max_connections, 10u);
  EXPECT_EQ(s.handshake_timeout_s, 30u);
  EXPECT_EQ(s.max_in_flight, 64u);
  EXPECT_EQ(s.zero_copy, ZeroCopy::kAlways);
  EXPECT_EQ(load_ok("server:\n  io-threads: 1\n").value().server.zero_copy,
            ZeroCopy::kAuto);
}

TEST(YamlLoader, FileAndRawOptions) {
  LoadResult r = load_ok(R"(nodes:
  - node-name: img
    driver: file
    filename: /images/disk.img
    cache: { direct: true }
    locking: off
    read-only: true
  - node-name: win
    driver: raw
    read-only: true
    file: img
    offset: 64K
    size: 1G
  - node-name: d2
    driver: file
    filename: /x
    direct: true
    locking: on
)");
  const auto& nodes = r.value().nodes;
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[0].file.filename, "/images/disk.img");
  EXPECT_TRUE(nodes[0].file.direct);
  EXPECT_EQ(nodes[0].file.locking, LockMode::kOff);
  EXPECT_TRUE(nodes[0].read_only);
  EXPECT_EQ(nodes[1].raw.offset, 65536u);
  ASSERT_TRUE(nodes[1].raw.size);
  EXPECT_EQ(*nodes[1].raw.size, 1u << 30);
  ASSERT_TRUE(nodes[1].file_child);
  EXPECT_EQ(nodes[1].file_child->node_name, "img");
  EXPECT_FALSE(nodes[1].file_child->inline_spec);
  EXPECT_TRUE(nodes[2].file.direct);
  EXPECT_EQ(nodes[2].file.locking, LockMode::kOn);
  EXPECT_FALSE(nodes[2].raw.size);
}

TEST(YamlLoader, FilenamesAreNeverParsed) {
  LoadResult r = load_ok(R"(nodes:
  - { node-name: a, driver: file, filename: "/tmp/a b,c:d.img" }
  - node-name: b
    driver: file
    filename: /tmp/x:y,z w.img
  - node-name: c
    driver: file
    filename: 'json:{"driver": "qcow2"}'
)");
  const auto& nodes = r.value().nodes;
  EXPECT_EQ(nodes[0].file.filename, "/tmp/a b,c:d.img");
  EXPECT_EQ(nodes[1].file.filename, "/tmp/x:y,z w.img");
  EXPECT_EQ(nodes[2].file.filename, "json:{\"driver\": \"qcow2\"}");
}

TEST(YamlLoader, ReferencesMayPointForward) {
  LoadResult r = load_ok(R"(nodes:
  - { node-name: top, driver: raw, file: bottom }
  - { node-name: bottom, driver: file, filename: /x }
exports:
  - { name: e, node: top, writable: true }
)");
  EXPECT_EQ(r.value().nodes[0].file_child->node_name, "bottom");
}

TEST(YamlLoader, InlineChildOfReadOnlyParentIsReadOnly) {
  LoadResult r = load_ok(R"(nodes:
  - node-name: r
    driver: raw
    read-only: true
    file:
      node-name: f
      driver: file
      filename: /x
exports:
  - { name: e, node: f }
)");
  const blockcore::NodeSpec& n = r.value().nodes[0];
  EXPECT_TRUE(n.read_only);
  ASSERT_TRUE(n.file_child && n.file_child->inline_spec);
  EXPECT_TRUE(n.file_child->inline_spec->read_only);
  EXPECT_EQ(n.file_child->inline_spec->node_name, "f");
  EXPECT_EQ(n.file_child->inline_spec->origin, "ok.yaml:6");
}

TEST(YamlLoader, ReadOnlyParentsMayShareANode) {
  load_ok(R"(nodes:
  - { node-name: f, driver: file, filename: /x }
  - { node-name: a, driver: raw, read-only: true, file: f }
  - { node-name: b, driver: raw, read-only: true, file: f, offset: 1M }
  - { node-name: w, driver: raw, file: f }
)");
}

TEST(YamlLoader, BooleansAndSizesAccepted) {
  LoadResult r = load_ok(R"(nodes:
  - { node-name: f, driver: file, filename: /x, read-only: True, bitmap-file: /x.bitmaps }
bitmaps:
  - { node: f, name: a, granularity: 64k, persistent: FALSE }
  - { node: f, name: b, granularity: 2G }
  - { node: f, name: c }
)");
  const Config& c = r.value();
  EXPECT_TRUE(c.nodes[0].read_only);
  EXPECT_EQ(c.bitmaps[0].granularity, 65536u);
  EXPECT_FALSE(c.bitmaps[0].persistent);
  EXPECT_EQ(c.bitmaps[1].granularity, uint64_t{1} << 31);
  EXPECT_EQ(c.bitmaps[2].granularity, 65536u);
  EXPECT_TRUE(c.bitmaps[2].persistent);
}

TEST(YamlLoader, IPv6ListenAndExportAllow) {
  LoadResult r = load_ok(R"(listen:
  - tcp: "[::1]:10809"
  - tcp: '[::]:10810'
  - unix: "/run/a b,c:d.sock"
nodes:
  - { node-name: f, driver: file, filename: /x }
exports:
  - name: "with space"
    node: f
    allow:
      - { uid: 1000 }
      - { address: 10.1.0.0/8 }
      - { address: "fd00::/8" }
      - { psk-identity: backup1 }
      - { tls-dn: "CN=backup1,O=Example" }
tls: { psk-file: /k, x509-dir: /p, verify-peer: true }
)");
  const Config& c = r.value();
  EXPECT_EQ(c.listen[0].host, "::1");
  EXPECT_EQ(c.listen[0].port, 10809);
  EXPECT_EQ(c.listen[1].to_string(), "tcp:[::]:10810");
  EXPECT_EQ(c.listen[2].path, "/run/a b,c:d.sock");
  EXPECT_EQ(c.exports[0].name, "with space");
  EXPECT_EQ(c.exports[0].allow,
            (std::vector<std::string>{"uid:1000", "address:10.0.0.0/8", "address:fd00::/8",
                                      "psk-identity:backup1", "tls-dn:CN=backup1,O=Example"}));
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fleece-cfg-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(YamlLoader, LoadsFromFileWithItsNameInErrors) {
  TempDir dir;
  const std::string good = dir.path() + "/good.yaml";
  std::ofstream(good) << kDesignExample;
  LoadResult ok = load_config_file(good);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok.value().path, good);
  EXPECT_EQ(ok.value().nodes[0].origin, good + ":9");

  const std::string bad = dir.path() + "/bad.yaml";
  std::ofstream(bad) << "log:\n  level: chatty\n";
  LoadResult r = load_config_file(bad);
  ASSERT_EQ(r.errors().size(), 1u);
  EXPECT_EQ(r.errors()[0].to_string(),
            bad + ":2: log.level: expected trace|debug|info|warn|error, got 'chatty'");
}

TEST(YamlLoader, UnreadableFiles) {
  TempDir dir;
  LoadResult missing = load_config_file(dir.path() + "/nope.yaml");
  ASSERT_EQ(missing.errors().size(), 1u);
  EXPECT_EQ(missing.errors()[0].to_string(),
            dir.path() + "/nope.yaml: cannot open: No such file or directory");
  LoadResult directory = load_config_file(dir.path());
  ASSERT_EQ(directory.errors().size(), 1u);
  EXPECT_NE(directory.errors()[0].message.find("directory"), std::string::npos);
}

// The shipped example and every ```yaml block of the configuration reference must load.
std::filesystem::path repo_root() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

TEST(YamlLoader, ShippedExampleLoads) {
  const auto path = repo_root() / "systemd" / "fleeced.yaml";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
  LoadResult r = load_config_file(path.string());
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
}

TEST(YamlLoader, DocumentationExamplesLoad) {
  const auto path = repo_root() / "docs" / "configuration.md";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
  std::ifstream in(path);
  std::string line;
  std::string block;
  bool in_block = false;
  int block_line = 0;
  int line_no = 0;
  int blocks = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!in_block && line == "```yaml") {
      in_block = true;
      block.clear();
      block_line = line_no + 1;
    } else if (in_block && line == "```") {
      in_block = false;
      ++blocks;
      LoadResult r = load_config_string(block, "configuration.md:" + std::to_string(block_line));
      EXPECT_TRUE(r.is_ok()) << "example at docs/configuration.md:" << block_line << ":\n"
                             << r.status().to_string();
    } else if (in_block) {
      block += line + "\n";
    }
  }
  EXPECT_GT(blocks, 3);
}

}  // namespace
}  // namespace config
