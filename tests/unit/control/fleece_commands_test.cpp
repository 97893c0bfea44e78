// fleece-start, fleece-stop, query-fleeces and the transaction action fleece-start
// through the QMP dispatcher over a real graph and a real FleeceManager: arguments and
// errors, the view's export created (read-only, allocation depth, the frozen bitmap) and
// removed, rollback of a failed transaction, and FLEECE_BROKEN on the event sink.
#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>
#include <vector>

#include "backup/fleece_manager.h"
#include "control_test_env.h"

namespace server::control {
namespace {

using nlohmann::json;

constexpr uint64_t kG = 65536;
constexpr uint64_t kDisk = 1 << 20;

class FleeceCommandsTest : public ControlTestEnv {
 protected:
  FleeceCommandsTest()
      : fleeces_(pool_, [this](const std::string& id, const std::string& node,
                               const std::string& reason) {
          ctx_.events->emit("FLEECE_BROKEN", {{"id", id}, {"node", node}, {"reason", reason}});
        }) {
    overlays_ = dir_.file("overlays");
    std::filesystem::create_directory(overlays_);
    ctx_.fleeces = &fleeces_;
    ctx_.overlay_dir = overlays_;
    ctx_.events->subscribe([this](const QmpEvent& e) {
      std::lock_guard g(mu_);
      events_.push_back(e.to_json());
    });
  }

  void SetUp() override {
    add_file_node("f0", image("disk.img", kDisk));
    ok("blockdev-add", {{"driver", "raw"}, {"node-name", "disk0"}, {"file", "f0"}});
    ok("block-dirty-bitmap-add", {{"node", "disk0"}, {"name", "b"}});
  }

  void write(uint64_t off, uint64_t len, std::byte value = std::byte{1}) {
    std::vector<std::byte> data(len, value);
    blockcore::Status s =
        fleece_test::run_task(graph_.find("disk0")->write(off, data, blockcore::IoFlags::kNone));
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }

  size_t overlay_files() const {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(overlays_)) n += e.exists();
    return n;
  }

  backup::FleeceManager fleeces_;
  std::string overlays_;
  std::mutex mu_;
  std::vector<json> events_;
};

TEST_F(FleeceCommandsTest, StartExportsTheViewReadOnlyWithTheFrozenBitmap) {
  write(0, 512);
  EXPECT_EQ(ok("fleece-start", {{"id", "f1"}, {"node", "disk0"}, {"bitmap", "b"}}), json::object());
  ExportPtr e = exports_.find("disk0-fleece");
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->writable);
  EXPECT_TRUE(e->allocation_depth);
  EXPECT_EQ(e->bitmaps, std::vector<std::string>{"b"});
  blockcore::DirtyBitmapPtr frozen = e->bitmap("b");
  ASSERT_TRUE(frozen);
  EXPECT_EQ(frozen->dirty_bytes(), kG);  // the write before the snapshot
  EXPECT_EQ(e->root.get(), fleeces_.find("f1")->view.get());
  EXPECT_EQ(overlay_files(), 0u);  // unlinked at once

  json list = ok("query-fleeces");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], "f1");
  EXPECT_EQ(list[0]["node"], "disk0");
  EXPECT_EQ(list[0]["export"], "disk0-fleece");
  EXPECT_EQ(list[0]["bitmap"], "b");
  EXPECT_EQ(list[0]["state"], "active");
  EXPECT_EQ(list[0]["copied-bytes"], 0);
  EXPECT_FALSE(list[0].contains("reason"));

  write(kG, 512);  // copies one 4 KiB granule
  EXPECT_EQ(ok("query-fleeces")[0]["copied-bytes"], 4096);

  // The live node cannot go while a fleece uses it.
  EXPECT_NE(err("blockdev-del", {{"node-name", "disk0"}}).find("fleece 'f1'"), std::string::npos);

  EXPECT_EQ(ok("fleece-stop", {{"id", "f1"}}), json::object());
  EXPECT_FALSE(exports_.find("disk0-fleece"));
  EXPECT_EQ(ok("query-fleeces"), json::array());
  EXPECT_TRUE(graph_.uses_of("disk0").empty());
}

TEST_F(FleeceCommandsTest, DiscardMakesTheExportWritableForTrims) {
  ok("fleece-start", {{"id", "f1"}, {"node", "disk0"}, {"export", "scan"}, {"discard", true}});
  ASSERT_TRUE(exports_.find("scan"));
  EXPECT_TRUE(exports_.find("scan")->writable);
  ok("fleece-stop", {{"id", "f1"}});
}

TEST_F(FleeceCommandsTest, ArgumentErrors) {
  EXPECT_EQ(err("fleece-start", {{"node", "disk0"}}), "Parameter 'id' is missing");
  EXPECT_EQ(err("fleece-start", {{"id", "f"}}), "Parameter 'node' is missing");
  EXPECT_EQ(err("fleece-start", {{"id", "f"}, {"node", "disk0"}, {"on-cbw-error", "x"}}),
            "Parameter 'on-cbw-error' does not accept value 'x'");
  EXPECT_EQ(err("fleece-start", {{"id", "f"}, {"node", "disk0"}, {"cbw-timeout", -1}}),
            "Parameter 'cbw-timeout' expects uint64");
  EXPECT_EQ(err("fleece-start", {{"id", "f"}, {"node", "disk0"}, {"bogus", 1}}),
            "Parameter 'bogus' is unexpected");
  EXPECT_EQ(err("fleece-stop", json::object()), "Parameter 'id' is missing");
  EXPECT_EQ(err("query-fleeces", {{"x", 1}}), "Parameter 'x' is unexpected");
  EXPECT_EQ(ok("query-fleeces"), json::array());
}

TEST_F(FleeceCommandsTest, RefusalsLeaveNothingBehind) {
  EXPECT_EQ(err("fleece-start", {{"id", "f"}, {"node", "nope"}}),
            "Cannot find device='' nor node-name='nope'");
  EXPECT_EQ(err("fleece-start", {{"id", "1f"}, {"node", "disk0"}}), "Invalid fleece id '1f'");
  EXPECT_EQ(err("fleece-start", {{"id", "f"}, {"node", "disk0"}, {"bitmap", "zz"}}),
            "Dirty bitmap 'zz' not found");
  EXPECT_NE(err("fleece-start", {{"id", "f"}, {"node", "disk0"}, {"overlay", overlays_ + "/no"}})
                .find("overlays/no"),
            std::string::npos);
  ok("fleece-start", {{"id", "f1"}, {"node", "disk0"}, {"bitmap", "b"}});
  EXPECT_EQ(err("fleece-start", {{"id", "f1"}, {"node", "disk0"}, {"export", "x"}}),
            "fleece 'f1' already exists");
  EXPECT_EQ(err("fleece-start", {{"id", "f2"}, {"node", "disk0"}}),
            "NBD server already has export named 'disk0-fleece'");
  EXPECT_EQ(err("fleece-start", {{"id", "f2"}, {"node", "disk0"}, {"export", "x"}, {"bitmap", "b"}}),
            "Bitmap 'b' is frozen by fleece 'f1'");
  EXPECT_EQ(err("fleece-stop", {{"id", "nope"}}), "Fleece 'nope' not found");
  EXPECT_EQ(ok("query-fleeces").size(), 1u);
  EXPECT_EQ(exports_.list().size(), 1u);
  ok("fleece-stop", {{"id", "f1"}});
}

TEST_F(FleeceCommandsTest, WithoutAManagerFleecingIsUnavailable) {
  ctx_.fleeces = nullptr;
  EXPECT_EQ(err("fleece-start", {{"id", "f"}, {"node", "disk0"}}),
            "fleecing is not available in this server");
  EXPECT_EQ(ok("query-fleeces"), json::array());
}

TEST_F(FleeceCommandsTest, TransactionRollsBackAFleeceWhenALaterActionFails) {
  write(0, 512);
  json r = exec("transaction",
                {{"actions",
                  {{{"type", "fleece-start"},
                    {"data", {{"id", "t1"}, {"node", "disk0"}, {"bitmap", "b"}}}},
                   {{"type", "block-dirty-bitmap-add"},
                    {"data", {{"node", "disk0"}, {"name", "b"}}}}}}});
  ASSERT_TRUE(r.contains("error")) << r.dump();
  EXPECT_EQ(ok("query-fleeces"), json::array());
  EXPECT_FALSE(exports_.find("disk0-fleece"));
  // The rotation was undone: b still holds the write.
  EXPECT_EQ(graph_.find("disk0")->bitmaps().lookup("b").value()->dirty_bytes(), kG);

  EXPECT_EQ(ok("transaction", {{"actions",
                                {{{"type", "fleece-start"},
                                  {"data", {{"id", "t1"}, {"node", "disk0"}, {"bitmap", "b"}}}}}}}),
            json::object());
  EXPECT_EQ(ok("query-fleeces").size(), 1u);
  EXPECT_EQ(graph_.find("disk0")->bitmaps().lookup("b").value()->dirty_bytes(), 0u);
  // Stop with rollback: the frozen bits go back.
  ok("fleece-stop", {{"id", "t1"}, {"rollback", true}});
  EXPECT_EQ(graph_.find("disk0")->bitmaps().lookup("b").value()->dirty_bytes(), kG);
}

TEST_F(FleeceCommandsTest, OverlayLimitBreaksTheSnapshotWithAnEvent) {
  ok("fleece-start", {{"id", "f1"}, {"node", "disk0"}, {"overlay-limit", 4096}});
  write(0, 512);
  write(4 * kG, 512);  // over the limit: the live write succeeds, the snapshot breaks
  json list = ok("query-fleeces");
  EXPECT_EQ(list[0]["state"], "broken");
  EXPECT_TRUE(list[0].contains("reason"));
  std::lock_guard g(mu_);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0]["event"], "FLEECE_BROKEN");
  EXPECT_EQ(events_[0]["data"]["id"], "f1");
  EXPECT_EQ(events_[0]["data"]["node"], "disk0");
}

}  // namespace
}  // namespace server::control
