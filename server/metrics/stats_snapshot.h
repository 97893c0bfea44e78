// StatsSnapshot: one consistent-enough picture of the daemon's counters for
// query-blockstats and the Prometheus endpoint — per graph node its I/O statistics
// (blockcore/stats/io_stats.h) and dirty bitmaps, per export its root node and open
// connections, per fleece its overlay and copied bytes. collect_stats() only reads
// thread-safe counters, so it may run on any thread while I/O goes on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "backup/fleece_manager.h"
#include "blockcore/graph.h"
#include "blockcore/stats/io_stats.h"
#include "server/export/export_counters.h"
#include "server/export/export_registry.h"

namespace server::metrics {

struct BitmapStats {
  std::string name;
  uint64_t dirty_bytes = 0;
  uint64_t granularity = 0;
  bool recording = false;
};

struct NodeStats {
  std::string node_name;
  std::string driver;
  uint64_t size = 0;
  uint64_t in_flight = 0;
  blockcore::IoStatsSnapshot io;
  std::vector<BitmapStats> bitmaps;  // by name
};

struct ExportStats {
  std::string name;
  std::string node_name;
  bool writable = false;
  size_t connections = 0;  // NBD clients past the handshake now
  ExportCountersSnapshot nbd;  // counted by the NBD layer (export_counters.h)
};

struct FleeceStats {
  std::string id;
  std::string node_name;  // the live node
  std::string export_name;  // of the view; empty if none
  bool broken = false;
  uint64_t overlay_bytes = 0;
  uint64_t copied_bytes = 0;
  blockcore::IoStatsSnapshot view_io;  // reads of the snapshot view
};

struct StatsSnapshot {
  std::vector<NodeStats> nodes;  // by name
  std::vector<ExportStats> exports;
  std::vector<FleeceStats> fleeces;  // by id
};

// Where the counters live. Everything but graph and exports may be unset.
struct StatsSources {
  const blockcore::Graph& graph;
  const ExportRegistry& exports;
  const backup::FleeceManager* fleeces = nullptr;
  std::function<size_t(const Export&)> export_clients;  // unset: 0
};

// The label of NBD command `command` in export counters ("read", "write", "flush", "trim",
// "cache", "write-zeroes", "block-status"); nullptr for NBD_CMD_DISC and unknown ones.
const char* nbd_command_label(uint16_t command);

// Every node, export and fleece; with `node_name`, only that node, the exports of it and
// the fleeces of it.
StatsSnapshot collect_stats(const StatsSources& from,
                            const std::optional<std::string>& node_name = std::nullopt);

}  // namespace server::metrics
