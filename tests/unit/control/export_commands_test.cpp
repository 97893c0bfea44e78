// block-export-add / block-export-del / query-block-exports against a real Graph and
// ExportRegistry.
#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

#include "blockcore/bitmap/dirty_bitmap.h"
#include "control_test_env.h"

namespace server::control {
namespace {

using nlohmann::json;

class ExportCommandsTest : public ControlTestEnv {
 protected:
  void SetUp() override {
    add_file_node("f0", image("disk.img", 1 << 20));
    ok("blockdev-add", {{"driver", "raw"}, {"node-name", "disk0"}, {"file", "f0"}});
    add_file_node("ro0", image("ro.img", 1 << 20), /*read_only=*/true);
    ctx_.events->subscribe([this](const QmpEvent& e) { events_.push_back(e); });
  }

  std::vector<QmpEvent> events_;
};

TEST_F(ExportCommandsTest, AddWithDefaultsRegistersAnExportNamedAfterTheNode) {
  EXPECT_EQ(ok("block-export-add", {{"type", "nbd"}, {"id", "disk0"}, {"node-name", "disk0"}}),
            json::object());
  ExportPtr e = exports_.find("disk0");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->root, graph_.find("disk0"));
  EXPECT_FALSE(e->writable);
  EXPECT_EQ(e->description, "");
  EXPECT_FALSE(e->allocation_depth);
  EXPECT_EQ(ok("query-block-exports"), json::array({{{"id", "disk0"},
                                                     {"type", "nbd"},
                                                     {"node-name", "disk0"},
                                                     {"shutting-down", false},
                                                     {"name", "disk0"},
                                                     {"description", ""},
                                                     {"writable", false},
                                                     {"bitmaps", json::array()},
                                                     {"allocation-depth", false}}}));
}

TEST_F(ExportCommandsTest, IdAndNameAreSeparate) {
  ok("block-export-add", {{"type", "nbd"},
                          {"id", "exp0"},
                          {"node-name", "disk0"},
                          {"name", "vm disk"},
                          {"writable", true},
                          {"description", "the VM's disk"},
                          {"allocation-depth", true}});
  ExportPtr e = exports_.find("vm disk");
  ASSERT_NE(e, nullptr);
  EXPECT_TRUE(e->writable);
  EXPECT_TRUE(e->allocation_depth);
  EXPECT_EQ(e->description, "the VM's disk");
  json list = ok("query-block-exports");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], "exp0");
  EXPECT_EQ(list[0]["name"], "vm disk");

  // The NBD name is not the id.
  EXPECT_EQ(err("block-export-del", {{"id", "vm disk"}}), "Export 'vm disk' is not found");
  EXPECT_EQ(ok("block-export-del", {{"id", "exp0"}}), json::object());
  EXPECT_EQ(exports_.find("vm disk"), nullptr);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].name, "BLOCK_EXPORT_DELETED");
  EXPECT_EQ(events_[0].data, json({{"id", "exp0"}}));
  EXPECT_GT(events_[0].seconds, 0);
}

TEST_F(ExportCommandsTest, ExportsFromTheConfigAreKnownByTheirName) {
  auto e = std::make_shared<Export>();
  e->name = "from-config";
  e->root = graph_.find("disk0");
  ASSERT_TRUE(exports_.add(e).is_ok());
  EXPECT_EQ(ok("query-block-exports")[0]["id"], "from-config");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "from-config"}, {"node-name", "disk0"}, {"name", "x"}}),
            "Block export id 'from-config' is already in use");
  ok("block-export-del", {{"id", "from-config"}});
  EXPECT_TRUE(exports_.list().empty());
}

TEST_F(ExportCommandsTest, AddErrors) {
  EXPECT_EQ(err("block-export-add", {{"id", "e"}, {"node-name", "disk0"}}),
            "Parameter 'type' is missing");
  EXPECT_EQ(err("block-export-add", {{"type", "fuse"}, {"id", "e"}, {"node-name", "disk0"}}),
            "Parameter 'type' does not accept value 'fuse'");
  EXPECT_EQ(err("block-export-add", {{"type", "nbd"}, {"node-name", "disk0"}}),
            "Parameter 'id' is missing");
  EXPECT_EQ(err("block-export-add", {{"type", "nbd"}, {"id", "e"}}),
            "Parameter 'node-name' is missing");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"writable", "yes"}}),
            "Invalid parameter type for 'writable', expected: boolean");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"iothread", "t"}}),
            "Parameter 'iothread' is unexpected");
  EXPECT_EQ(err("block-export-add", {{"type", "nbd"}, {"id", "-e"}, {"node-name", "disk0"}}),
            "Invalid block export id");
  EXPECT_EQ(err("block-export-add", {{"type", "nbd"}, {"id", "e"}, {"node-name", "nope"}}),
            "Cannot find device='' nor node-name='nope'");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e"}, {"node-name", "ro0"}, {"writable", true}}),
            "Cannot export read-only node as writable");
  EXPECT_EQ(
      err("block-export-add",
          {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"name", std::string(4097, 'n')}}),
      "export name '" + std::string(4097, 'n') + "' too long");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"bitmaps", {"b0"}}}),
            "Bitmap 'b0' is not found");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"bitmaps", {5}}}),
            "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr");
  EXPECT_TRUE(exports_.list().empty());

  ok("block-export-add", {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}});
  EXPECT_EQ(err("block-export-add", {{"type", "nbd"}, {"id", "e"}, {"node-name", "ro0"}}),
            "Block export id 'e' is already in use");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e2"}, {"node-name", "ro0"}, {"name", "disk0"}}),
            "NBD server already has export named 'disk0'");
  EXPECT_EQ(exports_.list().size(), 1u);
}

TEST_F(ExportCommandsTest, AWritableExportMayNotWriteANodeAWritableParentWrites) {
  // f0 is the file child of the writable raw node disk0.
  std::string e = err("block-export-add",
                      {{"type", "nbd"}, {"id", "e"}, {"node-name", "f0"}, {"writable", true}});
  EXPECT_NE(e.find("disk0"), std::string::npos) << e;
  EXPECT_TRUE(exports_.list().empty());
  // Declared uses come and go with the export.
  ok("block-export-add",
     {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"writable", true}});
  EXPECT_EQ(graph_.uses_of("disk0").size(), 1u);
  ok("block-export-del", {{"id", "e"}});
  EXPECT_TRUE(graph_.uses_of("disk0").empty());
}

TEST_F(ExportCommandsTest, BitmapsAreFoundOnTheNodeAndDownItsChain) {
  blockcore::BlockNodePtr disk0 = graph_.find("disk0");
  blockcore::BlockNodePtr f0 = graph_.find("f0");
  auto add_bitmap = [](blockcore::BlockNode& n, const std::string& name) {
    auto r = fleece_test::run_task(n.bitmaps().create({.name = name}, n.size()));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? *r : nullptr;
  };
  blockcore::DirtyBitmapPtr nightly = add_bitmap(*disk0, "nightly");
  blockcore::DirtyBitmapPtr on_file = add_bitmap(*f0, "on-file");

  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}, {"bitmaps", {"weekly"}}}),
            "Bitmap 'weekly' is not found");
  // {node, name} names the node exactly (QEMU's block_dirty_bitmap_lookup).
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"},
                 {"id", "e"},
                 {"node-name", "disk0"},
                 {"bitmaps", json::array({{{"node", "nope"}, {"name", "x"}}})}}),
            "Node 'nope' not found");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"},
                 {"id", "e"},
                 {"node-name", "disk0"},
                 {"bitmaps", json::array({{{"node", "disk0"}, {"name", "on-file"}}})}}),
            "Dirty bitmap 'on-file' not found");
  EXPECT_EQ(err("block-export-add",
                {{"type", "nbd"},
                 {"id", "e"},
                 {"node-name", "disk0"},
                 {"bitmaps", json::array({"nightly", {{"node", "disk0"}, {"name", "nightly"}}})}}),
            "Bitmap 'nightly' is listed twice");
  EXPECT_TRUE(exports_.list().empty());
  EXPECT_FALSE(nightly->busy());

  // A bare name: on the node itself, or through raw (which passes its file through) on f0.
  ok("block-export-add", {{"type", "nbd"},
                          {"id", "e"},
                          {"node-name", "disk0"},
                          {"bitmaps", json::array({"nightly", "on-file"})}});
  ExportPtr e = exports_.find("disk0");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->bitmaps, (std::vector<std::string>{"nightly", "on-file"}));
  EXPECT_EQ(e->bitmap("nightly"), nightly);
  EXPECT_EQ(e->bitmap("on-file"), on_file);
  EXPECT_EQ(ok("query-block-exports")[0]["bitmaps"], json::array({"nightly", "on-file"}));
  // Exported bitmaps are busy: they cannot be removed under a client.
  EXPECT_TRUE(nightly->busy());
  EXPECT_TRUE(on_file->busy());
  EXPECT_EQ(fleece_test::run_task(disk0->bitmaps().remove("nightly")).code(), EBUSY);

  e.reset();
  ok("block-export-del", {{"id", "e"}});
  EXPECT_FALSE(nightly->busy());
  EXPECT_FALSE(on_file->busy());

  // The explicit form, under the bitmap's own name.
  ok("block-export-add",
     {{"type", "nbd"},
      {"id", "e2"},
      {"node-name", "disk0"},
      {"bitmaps", json::array({{{"node", "f0"}, {"name", "on-file"}}})}});
  EXPECT_EQ(exports_.find("disk0")->bitmap("on-file"), on_file);
}

TEST_F(ExportCommandsTest, SafeDeleteRefusesExportsWithClientsHardDeleteDoesNot) {
  size_t clients = 2;
  ctx_.export_clients = [&clients](const Export&) { return clients; };
  ok("block-export-add", {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}});
  std::string e = err("block-export-del", {{"id", "e"}});
  EXPECT_EQ(e.rfind("export 'e' still in use", 0), 0u) << e;
  EXPECT_EQ(err("block-export-del", {{"id", "e"}, {"mode", "gentle"}}),
            "Parameter 'mode' does not accept value 'gentle'");
  std::vector<std::string> removed;
  exports_.on_removed([&removed](const ExportPtr& x) { removed.push_back(x->name); });
  ok("block-export-del", {{"id", "e"}, {"mode", "hard"}});
  EXPECT_EQ(removed, std::vector<std::string>{"disk0"});
  clients = 0;
  ok("block-export-add", {{"type", "nbd"}, {"id", "e"}, {"node-name", "disk0"}});
  ok("block-export-del", {{"id", "e"}, {"mode", "safe"}});
  EXPECT_EQ(err("block-export-del", {{"id", "e"}}), "Export 'e' is not found");
}

}  // namespace
}  // namespace server::control
