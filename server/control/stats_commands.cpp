// query-blockstats: per graph node, QEMU's BlockStats shape (node-name, stats with the
// BlockDeviceStats counters fleece has the concept for, rd/wr/flush latency histograms)
// plus fleece's additions: driver, every operation kind with its counters and latency
// histogram, the node's dirty bitmaps, the fleeces of the node and its exports.
// Counters come from server/metrics/stats_snapshot.h, the same picture the Prometheus
// endpoint serves.
#include <asio/awaitable.hpp>
#include <optional>
#include <string>

#include "server/control/arg_reader.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/metrics/stats_snapshot.h"

namespace server::control {
namespace {

using blockcore::IoOp;
using blockcore::IoOpSnapshot;
using blockcore::LatencyHistogram;
using blockcore::LatencySnapshot;
using blockcore::Result;
using blockcore::Status;
using nlohmann::json;
namespace m = server::metrics;

// QEMU's BlockLatencyHistogramInfo: bins[i] counts latencies in (boundaries[i-1],
// boundaries[i]] nanoseconds; the last bin everything slower than the last boundary.
json histogram_json(const LatencySnapshot& h) {
  json boundaries = json::array();
  for (size_t i = 0; i < LatencyHistogram::kFiniteBuckets; ++i) {
    boundaries.push_back(LatencyHistogram::upper_bound_ns(i));
  }
  json bins = json::array();
  for (uint64_t c : h.counts) bins.push_back(c);
  return json{{"boundaries", std::move(boundaries)}, {"bins", std::move(bins)}};
}

// QEMU's BlockDeviceStats. rd = read, wr = write, unmap = discard, flush = flush;
// write-zeroes, block-status and cache only appear under "operations".
json qemu_stats(const blockcore::IoStatsSnapshot& io) {
  const IoOpSnapshot& rd = io.op(IoOp::kRead);
  const IoOpSnapshot& wr = io.op(IoOp::kWrite);
  const IoOpSnapshot& fl = io.op(IoOp::kFlush);
  const IoOpSnapshot& un = io.op(IoOp::kDiscard);
  return json{
      {"rd_bytes", rd.bytes},
      {"wr_bytes", wr.bytes},
      {"unmap_bytes", un.bytes},
      {"rd_operations", rd.ok},
      {"wr_operations", wr.ok},
      {"flush_operations", fl.ok},
      {"unmap_operations", un.ok},
      {"rd_merged", 0},
      {"wr_merged", 0},
      {"unmap_merged", 0},
      {"rd_total_time_ns", rd.total_ns},
      {"wr_total_time_ns", wr.total_ns},
      {"flush_total_time_ns", fl.total_ns},
      {"unmap_total_time_ns", un.total_ns},
      {"failed_rd_operations", rd.failed},
      {"failed_wr_operations", wr.failed},
      {"failed_flush_operations", fl.failed},
      {"failed_unmap_operations", un.failed},
      {"invalid_rd_operations", rd.invalid},
      {"invalid_wr_operations", wr.invalid},
      {"invalid_flush_operations", fl.invalid},
      {"invalid_unmap_operations", un.invalid},
      {"account_invalid", true},
      {"account_failed", true},
      {"timed_stats", json::array()},
      {"rd_latency_histogram", histogram_json(rd.latency)},
      {"wr_latency_histogram", histogram_json(wr.latency)},
      {"flush_latency_histogram", histogram_json(fl.latency)},
  };
}

json operations_json(const blockcore::IoStatsSnapshot& io) {
  json ops = json::object();
  for (IoOp op : blockcore::kAllIoOps) {
    const IoOpSnapshot& o = io.op(op);
    ops[blockcore::io_op_name(op)] = json{
        {"requests", o.requests()},     {"failed", o.failed},
        {"invalid", o.invalid},         {"bytes", o.bytes},
        {"total-time-ns", o.total_ns},  {"latency-histogram", histogram_json(o.latency)},
    };
  }
  return ops;
}

// An export's NBD-level counters: requests and error replies per NBD command.
json export_json(const m::ExportStats& e) {
  json requests = json::object();
  json errors = json::object();
  for (size_t c = 0; c < server::ExportCountersSnapshot::kCommands; ++c) {
    const char* name = m::nbd_command_label(static_cast<uint16_t>(c));
    if (name == nullptr) continue;
    requests[name] = e.nbd.requests[c];
    errors[name] = e.nbd.errors[c];
  }
  return json{{"name", e.name},
              {"connections", e.connections},
              {"connections-total", e.nbd.connections},
              {"read-bytes", e.nbd.bytes_read},
              {"read-bytes-zero-copy", e.nbd.bytes_read_zero_copy},
              {"write-bytes", e.nbd.bytes_written},
              {"write-bytes-zero-copy", e.nbd.bytes_written_zero_copy},
              {"requests", std::move(requests)},
              {"errors", std::move(errors)}};
}

json node_json(const m::NodeStats& n, const m::StatsSnapshot& s) {
  json bitmaps = json::array();
  for (const m::BitmapStats& b : n.bitmaps) {
    bitmaps.push_back(json{{"name", b.name},
                           {"dirty-bytes", b.dirty_bytes},
                           {"granularity", b.granularity},
                           {"recording", b.recording}});
  }
  json fleeces = json::array();
  for (const m::FleeceStats& f : s.fleeces) {
    if (f.node_name != n.node_name) continue;
    json x{{"id", f.id},
           {"overlay-bytes", f.overlay_bytes},
           {"copied-bytes", f.copied_bytes},
           {"read-bytes", f.view_io.op(IoOp::kRead).bytes},
           {"broken", f.broken}};
    x["export"] = f.export_name.empty() ? json(nullptr) : json(f.export_name);
    fleeces.push_back(std::move(x));
  }
  json exports = json::array();
  for (const m::ExportStats& e : s.exports) {
    if (e.node_name != n.node_name) continue;
    exports.push_back(export_json(e));
  }
  return json{{"node-name", n.node_name},
              {"driver", n.driver},
              {"stats", qemu_stats(n.io)},
              {"in-flight", n.in_flight},
              {"operations", operations_json(n.io)},
              {"dirty-bitmaps", std::move(bitmaps)},
              {"fleeces", std::move(fleeces)},
              {"exports", std::move(exports)}};
}

// query-blockstats {query-nodes?, node-name?}. QEMU's query-nodes is accepted; fleece
// has no devices, so nodes are always listed. node-name limits the answer to one node.
asio::awaitable<Result<json>> query_blockstats(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  (void)r.optional_bool("query-nodes", false);
  std::optional<std::string> node = r.optional_string("node-name");
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  if (node && !ctx.graph.find(*node)) {
    co_return device_not_found("Cannot find device='' nor node-name='" + *node + "'");
  }
  m::StatsSources from{ctx.graph, ctx.exports, ctx.fleeces, ctx.export_clients};
  const m::StatsSnapshot snap = m::collect_stats(from, node);
  json list = json::array();
  for (const m::NodeStats& n : snap.nodes) list.push_back(node_json(n, snap));
  co_return list;
}

}  // namespace

void register_stats_commands(CommandTable& table) {
  table.add("query-blockstats", query_blockstats);
}

}  // namespace server::control
