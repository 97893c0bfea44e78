// ControlTestEnv: a real block graph (inline BlockingPool) over files in a temp dir, an
// ExportRegistry, the default command table and a CommandContext, plus exec() that runs
// one QMP request through a negotiated QmpDispatcher and returns the reply.
// Threading: test thread only.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "blockcore/graph.h"
#include "blockcore/io/blocking_pool.h"
#include "server/control/command_table.h"
#include "server/control/qmp_dispatcher.h"
#include "server/export/export_registry.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace server::control {

class ControlTestEnv : public ::testing::Test {
 protected:
  ControlTestEnv()
      : pool_(0),
        graph_(pool_),
        table_(make_default_command_table()),
        ctx_{graph_, exports_},
        dispatcher_(table_, ctx_) {
    nlohmann::json r = handle_text(R"({"execute":"qmp_capabilities"})");
    EXPECT_TRUE(r.contains("return")) << r.dump();
  }

  nlohmann::json handle_text(const std::string& text) {
    return fleece_test::run_task(dispatcher_.handle(text));
  }

  // The whole reply of {"execute": command, "arguments": args}.
  nlohmann::json exec(const std::string& command,
                      const nlohmann::json& args = nlohmann::json::object()) {
    nlohmann::json req = {{"execute", command}, {"arguments", args}};
    return handle_text(req.dump());
  }

  // The "return" value; fails the test on an error reply.
  nlohmann::json ok(const std::string& command,
                    const nlohmann::json& args = nlohmann::json::object()) {
    nlohmann::json r = exec(command, args);
    EXPECT_TRUE(r.contains("return")) << command << " " << args.dump() << " -> " << r.dump();
    return r.contains("return") ? r["return"] : nlohmann::json();
  }

  // The error desc; fails the test on success.
  std::string err(const std::string& command,
                  const nlohmann::json& args = nlohmann::json::object()) {
    nlohmann::json r = exec(command, args);
    EXPECT_TRUE(r.contains("error")) << command << " " << args.dump() << " -> " << r.dump();
    return r.contains("error") ? r["error"]["desc"].get<std::string>() : std::string();
  }

  // A sparse file of `size` bytes in the temp dir; returns its path.
  std::string image(const std::string& name, uint64_t size = 1 << 20) {
    std::string path = dir_.file(name);
    fleece_test::make_file(path, size);
    return path;
  }

  void add_file_node(const std::string& node, const std::string& path, bool read_only = false) {
    ok("blockdev-add",
       {{"driver", "file"}, {"node-name", node}, {"filename", path}, {"read-only", read_only}});
  }

  fleece_test::TempDir dir_;
  blockcore::io::BlockingPool pool_;
  blockcore::Graph graph_;
  ExportRegistry exports_;
  CommandTable table_;
  CommandContext ctx_;
  QmpDispatcher dispatcher_;
};

}  // namespace server::control
