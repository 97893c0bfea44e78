// blockdev-add with driver qcow2 (file, backing null / node-name / dict, data-file) and the
// backing members of query-named-block-nodes (backing_file, backing_file_depth,
// image.backing-image), over a graph whose "qcow2" is a stand-in driver: a node over its
// file child that holds the backing and data-file children the graph resolved (and, with
// no `backing` option, the chain a fake image header names). The last test uses the real
// qcow2 driver and is skipped until the factory has one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "blockcore/graph.h"
#include "blockcore/io/blocking_pool.h"
#include "server/control/command_table.h"
#include "server/control/qmp_dispatcher.h"
#include "server/export/export_registry.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace server::control {
namespace {

using blockcore::BlockNodePtr;
using blockcore::ChildRole;
using blockcore::OpenRequest;
using blockcore::Result;
using nlohmann::json;

// The stand-in qcow2 node: RAM contents of its file's size, children as the graph gave.
class FakeQcow2 final : public fleece_test::MemoryNode {
 public:
  FakeQcow2(const OpenRequest& req) : MemoryNode(req.spec.node_name, info_for(req)) {
    add_child(ChildRole::kFile, req.file_child);
    if (req.backing_child) add_child(ChildRole::kBacking, req.backing_child);
    if (req.data_file_child) add_child(ChildRole::kDataFile, req.data_file_child);
  }
  void attach_backing(BlockNodePtr b) { add_child(ChildRole::kBacking, std::move(b)); }

 private:
  static blockcore::NodeInfo info_for(const OpenRequest& req) {
    blockcore::NodeInfo info = default_info(req.file_child->size());
    info.read_only = req.spec.read_only;
    return info;
  }
};

class Qcow2CommandsTest : public ::testing::Test {
 protected:
  Qcow2CommandsTest()
      : pool_(0),
        graph_(pool_, make_factory()),
        table_(make_default_command_table()),
        ctx_{graph_, exports_},
        dispatcher_(table_, ctx_) {
    EXPECT_TRUE(handle(R"({"execute":"qmp_capabilities"})").contains("return"));
  }

  blockcore::NodeFactory make_factory() {
    blockcore::NodeFactory f = blockcore::NodeFactory::with_builtin_drivers();
    blockcore::DriverEntry e{"qcow2", true, true, [this](const OpenRequest& req) {
                               return open_fake(req);
                             }};
    e.takes_backing = true;
    e.takes_data_file = true;
    f.add(std::move(e));
    return f;
  }

  Result<BlockNodePtr> open_fake(const OpenRequest& req) {
    auto n = std::make_shared<FakeQcow2>(req);
    auto it = header_.find(req.file_child->describe());
    if (req.spec.backing_mode == blockcore::BackingMode::kFromImage && it != header_.end()) {
      blockcore::NodeSpec b;
      b.driver = "qcow2";
      b.read_only = true;
      blockcore::NodeSpec file;
      file.driver = "file";
      file.file.filename = it->second;
      b.file_child = blockcore::ChildRef{"", std::make_shared<blockcore::NodeSpec>(file)};
      blockcore::ChainContext chain = req.chain;
      ++chain.depth;
      auto backing = req.open_implicit_child(b, chain);
      if (!backing.is_ok()) return backing.status();
      n->attach_backing(backing.value());
    }
    return BlockNodePtr(n);
  }

  json handle(const std::string& text) { return fleece_test::run_task(dispatcher_.handle(text)); }
  json exec(const std::string& cmd, const json& args = json::object()) {
    return handle(json{{"execute", cmd}, {"arguments", args}}.dump());
  }
  json ok(const std::string& cmd, const json& args = json::object()) {
    json r = exec(cmd, args);
    EXPECT_TRUE(r.contains("return")) << cmd << " " << args.dump() << " -> " << r.dump();
    return r.contains("return") ? r["return"] : json();
  }
  std::string err(const std::string& cmd, const json& args) {
    json r = exec(cmd, args);
    EXPECT_TRUE(r.contains("error")) << cmd << " " << args.dump() << " -> " << r.dump();
    return r.contains("error") ? r["error"]["desc"].get<std::string>() : std::string();
  }
  std::string image(const std::string& name) {
    std::string path = dir_.file(name);
    fleece_test::make_file(path, 1 << 20);
    return path;
  }
  json info(const std::string& name, bool flat = false) {
    for (const auto& n : ok("query-named-block-nodes", {{"flat", flat}})) {
      if (n["node-name"] == name) return n;
    }
    ADD_FAILURE() << "no node " << name;
    return json();
  }
  static json file(const std::string& path) { return {{"driver", "file"}, {"filename", path}}; }

  std::map<std::string, std::string> header_;  // image -> the backing image its header names
  fleece_test::TempDir dir_;
  blockcore::io::BlockingPool pool_;
  blockcore::Graph graph_;
  ExportRegistry exports_;
  CommandTable table_;
  CommandContext ctx_;
  QmpDispatcher dispatcher_;
};

TEST_F(Qcow2CommandsTest, BackingByNodeNameIsReportedLikeQemu) {
  const std::string base_path = image("base.qcow2");
  const std::string top_path = image("top.qcow2");
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "base"}, {"read-only", true},
                      {"file", file(base_path)}, {"backing", nullptr}});
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "top"}, {"file", file(top_path)},
                      {"backing", "base"}});
  json top = info("top");
  // The stand-in node's driver name is "memory"; image.format is always the driver.
  const json drv = top["drv"];
  EXPECT_EQ(top["file"], top_path);
  EXPECT_EQ(top["ro"], false);
  EXPECT_EQ(top["backing_file"], base_path);
  EXPECT_EQ(top["backing_file_depth"], 1);
  EXPECT_EQ(top["image"]["format"], drv);
  EXPECT_EQ(top["image"]["filename"], top_path);
  EXPECT_EQ(top["image"]["backing-filename"], base_path);
  EXPECT_EQ(top["image"]["full-backing-filename"], base_path);
  EXPECT_EQ(top["image"]["backing-filename-format"], drv);
  EXPECT_EQ(top["image"]["backing-image"]["filename"], base_path);
  EXPECT_EQ(top["image"]["backing-image"]["format"], drv);
  EXPECT_FALSE(top["image"]["backing-image"].contains("backing-image"));
  bool has_backing_child = false;
  for (const auto& c : top["children"]) has_backing_child |= c == json{{"child", "backing"}, {"node-name", "base"}};
  EXPECT_TRUE(has_backing_child) << top["children"].dump();

  json base = info("base");
  EXPECT_FALSE(base.contains("backing_file"));
  EXPECT_EQ(base["backing_file_depth"], 0);
  EXPECT_FALSE(base["image"].contains("backing-image"));

  // flat: true leaves the nested images out.
  EXPECT_FALSE(info("top", true)["image"].contains("backing-image"));
  EXPECT_EQ(info("top", true)["backing_file"], base_path);

  // The backing node cannot be written or deleted while it is one.
  EXPECT_NE(err("block-export-add", {{"type", "nbd"}, {"id", "e"}, {"node-name", "base"},
                                     {"writable", true}}),
            "");
  EXPECT_NE(err("blockdev-del", {{"node-name", "base"}}).find("in use by node 'top'"),
            std::string::npos);
}

TEST_F(Qcow2CommandsTest, InlineBackingIsReadOnlyAndNested) {
  const std::string a = image("a.qcow2"), b = image("b.qcow2"), c = image("c.qcow2");
  ok("blockdev-add",
     {{"driver", "qcow2"},
      {"node-name", "top"},
      {"file", file(a)},
      {"backing",
       {{"driver", "qcow2"},
        {"node-name", "mid"},
        {"file", file(b)},
        {"backing", {{"driver", "qcow2"}, {"file", file(c)}, {"backing", nullptr}}}}}});
  json top = info("top");
  EXPECT_EQ(top["backing_file_depth"], 2);
  EXPECT_EQ(top["image"]["backing-image"]["filename"], b);
  EXPECT_EQ(top["image"]["backing-image"]["backing-image"]["filename"], c);
  EXPECT_EQ(info("mid")["ro"], true);
  EXPECT_EQ(info("mid")["backing_file_depth"], 1);
  ASSERT_TRUE(graph_.is_inline("mid"));
  ok("blockdev-del", {{"node-name", "top"}});
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(Qcow2CommandsTest, ChainFromTheImageHeader) {
  const std::string a = image("a.qcow2"), b = image("b.qcow2");
  header_[a] = b;
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "top"}, {"file", file(a)}});
  json top = info("top");
  EXPECT_EQ(top["backing_file"], b);
  EXPECT_EQ(top["backing_file_depth"], 1);
  EXPECT_EQ(ok("query-named-block-nodes").size(), 4u);  // top, b's node, two files
  ok("blockdev-del", {{"node-name", "top"}});
  EXPECT_TRUE(graph_.nodes().empty());
}

TEST_F(Qcow2CommandsTest, DataFileByNameOrDict) {
  const std::string a = image("a.qcow2"), d = image("a.data"), e = image("e.data");
  ok("blockdev-add", {{"driver", "file"}, {"node-name", "data"}, {"filename", d}});
  ok("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q1"}, {"file", file(a)},
                      {"data-file", "data"}, {"backing", nullptr}});
  json q1 = info("q1");
  bool found = false;
  for (const auto& c : q1["children"]) found |= c == json{{"child", "data-file"}, {"node-name", "data"}};
  EXPECT_TRUE(found) << q1["children"].dump();
  const std::string b = image("b.qcow2");
  ok("blockdev-add",
     {{"driver", "qcow2"}, {"node-name", "q2"}, {"file", file(b)}, {"data-file", file(e)}});
  EXPECT_EQ(graph_.find("q2")->children().size(), 2u);
}

TEST_F(Qcow2CommandsTest, ArgumentErrors) {
  const std::string a = image("a.qcow2");
  EXPECT_EQ(err("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q"}, {"file", file(a)},
                                 {"backing", 5}}),
            "Invalid parameter type for 'backing', expected: BlockdevRefOrNull");
  EXPECT_EQ(err("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q"}, {"file", file(a)},
                                 {"data-file", nullptr}}),
            "Invalid parameter type for 'data-file', expected: BlockdevRef");
  EXPECT_EQ(err("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q"}, {"file", file(a)},
                                 {"backing", "nosuch"}}),
            "Cannot find device='nosuch' nor node-name='nosuch'");
  EXPECT_EQ(err("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q"}, {"file", file(a)},
                                 {"data-file", "nodata"}}),
            "Cannot find device='nodata' nor node-name='nodata'");
  EXPECT_EQ(err("blockdev-add", {{"driver", "qcow2"}, {"node-name", "q"}}),
            "Parameter 'file' is missing");
  EXPECT_EQ(err("blockdev-add",
                {{"driver", "qcow2"},
                 {"node-name", "q"},
                 {"file", file(a)},
                 {"backing", {{"driver", "file"}, {"node-name", "q"}, {"filename", a}}}}),
            "Duplicate nodes with node-name='q'");
  EXPECT_EQ(err("blockdev-add", {{"driver", "raw"}, {"node-name", "r"}, {"file", file(a)},
                                 {"backing", nullptr}}),
            "Parameter 'backing' is unexpected");
  EXPECT_TRUE(graph_.nodes().empty());
}

// The real driver, once blockcore/node_factory.cpp registers it.
TEST(Qcow2RealDriver, BlockdevAddOpensAQemuImgChain) {
  blockcore::io::BlockingPool pool(0);
  blockcore::Graph graph(pool);
  if (!graph.factory().find("qcow2")) GTEST_SKIP() << "no qcow2 driver in this build yet";
  if (std::system("qemu-img --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no qemu-img";
  fleece_test::TempDir dir;
  const std::string base = dir.file("base.qcow2"), top = dir.file("top.qcow2");
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 '" + base + "' 1M").c_str()), 0);
  ASSERT_EQ(std::system(("qemu-img create -q -f qcow2 -F qcow2 -b '" + base + "' '" + top + "'")
                            .c_str()),
            0);
  ExportRegistry exports;
  CommandTable table = make_default_command_table();
  CommandContext ctx{graph, exports};
  QmpDispatcher d(table, ctx);
  auto run = [&](const json& req) { return fleece_test::run_task(d.handle(req.dump())); };
  ASSERT_TRUE(run(json{{"execute", "qmp_capabilities"}}).contains("return"));
  json args = {{"driver", "qcow2"},
               {"node-name", "top"},
               {"file", {{"driver", "file"}, {"filename", top}}}};
  json r = run(json{{"execute", "blockdev-add"}, {"arguments", args}});
  ASSERT_TRUE(r.contains("return")) << r.dump();
  json nodes = run(json{{"execute", "query-named-block-nodes"}})["return"];
  bool seen = false;
  for (const auto& n : nodes) {
    if (n["node-name"] != "top") continue;
    seen = true;
    EXPECT_EQ(n["backing_file"], base);
    EXPECT_EQ(n["backing_file_depth"], 1);
    EXPECT_EQ(n["image"]["backing-image"]["filename"], base);
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace server::control
