// ConfigApplier: makes the running graph and export set match a Config. At start-up it
// applies everything or fails; on SIGHUP it applies only the difference from the last
// applied config — nodes and exports that did not change are left alone, so their
// connections are never dropped. Nodes added at run time over the control socket are
// not the config's and are never touched.
// Threading: main io_context only (one apply at a time).
#pragma once

#include <asio/awaitable.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/graph.h"
#include "blockcore/node_spec.h"
#include "config/config.h"
#include "server/export/export_registry.h"

namespace server::daemon {

class ConfigApplier {
 public:
  ConfigApplier(blockcore::Graph& graph, ExportRegistry& exports);

  // Runs after a config's nodes are opened and before its exports are built, at start-up
  // and on every reload (the daemon ensures the config's `bitmaps:` there, so exports can
  // offer them). Its error fails start-up; on reload it is reported like the others.
  using NodesReadyHook = std::function<blockcore::Status(const config::Config& cfg)>;
  void set_nodes_ready_hook(NodesReadyHook hook) { nodes_ready_ = std::move(hook); }

  // Opens every node and registers every export; on failure undoes what it did.
  blockcore::Status apply_initial(const config::Config& cfg);
  // Applies the difference from the last applied config. Removed or changed exports go
  // first (their connections close), then removed or changed nodes (waiting up to
  // `drain_ms` for connections to let go of them), then new nodes and exports. Errors
  // are collected; what could be applied is applied.
  asio::awaitable<blockcore::Status> apply_reload(const config::Config& cfg, unsigned drain_ms);

  // Builds the Export for an ExportConfig against the graph (root lookup, checks).
  static blockcore::Result<ExportPtr> make_export(const config::ExportConfig& ec,
                                                  blockcore::Graph& graph);

 private:
  // Registers an export and takes its use of the root node in the graph.
  blockcore::Status add_export(const config::ExportConfig& ec);
  // Withdraws an export (its connections close) and drops its use of the node.
  void remove_export(const std::string& name);
  // A reload that changes only a throttle node's limits: applied to the open node (its
  // exports and connections stay). False when the node must be reopened instead; true
  // when handled, with `error` set if the new limits were refused.
  bool retune_throttle(const std::string& name, blockcore::NodeSpec& applied,
                       const blockcore::NodeSpec& want, blockcore::Status& error);
  // Adds nodes in an order where every reference is already open.
  blockcore::Status add_nodes(const std::vector<const blockcore::NodeSpec*>& specs,
                              std::vector<std::string>& added);

  blockcore::Graph& graph_;
  ExportRegistry& exports_;
  std::map<std::string, blockcore::NodeSpec> applied_nodes_;
  std::map<std::string, config::ExportConfig> applied_exports_;
  NodesReadyHook nodes_ready_;
};

// True when two export configs describe the same export.
bool same_export(const config::ExportConfig& a, const config::ExportConfig& b);

}  // namespace server::daemon
