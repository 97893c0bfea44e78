#include "server/metrics/prometheus_text.h"

#include <cstdio>
#include <functional>
#include <utility>
#include <vector>

namespace server::metrics {

using blockcore::IoOp;
using blockcore::IoOpSnapshot;
using blockcore::LatencyHistogram;

namespace {

using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

std::string format_seconds(uint64_t ns) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(ns) / 1e9);
  return buf;
}

// Writes one metric family: its header, then whatever `samples` appends.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }

  void sample(std::string_view name, const Labels& labels, std::string_view value) {
    out_.append(name);
    if (!labels.empty()) {
      out_.push_back('{');
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_.push_back(',');
        first = false;
        out_.append(k).append("=\"").append(escape_label_value(v)).append("\"");
      }
      out_.push_back('}');
    }
    out_.append(" ").append(value).append("\n");
  }
  void sample(std::string_view name, const Labels& labels, uint64_t value) {
    sample(name, labels, std::to_string(value));
  }

 private:
  std::string& out_;
};

// A counter or gauge family over every node and op.
void per_node_op(Writer& w, const StatsSnapshot& s, std::string_view name, std::string_view type,
                 std::string_view help, const std::function<uint64_t(const IoOpSnapshot&)>& value) {
  w.family(name, type, help);
  for (const NodeStats& n : s.nodes) {
    for (IoOp op : blockcore::kAllIoOps) {
      w.sample(name, {{"node", n.node_name}, {"op", blockcore::io_op_name(op)}}, value(n.io.op(op)));
    }
  }
}

void latency_histograms(Writer& w, const StatsSnapshot& s) {
  constexpr std::string_view kName = "fleece_node_latency_seconds";
  w.family(kName, "histogram",
           "Time to execute requests in a node (ok and failed), log2 buckets from 1 us.");
  const std::string bucket = std::string(kName) + "_bucket";
  const std::string sum = std::string(kName) + "_sum";
  const std::string count = std::string(kName) + "_count";
  for (const NodeStats& n : s.nodes) {
    for (IoOp op : blockcore::kAllIoOps) {
      const IoOpSnapshot& o = n.io.op(op);
      const char* op_name = blockcore::io_op_name(op);
      for (size_t i = 0; i < LatencyHistogram::kFiniteBuckets; ++i) {
        const std::string le = format_seconds(LatencyHistogram::upper_bound_ns(i));
        w.sample(bucket, {{"node", n.node_name}, {"op", op_name}, {"le", le}},
                 o.latency.cumulative(i));
      }
      const uint64_t total = o.latency.total();
      w.sample(bucket, {{"node", n.node_name}, {"op", op_name}, {"le", "+Inf"}}, total);
      w.sample(sum, {{"node", n.node_name}, {"op", op_name}}, format_seconds(o.total_ns));
      w.sample(count, {{"node", n.node_name}, {"op", op_name}}, total);
    }
  }
}

void node_families(Writer& w, const StatsSnapshot& s) {
  w.family("fleece_node_read_bytes_total", "counter", "Bytes read from a node.");
  for (const NodeStats& n : s.nodes) {
    w.sample("fleece_node_read_bytes_total", {{"node", n.node_name}}, n.io.op(IoOp::kRead).bytes);
  }
  w.family("fleece_node_write_bytes_total", "counter", "Bytes written to a node (write requests).");
  for (const NodeStats& n : s.nodes) {
    w.sample("fleece_node_write_bytes_total", {{"node", n.node_name}}, n.io.op(IoOp::kWrite).bytes);
  }
  per_node_op(w, s, "fleece_node_requests_total", "counter",
              "Requests a node executed (ok and failed).",
              [](const IoOpSnapshot& o) { return o.requests(); });
  per_node_op(w, s, "fleece_node_bytes_total", "counter",
              "Bytes covered by successful requests (block-status: bytes described).",
              [](const IoOpSnapshot& o) { return o.bytes; });
  per_node_op(w, s, "fleece_node_errors_total", "counter", "Requests a node failed.",
              [](const IoOpSnapshot& o) { return o.failed; });
  per_node_op(w, s, "fleece_node_invalid_requests_total", "counter",
              "Requests refused before execution (out of range, misaligned, read-only).",
              [](const IoOpSnapshot& o) { return o.invalid; });
  latency_histograms(w, s);
  w.family("fleece_node_in_flight_requests", "gauge", "Requests executing in a node now.");
  for (const NodeStats& n : s.nodes) {
    w.sample("fleece_node_in_flight_requests", {{"node", n.node_name}}, n.in_flight);
  }
  w.family("fleece_node_size_bytes", "gauge", "Size of a node.");
  for (const NodeStats& n : s.nodes) {
    w.sample("fleece_node_size_bytes", {{"node", n.node_name}}, n.size);
  }
  w.family("fleece_bitmap_dirty_bytes", "gauge", "Bytes a dirty bitmap marks as changed.");
  for (const NodeStats& n : s.nodes) {
    for (const BitmapStats& b : n.bitmaps) {
      w.sample("fleece_bitmap_dirty_bytes", {{"node", n.node_name}, {"bitmap", b.name}},
               b.dirty_bytes);
    }
  }
}

void export_and_fleece_families(Writer& w, const StatsSnapshot& s) {
  w.family("fleece_export_connections", "gauge", "NBD clients connected to an export.");
  for (const ExportStats& e : s.exports) {
    w.sample("fleece_export_connections", {{"export", e.name}, {"node", e.node_name}},
             e.connections);
  }
  w.family("fleece_export_connections_total", "counter",
           "NBD clients that opened an export (since it was defined).");
  for (const ExportStats& e : s.exports) {
    w.sample("fleece_export_connections_total", {{"export", e.name}, {"node", e.node_name}},
             e.nbd.connections);
  }
  w.family("fleece_export_requests_total", "counter", "NBD requests executed for an export.");
  for (const ExportStats& e : s.exports) {
    for (size_t c = 0; c < ExportCountersSnapshot::kCommands; ++c) {
      const char* op = nbd_command_label(static_cast<uint16_t>(c));
      if (op != nullptr) {
        w.sample("fleece_export_requests_total",
                 {{"export", e.name}, {"node", e.node_name}, {"op", op}}, e.nbd.requests[c]);
      }
    }
  }
  w.family("fleece_export_errors_total", "counter",
           "NBD error replies of an export (including requests refused by validation).");
  for (const ExportStats& e : s.exports) {
    for (size_t c = 0; c < ExportCountersSnapshot::kCommands; ++c) {
      const char* op = nbd_command_label(static_cast<uint16_t>(c));
      if (op != nullptr) {
        w.sample("fleece_export_errors_total",
                 {{"export", e.name}, {"node", e.node_name}, {"op", op}}, e.nbd.errors[c]);
      }
    }
  }
  w.family("fleece_export_read_bytes_total", "counter", "Bytes NBD clients read from an export.");
  for (const ExportStats& e : s.exports) {
    w.sample("fleece_export_read_bytes_total", {{"export", e.name}, {"node", e.node_name}},
             e.nbd.bytes_read);
  }
  w.family("fleece_export_read_zero_copy_bytes_total", "counter",
           "Of the bytes read from an export, those spliced from the page cache to the socket.");
  for (const ExportStats& e : s.exports) {
    w.sample("fleece_export_read_zero_copy_bytes_total", {{"export", e.name}, {"node", e.node_name}},
             e.nbd.bytes_read_zero_copy);
  }
  w.family("fleece_export_write_bytes_total", "counter",
           "Bytes NBD clients wrote to an export.");
  for (const ExportStats& e : s.exports) {
    w.sample("fleece_export_write_bytes_total", {{"export", e.name}, {"node", e.node_name}},
             e.nbd.bytes_written);
  }
  w.family("fleece_export_write_zero_copy_bytes_total", "counter",
           "Of the bytes written to an export, those spliced from the socket through a pipe.");
  for (const ExportStats& e : s.exports) {
    w.sample("fleece_export_write_zero_copy_bytes_total",
             {{"export", e.name}, {"node", e.node_name}}, e.nbd.bytes_written_zero_copy);
  }
  w.family("fleece_fleece_overlay_bytes", "gauge", "Space a fleece's overlay file takes.");
  for (const FleeceStats& f : s.fleeces) {
    w.sample("fleece_fleece_overlay_bytes", {{"id", f.id}, {"node", f.node_name}},
             f.overlay_bytes);
  }
  w.family("fleece_fleece_copied_bytes", "gauge",
           "Bytes copied to a fleece's overlay before guest writes.");
  for (const FleeceStats& f : s.fleeces) {
    w.sample("fleece_fleece_copied_bytes", {{"id", f.id}, {"node", f.node_name}}, f.copied_bytes);
  }
  w.family("fleece_fleece_read_bytes_total", "counter", "Bytes read from a fleece's view.");
  for (const FleeceStats& f : s.fleeces) {
    w.sample("fleece_fleece_read_bytes_total", {{"id", f.id}, {"node", f.node_name}},
             f.view_io.op(IoOp::kRead).bytes);
  }
  w.family("fleece_fleece_broken", "gauge", "1 when a fleece's snapshot broke, else 0.");
  for (const FleeceStats& f : s.fleeces) {
    w.sample("fleece_fleece_broken", {{"id", f.id}, {"node", f.node_name}},
             f.broken ? uint64_t{1} : uint64_t{0});
  }
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string render_prometheus(const StatsSnapshot& s) {
  std::string out;
  Writer w(out);
  node_families(w, s);
  export_and_fleece_families(w, s);
  return out;
}

}  // namespace server::metrics
