// CommandContext: everything a QMP command handler may act on — the block graph, the
// export registry, the event sink, QMP export ids — plus optional hooks into services
// the daemon wires up. Later issues add their services (bitmaps, fleecing) here as
// members with defaults, so existing construction sites keep compiling:
//   CommandContext ctx{graph, exports};
// Threading: the referenced objects are thread-safe; handlers run on the control
// server's executor. The struct is set up before serving and not changed afterwards
// (except `commands`, which ControlServer/QmpDispatcher fill in).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "backup/fleece_manager.h"
#include "blockcore/base/status.h"
#include "blockcore/block_node.h"
#include "blockcore/graph.h"
#include "server/control/event_sink.h"
#include "server/control/export_ids.h"
#include "server/export/export_registry.h"

namespace server::control {

class CommandTable;

struct CommandContext {
  blockcore::Graph& graph;
  ExportRegistry& exports;
  // Where events start; every ControlServer over this context broadcasts them.
  std::shared_ptr<EventSink> events = std::make_shared<EventSink>();
  // QMP block-export ids of exports added over QMP.
  std::shared_ptr<ExportIds> export_ids = std::make_shared<ExportIds>();
  // The table being served (query-commands lists it); set by ControlServer.
  const CommandTable* commands = nullptr;

  // Optional hooks (unset = the default in the comment).
  // NBD clients connected to an export; block-export-del in mode "safe" refuses to
  // remove an export that has any. Unset: 0 (safe removal always proceeds).
  std::function<size_t(const Export&)> export_clients;
  // The fleecing sessions (fleece-start/-stop, query-fleeces). Unset: those commands
  // fail with "fleecing is not available".
  backup::FleeceManager* fleeces = nullptr;
  // fleecing.overlay-dir: where fleece-start creates overlays when the request names none.
  std::string overlay_dir;
};

}  // namespace server::control
