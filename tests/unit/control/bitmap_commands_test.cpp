// block-dirty-bitmap-add/-remove/-clear/-enable/-disable/-merge, transaction and
// query-dirty-bitmaps (and "dirty-bitmaps" in query-named-block-nodes) through the QMP
// dispatcher over a real graph: results, QEMU's argument errors and refusals, and
// all-or-nothing transactions.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "control_test_env.h"
#include "unit/backup/fake_bitmap_store.h"

namespace server::control {
namespace {

using nlohmann::json;

constexpr uint64_t kG = 65536;
constexpr uint64_t kDisk = 1 << 20;  // 16 granules

class BitmapCommandsTest : public ControlTestEnv {
 protected:
  void SetUp() override {
    add_file_node("f0", image("disk.img", kDisk));
    ok("blockdev-add", {{"driver", "raw"}, {"node-name", "disk0"}, {"file", "f0"}});
    add_file_node("f1", image("other.img", kDisk));
  }

  void write(const std::string& node, uint64_t off, uint64_t len = 512) {
    std::vector<std::byte> data(len, std::byte{1});
    blockcore::Status s =
        fleece_test::run_task(graph_.find(node)->write(off, data, blockcore::IoFlags::kNone));
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  json bitmaps(const std::string& node = "") {
    return node.empty() ? ok("query-dirty-bitmaps") : ok("query-dirty-bitmaps", {{"node", node}});
  }

  // The one bitmap `name` of query-dirty-bitmaps (null when absent).
  json info(const std::string& name, const std::string& node = "disk0") {
    for (const auto& b : bitmaps(node)) {
      if (b["name"] == name) return b;
    }
    return nullptr;
  }

  json error_of(const std::string& command, const json& args) {
    json r = exec(command, args);
    EXPECT_TRUE(r.contains("error")) << r.dump();
    return r.value("error", json());
  }
};

TEST_F(BitmapCommandsTest, AddRecordWritesQueryAndRemove) {
  EXPECT_EQ(ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "nightly"}}), json::object());
  EXPECT_EQ(bitmaps(), json::array({{{"node", "disk0"},
                                     {"name", "nightly"},
                                     {"granularity", kG},
                                     {"count", 0},
                                     {"persistent", false},
                                     {"recording", true},
                                     {"busy", false},
                                     {"inconsistent", false}}}));
  write("disk0", 3 * kG + 100);
  write("disk0", 10 * kG, 2 * kG);
  EXPECT_EQ(info("nightly")["count"], 3 * kG);

  ok("block-dirty-bitmap-add",
     {{"node", "disk0"}, {"name", "fine"}, {"granularity", 512}, {"disabled", true}});
  json fine = info("fine");
  EXPECT_EQ(fine["granularity"], 512);
  EXPECT_EQ(fine["recording"], false);

  // QEMU's BlockDirtyInfo list in query-named-block-nodes, only on nodes with bitmaps.
  for (const auto& n : ok("query-named-block-nodes")) {
    if (n["node-name"] == "disk0") {
      ASSERT_TRUE(n.contains("dirty-bitmaps"));
      EXPECT_EQ(n["dirty-bitmaps"].size(), 2u);
      EXPECT_EQ(n["dirty-bitmaps"][1], json({{"name", "nightly"},
                                             {"count", 3 * kG},
                                             {"granularity", kG},
                                             {"recording", true},
                                             {"busy", false},
                                             {"persistent", false},
                                             {"inconsistent", false}}));
    } else {
      EXPECT_FALSE(n.contains("dirty-bitmaps")) << n["node-name"];
    }
    EXPECT_FALSE(n.contains("bitmap-store"));
  }

  EXPECT_EQ(ok("block-dirty-bitmap-remove", {{"node", "disk0"}, {"name", "nightly"}}),
            json::object());
  EXPECT_EQ(info("nightly"), nullptr);
  EXPECT_EQ(bitmaps("f1"), json::array());
}

TEST_F(BitmapCommandsTest, ClearEnableDisableMerge) {
  ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "a"}});
  ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "t"}, {"disabled", true}});
  ok("block-dirty-bitmap-add", {{"node", "f1"}, {"name", "x"}});
  write("disk0", 0);
  write("f1", 5 * kG);
  ok("block-dirty-bitmap-merge",
     {{"node", "disk0"}, {"target", "t"}, {"bitmaps", {"a", {{"node", "f1"}, {"name", "x"}}}}});
  EXPECT_EQ(info("t")["count"], 2 * kG);
  ok("block-dirty-bitmap-clear", {{"node", "disk0"}, {"name", "a"}});
  EXPECT_EQ(info("a")["count"], 0);
  ok("block-dirty-bitmap-disable", {{"node", "disk0"}, {"name", "a"}});
  write("disk0", 7 * kG);
  EXPECT_EQ(info("a")["count"], 0);
  EXPECT_EQ(info("a")["recording"], false);
  ok("block-dirty-bitmap-enable", {{"node", "disk0"}, {"name", "a"}});
  write("disk0", 8 * kG);
  EXPECT_EQ(info("a")["count"], kG);
}

TEST_F(BitmapCommandsTest, ArgumentErrorsUseQemuWording) {
  auto desc = [this](const std::string& c, const json& a) { return err(c, a); };
  EXPECT_EQ(desc("block-dirty-bitmap-add", {{"name", "b"}}), "Parameter 'node' is missing");
  EXPECT_EQ(desc("block-dirty-bitmap-add", {{"node", "disk0"}}), "Parameter 'name' is missing");
  EXPECT_EQ(desc("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "b"}, {"granularity", -1}}),
            "Parameter 'granularity' expects uint64");
  EXPECT_EQ(desc("block-dirty-bitmap-add",
                 {{"node", "disk0"}, {"name", "b"}, {"granularity", 1ull << 32}}),
            "Parameter 'granularity' expects uint32");
  EXPECT_EQ(
      desc("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "b"}, {"persistent", "yes"}}),
      "Invalid parameter type for 'persistent', expected: boolean");
  EXPECT_EQ(desc("block-dirty-bitmap-remove", {{"node", "disk0"}, {"name", "b"}, {"force", true}}),
            "Parameter 'force' is unexpected");
  EXPECT_EQ(desc("block-dirty-bitmap-merge", {{"node", "disk0"}, {"target", "t"}}),
            "Parameter 'bitmaps' is missing");
  EXPECT_EQ(
      desc("block-dirty-bitmap-merge", {{"node", "disk0"}, {"target", "t"}, {"bitmaps", "a"}}),
      "Invalid parameter type for 'bitmaps', expected: array");
  EXPECT_EQ(
      desc("block-dirty-bitmap-merge", {{"node", "disk0"}, {"target", "t"}, {"bitmaps", {"a", 5}}}),
      "Invalid parameter type for 'bitmaps[1]', expected: BlockDirtyBitmapOrStr");
  EXPECT_EQ(desc("block-dirty-bitmap-merge",
                 {{"node", "disk0"}, {"target", "t"}, {"bitmaps", {{{"node", "disk0"}}}}}),
            "Parameter 'bitmaps[0].name' is missing");
  EXPECT_EQ(desc("block-dirty-bitmap-merge",
                 {{"node", "disk0"},
                  {"target", "t"},
                  {"bitmaps", {{{"node", "disk0"}, {"name", "a"}, {"x", 1}}}}}),
            "Parameter 'bitmaps[0].x' is unexpected");
  EXPECT_EQ(desc("query-dirty-bitmaps", {{"node", 1}}),
            "Invalid parameter type for 'node', expected: string");
  EXPECT_EQ(bitmaps(), json::array());
}

TEST_F(BitmapCommandsTest, RefusalsAreGenericErrorsWithQemuMessages) {
  ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "b"}});
  auto expect = [this](const std::string& c, const json& a, const std::string& d) {
    EXPECT_EQ(error_of(c, a), json({{"class", "GenericError"}, {"desc", d}})) << c << a.dump();
  };
  expect("block-dirty-bitmap-add", {{"node", "nope"}, {"name", "b"}},
         "Cannot find device='nope' nor node-name='nope'");
  expect("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "b"}}, "Bitmap already exists: b");
  expect("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", ""}},
         "Bitmap name cannot be empty");
  expect("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "c"}, {"granularity", 1000}},
         "Granularity must be power of 2 and at least 512");
  expect("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "c"}, {"persistent", true}},
         "Can't make bitmap 'c' persistent in 'disk0': Operation not supported (the node keeps "
         "no persistent bitmaps: a qcow2 image does, a raw node needs a bitmap-file)");
  for (const char* c : {"block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
                        "block-dirty-bitmap-enable", "block-dirty-bitmap-disable"}) {
    expect(c, {{"node", "nope"}, {"name", "b"}}, "Node 'nope' not found");
    expect(c, {{"node", "disk0"}, {"name", "x"}}, "Dirty bitmap 'x' not found");
  }
  expect("block-dirty-bitmap-merge", {{"node", "disk0"}, {"target", "b"}, {"bitmaps", {"x"}}},
         "Dirty bitmap 'x' not found");
  expect("query-dirty-bitmaps", {{"node", "nope"}},
         "Cannot find device='nope' nor node-name='nope'");
  EXPECT_EQ(bitmaps().size(), 1u);
}

TEST_F(BitmapCommandsTest, AnExportedBitmapIsBusy) {
  ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "b"}});
  ok("block-export-add",
     {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"bitmaps", {"b"}}});
  EXPECT_EQ(info("b")["busy"], true);
  const std::string busy = "Bitmap 'b' is currently in use by another operation and cannot be used";
  EXPECT_EQ(err("block-dirty-bitmap-remove", {{"node", "disk0"}, {"name", "b"}}), busy);
  EXPECT_EQ(err("block-dirty-bitmap-clear", {{"node", "disk0"}, {"name", "b"}}), busy);
  EXPECT_EQ(err("block-dirty-bitmap-disable", {{"node", "disk0"}, {"name", "b"}}), busy);
  ok("block-export-del", {{"id", "e"}});
  EXPECT_EQ(info("b")["busy"], false);
  ok("block-dirty-bitmap-remove", {{"node", "disk0"}, {"name", "b"}});
}

TEST_F(BitmapCommandsTest, PersistentBitmapsGoToTheNodesStore) {
  auto store = std::make_shared<fleece_test::FakeStore>();
  graph_.find("disk0")->bitmaps().attach_store(store, {});
  for (const auto& n : ok("query-named-block-nodes")) {
    if (n["node-name"] == "disk0") {
      EXPECT_EQ(n["bitmap-store"], json({{"description", "fake store"}, {"writable", true}}));
    }
  }
  ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "p"}, {"persistent", true}});
  EXPECT_EQ(info("p")["persistent"], true);
  EXPECT_TRUE(store->stored.count("p"));
  write("disk0", 2 * kG);
  EXPECT_TRUE(store->stored["p"].get(2));
  ok("block-dirty-bitmap-remove", {{"node", "disk0"}, {"name", "p"}});
  EXPECT_FALSE(store->stored.count("p"));
}

TEST_F(BitmapCommandsTest, TransactionIsAllOrNothing) {
  ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "live"}});
  write("disk0", 1 * kG);
  json before = bitmaps();
  json actions = json::array({
      {{"type", "block-dirty-bitmap-add"}, {"data", {{"node", "disk0"}, {"name", "frozen"}}}},
      {{"type", "block-dirty-bitmap-merge"},
       {"data", {{"node", "disk0"}, {"target", "frozen"}, {"bitmaps", {"live"}}}}},
      {{"type", "block-dirty-bitmap-clear"}, {"data", {{"node", "disk0"}, {"name", "live"}}}},
      {{"type", "block-dirty-bitmap-disable"}, {"data", {{"node", "disk0"}, {"name", "frozen"}}}},
      {{"type", "block-dirty-bitmap-remove"}, {"data", {{"node", "disk0"}, {"name", "nope"}}}},
  });
  EXPECT_EQ(err("transaction", {{"actions", actions}}), "Dirty bitmap 'nope' not found");
  EXPECT_EQ(bitmaps(), before);

  actions.erase(4);
  EXPECT_EQ(ok("transaction",
               {{"actions", actions}, {"properties", {{"completion-mode", "individual"}}}}),
            json::object());
  EXPECT_EQ(info("frozen")["count"], kG);
  EXPECT_EQ(info("frozen")["recording"], false);
  EXPECT_EQ(info("live")["count"], 0);
  EXPECT_EQ(ok("transaction", {{"actions", json::array()}}), json::object());
}

TEST_F(BitmapCommandsTest, TransactionArgumentErrorsComeBeforeAnyAction) {
  json add_a = {{"type", "block-dirty-bitmap-add"}, {"data", {{"node", "disk0"}, {"name", "a"}}}};
  auto with = [&](const json& second) { return json{{"actions", {add_a, second}}}; };
  EXPECT_EQ(err("transaction", json::object()), "Parameter 'actions' is missing");
  EXPECT_EQ(err("transaction", {{"actions", 1}}),
            "Invalid parameter type for 'actions', expected: array");
  EXPECT_EQ(err("transaction", with({{"type", "drive-backup"}, {"data", json::object()}})),
            "Parameter 'actions[1].type' does not accept value 'drive-backup'");
  EXPECT_EQ(err("transaction", with({{"data", json::object()}})),
            "Parameter 'actions[1].type' is missing");
  EXPECT_EQ(err("transaction", with({{"type", "block-dirty-bitmap-clear"}})),
            "Parameter 'actions[1].data' is missing");
  EXPECT_EQ(err("transaction", with({{"type", "block-dirty-bitmap-clear"}, {"data", 3}})),
            "Invalid parameter type for 'actions[1].data', expected: object");
  EXPECT_EQ(
      err("transaction", with({{"type", "block-dirty-bitmap-clear"}, {"data", {{"name", "a"}}}})),
      "Parameter 'actions[1].data.node' is missing");
  EXPECT_EQ(err("transaction", with({{"type", "block-dirty-bitmap-clear"},
                                     {"data", {{"node", "disk0"}, {"name", "a"}, {"z", 0}}}})),
            "Parameter 'actions[1].data.z' is unexpected");
  EXPECT_EQ(err("transaction", with({{"type", "block-dirty-bitmap-clear"},
                                     {"data", {{"node", "disk0"}, {"name", "a"}}},
                                     {"extra", 1}})),
            "Parameter 'actions[1].extra' is unexpected");
  EXPECT_EQ(err("transaction", {{"actions", {add_a}}, {"properties", {{"completion-mode", "x"}}}}),
            "Parameter 'properties.completion-mode' does not accept value 'x'");
  EXPECT_EQ(
      err("transaction", {{"actions", {add_a}}, {"properties", {{"completion-mode", "grouped"}}}}),
      "Action 'block-dirty-bitmap-add' does not support transaction property "
      "completion-mode = grouped");
  EXPECT_EQ(bitmaps(), json::array());
}

}  // namespace
}  // namespace server::control
