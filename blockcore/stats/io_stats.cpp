#include "blockcore/stats/io_stats.h"

namespace blockcore {

const char* io_op_name(IoOp op) {
  switch (op) {
    case IoOp::kRead: return "read";
    case IoOp::kWrite: return "write";
    case IoOp::kWriteZeroes: return "write-zeroes";
    case IoOp::kDiscard: return "discard";
    case IoOp::kFlush: return "flush";
    case IoOp::kBlockStatus: return "block-status";
    case IoOp::kCache: return "cache";
  }
  return "?";
}

void IoStats::record_ns(IoOp op, uint64_t ns, uint64_t bytes, bool ok) {
  OpCounters& c = counters(op);
  if (ok) {
    c.ok.fetch_add(1, std::memory_order_relaxed);
    if (bytes) c.bytes.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    c.failed.fetch_add(1, std::memory_order_relaxed);
  }
  c.total_ns.fetch_add(ns, std::memory_order_relaxed);
  c.latency.record(ns);
}

IoStatsSnapshot IoStats::snapshot() const {
  IoStatsSnapshot s;
  for (size_t i = 0; i < kIoOpCount; ++i) {
    const OpCounters& c = ops_[i];
    IoOpSnapshot& o = s.ops[i];
    o.ok = c.ok.load(std::memory_order_relaxed);
    o.failed = c.failed.load(std::memory_order_relaxed);
    o.invalid = c.invalid.load(std::memory_order_relaxed);
    o.bytes = c.bytes.load(std::memory_order_relaxed);
    o.total_ns = c.total_ns.load(std::memory_order_relaxed);
    o.latency = c.latency.snapshot();
  }
  return s;
}

}  // namespace blockcore
