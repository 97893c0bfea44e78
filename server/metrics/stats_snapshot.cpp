#include "server/metrics/stats_snapshot.h"

namespace server::metrics {

namespace {

NodeStats node_stats(const blockcore::BlockNode& node) {
  NodeStats n;
  n.node_name = node.name();
  n.driver = node.driver();
  n.size = node.size();
  n.in_flight = node.in_flight();
  n.io = node.io_stats().snapshot();
  for (const blockcore::DirtyBitmapPtr& b : node.bitmaps().list()) {
    n.bitmaps.push_back(BitmapStats{b->name(), b->dirty_bytes(), b->granularity(), b->enabled()});
  }
  return n;
}

}  // namespace

const char* nbd_command_label(uint16_t command) {
  switch (command) {
    case 0: return "read";
    case 1: return "write";
    case 3: return "flush";
    case 4: return "trim";
    case 5: return "cache";
    case 6: return "write-zeroes";
    case 7: return "block-status";
  }
  return nullptr;
}

StatsSnapshot collect_stats(const StatsSources& from, const std::optional<std::string>& node_name) {
  StatsSnapshot s;
  for (const blockcore::BlockNodePtr& node : from.graph.nodes()) {
    if (node_name && node->name() != *node_name) continue;
    s.nodes.push_back(node_stats(*node));
  }
  for (const ExportPtr& e : from.exports.list()) {
    if (node_name && e->node_name() != *node_name) continue;
    ExportStats x;
    x.name = e->name;
    x.node_name = e->node_name();
    x.writable = e->writable;
    x.connections = from.export_clients ? from.export_clients(*e) : 0;
    if (e->counters) x.nbd = e->counters->snapshot();
    s.exports.push_back(std::move(x));
  }
  if (from.fleeces != nullptr) {
    for (const backup::FleecePtr& f : from.fleeces->list()) {
      if (node_name && f->live->name() != *node_name) continue;
      FleeceStats x;
      x.id = f->id;
      x.node_name = f->live->name();
      for (const ExportPtr& e : from.exports.using_node(f->view.get())) x.export_name = e->name;
      x.broken = f->snapshot->broken();
      x.overlay_bytes = f->overlay_bytes();
      x.copied_bytes = f->snapshot->copied_bytes();
      if (f->view) x.view_io = f->view->io_stats().snapshot();
      s.fleeces.push_back(std::move(x));
    }
  }
  return s;
}

}  // namespace server::metrics
