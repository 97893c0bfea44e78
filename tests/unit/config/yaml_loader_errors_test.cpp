// A table of broken configurations: each must produce an error at an exact file:line with
// an element path and a recognizable message, and (unless stated) only that one error.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/yaml_loader.h"

namespace config {
namespace {

struct BadConfig {
  const char* name;
  const char* yaml;
  int line;             // expected line of the (first matching) error
  const char* path;     // expected element path ("" for whole-file errors)
  const char* message;  // substring of the message
  size_t count = 1;     // expected number of errors in total
};

// A valid node list used by several cases (lines 1-5).
#define NODES                   \
  "nodes:\n"                    \
  "  - node-name: f0\n"         \
  "    driver: file\n"          \
  "    filename: /tmp/f0.img\n" \
  "  - { node-name: r0, driver: raw, file: f0, bitmap-file: /tmp/r0.bitmaps }\n"

const BadConfig kBadConfigs[] = {
    {"UnknownTopLevelKey", "listne:\n  - unix: /tmp/s\n", 1, "",
     "unknown key 'listne' (did you mean 'listen'?)"},
    {"UnknownKeyListsKnown", "log:\n  level: info\n  colour: red\n", 3, "log",
     "unknown key 'colour' (known keys: level)"},
    {"ListWhereMapBelongs", "control:\n  - unix: /tmp/c\n", 2, "control",
     "expected a map, got a list"},
    {"MapWhereListBelongs", "listen:\n  unix: /tmp/s\n", 1, "listen",
     "expected a list of addresses, got a map"},
    {"StringForBool", NODES "exports:\n  - name: e\n    node: r0\n    writable: yes\n", 9,
     "exports[0].writable", "expected true or false, got 'yes'"},
    {"QuotedTrueIsNotBool", NODES "exports:\n  - name: e\n    node: r0\n    writable: \"true\"\n",
     9, "exports[0].writable", "the quoted string \"true\""},
    {"NegativeNumber", "server:\n  max-in-flight: -1\n", 2, "server.max-in-flight",
     "must not be negative"},
    {"NumberTooLarge", "server:\n  io-threads: 99999999999999999999999\n", 2, "server.io-threads",
     "too large"},
    {"NumberOutOfRange", "server:\n  max-in-flight: 0\n", 2, "server.max-in-flight",
     "out of range (1-1024)"},
    {"NotANumber", "server:\n  handshake-timeout: 10s\n", 2, "server.handshake-timeout",
     "expected a number, got '10s'"},
    {"UnknownZeroCopyMode", "server:\n  io-threads: 1\n  zero-copy: sometimes\n", 3,
     "server.zero-copy", "expected auto|always|never, got 'sometimes'"},
    {"SizeOverflow",
     NODES "  - { node-name: r1, driver: raw, file: { driver: file, filename: /x },\n"
           "      offset: 99999999999E }\n",
     7, "nodes[2].offset", "too large"},
    {"SizeBadSuffix",
     NODES "  - { node-name: r1, driver: raw, file: { driver: file, filename: /x }, size: 12Q }\n",
     6, "nodes[2].size", "is not a size"},
    {"PortTooLarge", "listen:\n  - tcp: 127.0.0.1:70000\n", 2, "listen[0].tcp",
     "port 70000 is out of range (1-65535)"},
    {"PortMissing", "listen:\n  - tcp: localhost\n", 2, "listen[0].tcp", "expected HOST:PORT"},
    {"BadIPv4", "listen:\n  - tcp: 300.1.1.1:10809\n", 2, "listen[0].tcp",
     "not a valid IPv4 address"},
    {"IPv6NeedsBrackets", "listen:\n  - tcp: ::1:10809\n", 2, "listen[0].tcp", "in brackets"},
    {"BadIPv6", "listen:\n  - tcp: \"[::g]:10809\"\n", 2, "listen[0].tcp",
     "not a valid IPv6 address"},
    {"UnquotedIPv6IsAList", "listen:\n  - tcp: [::1]\n", 2, "listen[0].tcp",
     "quote IPv6 addresses"},
    {"EmptyUnixPath", "listen:\n  - unix: \"\"\n", 2, "listen[0].unix", "path is empty"},
    {"UnixPathTooLong",
     "listen:\n  - unix: "
     "/tmp/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaa\n",
     2, "listen[0].unix", "too long"},
    {"ListenBothKinds", "listen:\n  - { unix: /tmp/s, tcp: \"127.0.0.1:1\" }\n", 2, "listen[0]",
     "not both"},
    {"ListenNoSpace", "listen:\n  - tcp:127.0.0.1:10809\n", 2, "listen[0]",
     "with a space after the colon"},
    {"ListenTwice", "listen:\n  - unix: /tmp/s\n  - unix: /tmp/s\n", 3, "listen[1]",
     "listed twice (first at t.yaml:2)"},
    {"ControlSameAsListen", "listen:\n  - unix: /tmp/s\ncontrol:\n  unix: /tmp/s\n", 4,
     "control.unix", "same path"},
    {"ControlMissingUnix", "control: {}\n", 1, "control", "missing required key 'unix'"},
    {"BadLogLevel", "log:\n  level: verbose\n", 2, "log.level",
     "expected trace|debug|info|warn|error, got 'verbose'"},
    {"SyntaxError", "nodes:\n  - node-name: a\n    driver: [file\nexports: []\n", 4, "",
     "YAML syntax error"},
    {"TabIndentSyntax", "log:\n\tlevel: info\n", 2, "", "YAML syntax error"},
    {"MissingDriver", "nodes:\n  - node-name: a\n    filename: /x\n", 2, "nodes[0]",
     "missing required key 'driver'"},
    {"MisspelledDriverKey", "nodes:\n  - node-name: a\n    drivr: file\n    filename: /x\n", 3,
     "nodes[0]", "unknown key 'drivr' (did you mean 'driver'?)", 2},
    {"UnknownDriverStillChecksKeys", "nodes:\n  - node-name: a\n    driver: nbd\n    server: x\n",
     4, "nodes[0]", "unknown key 'server'", 2},
    {"MissingNodeName", "nodes:\n  - driver: file\n    filename: /x\n", 2, "nodes[0]",
     "missing required key 'node-name'"},
    {"MissingFilename", "nodes:\n  - node-name: a\n    driver: file\n", 2, "nodes[0]",
     "missing required key 'filename'"},
    {"MissingRawFile", "nodes:\n  - node-name: a\n    driver: raw\n", 2, "nodes[0]",
     "missing required key 'file'"},
    {"NullFilename", "nodes:\n  - node-name: a\n    driver: file\n    filename:\n", 4,
     "nodes[0].filename", "expected a string, got null"},
    {"FilenameIsMap", "nodes:\n  - node-name: a\n    driver: file\n    filename: { x: 1 }\n", 4,
     "nodes[0].filename", "expected a string, got a map"},
    {"UnknownDriver", "nodes:\n  - node-name: a\n    driver: vmdk\n    file: b\n", 3,
     "nodes[0].driver", "unknown driver 'vmdk' (known drivers: file, raw, qcow2, throttle)"},
    {"UnknownFileKey",
     "nodes:\n  - node-name: a\n    driver: file\n    filenme: /x\n    filename: /x\n", 4,
     "nodes[0]", "unknown key 'filenme' (did you mean 'filename'?)"},
    {"RawKeyOnFileNode",
     "nodes:\n  - node-name: a\n    driver: file\n    filename: /x\n    offset: 5\n", 5, "nodes[0]",
     "unknown key 'offset'"},
    {"BadLocking",
     "nodes:\n  - node-name: a\n    driver: file\n    filename: /x\n    locking: maybe\n", 5,
     "nodes[0].locking", "expected auto|on|off, got 'maybe'"},
    {"DirectTwice",
     "nodes:\n  - node-name: a\n    driver: file\n    filename: /x\n    cache: { direct: true }\n"
     "    direct: false\n",
     6, "nodes[0].direct", "not both"},
    {"CacheUnknownKey",
     "nodes:\n  - node-name: a\n    driver: file\n    filename: /x\n    cache: { drect: true }\n",
     5, "nodes[0].cache", "unknown key 'drect'"},
    {"BadNodeName", "nodes:\n  - node-name: 9disk\n    driver: file\n    filename: /x\n", 2,
     "nodes[0].node-name", "must start with a letter"},
    {"DuplicateKey",
     "nodes:\n  - node-name: a\n    driver: file\n    filename: /x\n    filename: /y\n", 5,
     "nodes[0]", "duplicate key 'filename' (first at line 4)"},
    {"DuplicateNodeName", NODES "  - node-name: f0\n    driver: file\n    filename: /y\n", 6,
     "nodes[2].node-name", "duplicate node name 'f0' (first defined at t.yaml:2, nodes[0])"},
    {"DuplicateInlineName",
     "nodes:\n  - node-name: a\n    driver: raw\n    file: { node-name: a, driver: file, filename: "
     "/x }\n",
     4, "nodes[0].file.node-name", "duplicate node name 'a' (first defined at t.yaml:2, nodes[0])"},
    {"DanglingFileReference", "nodes:\n  - node-name: r\n    driver: raw\n    file: nothere\n", 4,
     "nodes[0].file", "unknown node 'nothere'"},
    {"NullFileChild", "nodes:\n  - node-name: r\n    driver: raw\n    file:\n", 4, "nodes[0].file",
     "expected a node name or an inline node (a map), got null"},
    {"WritableOverReadOnlyRef",
     "nodes:\n  - { node-name: f0, driver: file, filename: /x, read-only: true }\n"
     "  - node-name: r0\n    driver: raw\n    file: f0\n",
     5, "nodes[1].file", "node 'f0' is read-only, but nodes[1] ('r0') is writable"},
    {"TwoWritableParents", NODES "  - { node-name: r1, driver: raw, file: f0 }\n", 6,
     "nodes[2].file",
     "node 'f0' would have two writable parents: nodes[1] ('r0') and nodes[2] ('r1')"},
    {"InlineReadOnlyUnderWritable",
     "nodes:\n  - node-name: r0\n    driver: raw\n"
     "    file: { driver: file, filename: /x, read-only: true }\n",
     4, "nodes[0].file.read-only", "this inline node is read-only, but its parent is writable"},
    {"InlineUnknownKey",
     "nodes:\n  - node-name: r0\n    driver: raw\n    file:\n      driver: file\n"
     "      filename: /x\n      colour: blue\n",
     7, "nodes[0].file", "unknown key 'colour'"},
    {"SelfReference", "nodes:\n  - { node-name: r0, driver: raw, file: r0 }\n", 2, "nodes[0].file",
     "node 'r0' cannot use itself"},
    {"Cycle",
     "nodes:\n  - { node-name: a, driver: raw, read-only: true, file: b }\n"
     "  - { node-name: b, driver: raw, read-only: true, file: a }\n",
     3, "nodes[1].file", "makes a cycle"},
    {"DuplicateExportName",
     NODES "exports:\n  - { name: e, node: r0 }\n  - { name: e, node: r0 }\n", 8, "exports[1].name",
     "duplicate export name 'e' (first at t.yaml:7)"},
    {"DanglingExportNode", NODES "exports:\n  - name: e\n    node: nope\n", 8, "exports[0].node",
     "unknown node 'nope'"},
    {"ExportMissingName", NODES "exports:\n  - node: r0\n", 7, "exports[0]",
     "missing required key 'name'"},
    {"ExportEmptyName", NODES "exports:\n  - { name: \"\", node: r0 }\n", 7, "exports[0].name",
     "must not be empty"},
    {"ExportBitmapsNotList", NODES "exports:\n  - name: e\n    node: r0\n    bitmaps: nightly\n", 9,
     "exports[0].bitmaps", "expected a list of strings"},
    {"WritableExportOfWrittenNode",
     NODES "exports:\n  - name: e\n    node: f0\n    writable: true\n", 8, "exports[0].node",
     "already written by its parent nodes[1] ('r0')"},
    {"WritableExportOfReadOnlyNode",
     "nodes:\n  - { node-name: f0, driver: file, filename: /x, read-only: true }\n"
     "exports:\n  - { name: e, node: f0, writable: true }\n",
     4, "exports[0].node", "node 'f0' is read-only"},
    {"DanglingBitmapNode", NODES "bitmaps:\n  - { node: nope, name: nightly }\n", 7,
     "bitmaps[0].node", "unknown node 'nope'"},
    {"BitmapGranularityNotPow2", NODES "bitmaps:\n  - { node: r0, name: b, granularity: 3000 }\n",
     7, "bitmaps[0].granularity", "not a power of two"},
    {"BitmapGranularityTooSmall", NODES "bitmaps:\n  - { node: r0, name: b, granularity: 256 }\n",
     7, "bitmaps[0].granularity", "out of range"},
    {"DuplicateBitmap", NODES "bitmaps:\n  - { node: r0, name: b }\n  - { node: r0, name: b }\n", 8,
     "bitmaps[1]", "defined twice"},
    {"FleecingMissingDir", "fleecing: {}\n", 1, "fleecing", "missing required key 'overlay-dir'"},
    {"TlsWithoutCredentials", "tls:\n  required: true\n", 2, "tls", "needs x509-dir or psk-file"},
    {"TlsVerifyWithoutX509", "tls:\n  psk-file: /k\n  verify-peer: true\n", 2, "tls.verify-peer",
     "needs x509-dir"},
    {"AllowNotList", NODES "exports:\n  - name: e\n    node: r0\n    allow: uid\n", 9,
     "exports[0].allow", "expected a list like"},
    {"AllowEmpty", NODES "exports:\n  - name: e\n    node: r0\n    allow: []\n", 9,
     "exports[0].allow", "is empty; leave 'allow' out"},
    {"AllowPlainString",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - uid:1000\n", 10,
     "exports[0].allow[0]", "expected one of { tls-dn: DN }"},
    {"AllowTwoKeys",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - { uid: 1, address: '::1' }\n",
     10, "exports[0].allow[0]", "expected one of"},
    {"AllowBadUid",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - { uid: root }\n", 10,
     "exports[0].allow[0]", "uid must be a number"},
    {"AllowBadAddress",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - { uid: 0 }\n"
           "      - { address: 10.0.0.0/40 }\n",
     11, "exports[0].allow[1]", "prefix length of '10.0.0.0/40' must be 0 to 32"},
    {"AllowUnknownKind",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - { user: bob }\n", 10,
     "exports[0].allow[0]", "unknown allow entry 'user'"},
    {"AllowTlsDnWithoutVerifyPeer",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - { tls-dn: CN=a }\n"
           "tls: { psk-file: /k }\n",
     7, "exports[0].allow", "needs tls.verify-peer: true"},
    {"AllowPskIdentityWithoutPskFile",
     NODES "exports:\n  - name: e\n    node: r0\n    allow:\n      - { psk-identity: a }\n", 7,
     "exports[0].allow", "needs tls.psk-file"},
    {"TopLevelNotMap", "- a\n- b\n", 1, "", "expected a map, got a list"},
    {"TwoDocuments", "log: { level: info }\n---\nlog: { level: info }\n", 3, "",
     "only one YAML document"},
};

#undef NODES

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public testing::TestWithParam<BadConfig> {};

TEST_P(BadConfigTest, ReportsLocatedError) {
  const BadConfig& c = GetParam();
  LoadResult r = load_config_string(c.yaml, "t.yaml");
  ASSERT_FALSE(r.is_ok()) << "expected an error for:\n" << c.yaml;
  std::string all = r.status().to_string();
  bool found = false;
  for (const ConfigError& e : r.errors()) {
    if (e.where.line == c.line && e.path == c.path &&
        e.message.find(c.message) != std::string::npos) {
      found = true;
      const std::string prefix = "t.yaml:" + std::to_string(c.line) + ": ";
      EXPECT_EQ(e.to_string().rfind(prefix, 0), 0u) << e.to_string();
      EXPECT_EQ(e.where.file, "t.yaml");
    }
  }
  EXPECT_TRUE(found) << "wanted t.yaml:" << c.line << ": " << c.path << ": ..." << c.message
                     << "\ngot:\n"
                     << all;
  EXPECT_EQ(r.errors().size(), c.count) << all;
}

INSTANTIATE_TEST_SUITE_P(Table, BadConfigTest, testing::ValuesIn(kBadConfigs),
                         [](const testing::TestParamInfo<BadConfig>& p) {
                           return std::string(p.param.name);
                         });

TEST(ConfigErrors, AllErrorsAreCollectedAndSortedByLine) {
  const char* yaml =
      "log:\n"
      "  level: loud\n"  // 2
      "nodes:\n"
      "  - node-name: a\n"
      "    driver: file\n"
      "    filename: /x\n"
      "    locking: sometimes\n"  // 7
      "exports:\n"
      "  - { name: e, node: missing }\n"  // 9
      "server:\n"
      "  io-threads: many\n";  // 11
  LoadResult r = load_config_string(yaml, "multi.yaml");
  ASSERT_EQ(r.errors().size(), 4u) << r.status().to_string();
  EXPECT_EQ(r.errors()[0].where.line, 2);
  EXPECT_EQ(r.errors()[1].where.line, 7);
  EXPECT_EQ(r.errors()[2].where.line, 9);
  EXPECT_EQ(r.errors()[3].where.line, 11);
  EXPECT_EQ(r.status().code(), EINVAL);
  // status() carries every error, one per line, for --check-config.
  EXPECT_EQ(r.status().message(),
            "multi.yaml:2: log.level: expected trace|debug|info|warn|error, got 'loud'\n"
            "multi.yaml:7: nodes[0].locking: expected auto|on|off, got 'sometimes'\n"
            "multi.yaml:9: exports[0].node: unknown node 'missing' (no node has this node-name)\n"
            "multi.yaml:11: server.io-threads: expected a number, got 'many'");
}

TEST(ConfigErrors, EmptyFileIsAnError) {
  LoadResult r = load_config_string("", "empty.yaml");
  ASSERT_EQ(r.errors().size(), 1u);
  EXPECT_NE(r.errors()[0].message.find("empty"), std::string::npos);
  EXPECT_EQ(r.errors()[0].to_string().rfind("empty.yaml: ", 0), 0u);
}

}  // namespace
}  // namespace config
