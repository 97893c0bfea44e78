// blockdev-add / blockdev-del / query-named-block-nodes against a real Graph over temp
// files.
#include <gtest/gtest.h>

#include "control_test_env.h"

namespace server::control {
namespace {

using nlohmann::json;

class BlockCommandsTest : public ControlTestEnv {
 protected:
  json node_info(const std::string& name) {
    for (const auto& n : ok("query-named-block-nodes")) {
      if (n["node-name"] == name) return n;
    }
    ADD_FAILURE() << "no node " << name;
    return json();
  }
};

TEST_F(BlockCommandsTest, FileAndRawByReference) {
  std::string path = image("disk.img", 2 << 20);
  EXPECT_EQ(ok("blockdev-add", {{"driver", "file"}, {"node-name", "f0"}, {"filename", path}}),
            json::object());
  ok("blockdev-add", {{"driver", "raw"}, {"node-name", "disk0"}, {"file", "f0"}});
  ASSERT_NE(graph_.find("disk0"), nullptr);
  EXPECT_EQ(graph_.find("disk0")->size(), 2u << 20);

  json f0 = node_info("f0");
  EXPECT_EQ(f0["drv"], "file");
  EXPECT_EQ(f0["file"], path);
  EXPECT_EQ(f0["ro"], false);
  EXPECT_EQ(f0["image"]["virtual-size"], 2 << 20);
  EXPECT_EQ(f0["image"]["filename"], path);
  EXPECT_EQ(f0["children"], json::array());
  EXPECT_EQ(f0["cache"]["direct"], false);

  json disk0 = node_info("disk0");
  EXPECT_EQ(disk0["drv"], "raw");
  EXPECT_EQ(disk0["file"], path);
  EXPECT_EQ(disk0["children"], json::array({{{"child", "file"}, {"node-name", "f0"}}}));
  for (const char* member : {"backing_file_depth", "encrypted", "detect_zeroes", "bps", "iops",
                             "write_threshold", "active"}) {
    EXPECT_TRUE(disk0.contains(member)) << member;
  }
}

TEST_F(BlockCommandsTest, RawWithInlineFileInheritsReadOnlyAndDirect) {
  std::string path = image("ro.img", 1 << 20);
  ok("blockdev-add", {{"driver", "raw"},
                      {"node-name", "disk0"},
                      {"read-only", true},
                      {"cache", {{"direct", true}}},
                      {"file", {{"driver", "file"}, {"filename", path}}}});
  auto nodes = ok("query-named-block-nodes");
  ASSERT_EQ(nodes.size(), 2u);  // disk0 and its generated file child
  json disk0 = node_info("disk0");
  EXPECT_EQ(disk0["ro"], true);
  std::string child = disk0["children"][0]["node-name"];
  json file = node_info(child);
  EXPECT_EQ(file["ro"], true);
  EXPECT_EQ(file["drv"], "file");
  // O_DIRECT may be refused by the temp file system (tmpfs); when it opened, it says so.
  EXPECT_EQ(file["cache"]["direct"], disk0["cache"]["direct"]);
}

TEST_F(BlockCommandsTest, RawWindow) {
  std::string path = image("win.img", 4 << 20);
  ok("blockdev-add", {{"driver", "raw"},
                      {"node-name", "part"},
                      {"offset", 1 << 20},
                      {"size", 2 << 20},
                      {"file", {{"driver", "file"}, {"filename", path}}}});
  EXPECT_EQ(node_info("part")["image"]["virtual-size"], 2 << 20);
  // A window past the end fails in the driver; the error reaches the client.
  std::string e = err("blockdev-add",
                      {{"driver", "raw"},
                       {"node-name", "bad"},
                       {"offset", 8 << 20},
                       {"file", {{"driver", "file"}, {"filename", path}, {"read-only", true}}}});
  EXPECT_FALSE(e.empty());
  EXPECT_EQ(graph_.find("bad"), nullptr);
}

TEST_F(BlockCommandsTest, ArgumentErrorsUseQemuWording) {
  std::string path = image("a.img");
  EXPECT_EQ(err("blockdev-add", {{"node-name", "x"}}), "Parameter 'driver' is missing");
  EXPECT_EQ(err("blockdev-add", {{"driver", "vvfat"}, {"node-name", "x"}}),
            "Parameter 'driver' does not accept value 'vvfat'");
  EXPECT_EQ(err("blockdev-add", {{"driver", "file"}, {"node-name", "x"}}),
            "Parameter 'filename' is missing");
  EXPECT_EQ(err("blockdev-add",
                {{"driver", "file"}, {"node-name", "x"}, {"filename", path}, {"bogus", 1}}),
            "Parameter 'bogus' is unexpected");
  EXPECT_EQ(err("blockdev-add",
                {{"driver", "file"}, {"node-name", "x"}, {"filename", path}, {"read-only", "no"}}),
            "Invalid parameter type for 'read-only', expected: boolean");
  EXPECT_EQ(err("blockdev-add",
                {{"driver", "file"}, {"node-name", "x"}, {"filename", path}, {"locking", "maybe"}}),
            "Parameter 'locking' does not accept value 'maybe'");
  EXPECT_EQ(err("blockdev-add", {{"driver", "raw"}, {"node-name", "x"}, {"file", 5}}),
            "Invalid parameter type for 'file', expected: BlockdevRef");
  EXPECT_EQ(err("blockdev-add", {{"driver", "raw"}, {"node-name", "x"}}),
            "Parameter 'file' is missing");
  EXPECT_EQ(err("blockdev-add", {{"driver", "raw"},
                                 {"node-name", "x"},
                                 {"file", {{"driver", "file"}, {"filename", path}, {"z", 1}}}}),
            "Parameter 'file.z' is unexpected");
  EXPECT_EQ(err("blockdev-add",
                {{"driver", "raw"}, {"node-name", "x"}, {"offset", -5}, {"file", "nope"}}),
            "Parameter 'offset' expects uint64");
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(BlockCommandsTest, NameAndReferenceErrors) {
  std::string path = image("a.img");
  EXPECT_EQ(err("blockdev-add", {{"driver", "file"}, {"filename", path}}),
            "'node-name' must be specified for the root node");
  EXPECT_EQ(err("blockdev-add", {{"driver", "file"}, {"node-name", "1bad"}, {"filename", path}}),
            "Invalid node-name: '1bad'");
  EXPECT_EQ(err("blockdev-add",
                {{"driver", "file"}, {"node-name", std::string(32, 'n')}, {"filename", path}}),
            "Node name too long");
  EXPECT_EQ(err("blockdev-add", {{"driver", "raw"}, {"node-name", "r"}, {"file", "nope"}}),
            "Cannot find device='nope' nor node-name='nope'");
  add_file_node("f0", path, true);
  EXPECT_EQ(err("blockdev-add", {{"driver", "file"}, {"node-name", "f0"}, {"filename", path}}),
            "Duplicate nodes with node-name='f0'");
  EXPECT_EQ(
      err("blockdev-add", {{"driver", "raw"},
                           {"node-name", "r"},
                           {"file", {{"driver", "file"}, {"node-name", "r"}, {"filename", path}}}}),
      "Duplicate nodes with node-name='r'");
}

TEST_F(BlockCommandsTest, OpenErrorsReachTheClient) {
  std::string e =
      err("blockdev-add",
          {{"driver", "file"}, {"node-name", "f0"}, {"filename", dir_.file("missing.img")}});
  EXPECT_NE(e.find("missing.img"), std::string::npos) << e;
  EXPECT_EQ(graph_.find("f0"), nullptr);
}

TEST_F(BlockCommandsTest, UnsupportedCacheAndDiscardChoicesAreRefused) {
  std::string path = image("a.img");
  EXPECT_NE(err("blockdev-add", {{"driver", "file"},
                                 {"node-name", "f"},
                                 {"filename", path},
                                 {"cache", {{"no-flush", true}}}})
                .find("no-flush"),
            std::string::npos);
  EXPECT_NE(err("blockdev-add",
                {{"driver", "file"}, {"node-name", "f"}, {"filename", path}, {"discard", "ignore"}})
                .find("discard"),
            std::string::npos);
  // The accepted spellings of what fleece does anyway.
  ok("blockdev-add", {{"driver", "file"},
                      {"node-name", "f"},
                      {"filename", path},
                      {"discard", "unmap"},
                      {"auto-read-only", false},
                      {"aio", "threads"},
                      {"locking", "auto"},
                      {"cache", {{"no-flush", false}}}});
}

TEST_F(BlockCommandsTest, DeleteRefusesNodesInUseAndRemovesOthers) {
  std::string path = image("a.img");
  add_file_node("f0", path);
  ok("blockdev-add", {{"driver", "raw"}, {"node-name", "disk0"}, {"file", "f0"}});

  EXPECT_EQ(err("blockdev-del", {{"node-name", "nope"}}),
            "Failed to find node with node-name='nope'");
  EXPECT_EQ(err("blockdev-del", json::object()), "Parameter 'node-name' is missing");
  EXPECT_EQ(err("blockdev-del", {{"node-name", "f0"}}), "Node f0 is in use by node 'disk0'");

  ok("block-export-add", {{"type", "nbd"}, {"id", "e0"}, {"node-name", "disk0"}});
  EXPECT_EQ(err("blockdev-del", {{"node-name", "disk0"}}), "Node disk0 is in use by export 'e0'");
  ok("block-export-del", {{"id", "e0"}});

  EXPECT_EQ(ok("blockdev-del", {{"node-name", "disk0"}}), json::object());
  EXPECT_EQ(graph_.find("disk0"), nullptr);
  ok("blockdev-del", {{"node-name", "f0"}});
  EXPECT_TRUE(graph_.nodes().empty());
  EXPECT_EQ(ok("query-named-block-nodes"), json::array());
  // The image is closed (and unlocked): it can be opened read-write again.
  add_file_node("again", path);
}

TEST_F(BlockCommandsTest, DeletingARawWithAnInlineChildRemovesBoth) {
  std::string path = image("a.img");
  ok("blockdev-add", {{"driver", "raw"},
                      {"node-name", "disk0"},
                      {"file", {{"driver", "file"}, {"filename", path}}}});
  ASSERT_EQ(graph_.nodes().size(), 2u);
  std::string child = graph_.find("disk0")->children()[0].node->name();
  EXPECT_EQ(err("blockdev-del", {{"node-name", child}}),
            "Node " + child + " is not owned by the monitor");
  ok("blockdev-del", {{"node-name", "disk0"}});
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(BlockCommandsTest, FlatArgumentIsAccepted) {
  add_file_node("f0", image("a.img"));
  EXPECT_EQ(ok("query-named-block-nodes", {{"flat", true}}).size(), 1u);
  EXPECT_EQ(err("query-named-block-nodes", {{"flat", 1}}),
            "Invalid parameter type for 'flat', expected: boolean");
}

}  // namespace
}  // namespace server::control
