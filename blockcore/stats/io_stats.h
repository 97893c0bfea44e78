// IoStats: per-node I/O accounting — for each kind of request, how many completed, how
// many failed in the driver, how many were refused by validation (out of range,
// misaligned, read-only), the bytes moved by successful requests, the total time spent
// and a latency histogram. BlockNode's public methods record every request they
// execute (blockcore/block_node.cpp); the time covers everything the caller waits for
// (write gate, bitmap marking, copy-before-write, the driver).
// Threading: lock-free; record*() and snapshot() may run concurrently from any thread
// (relaxed atomics: counters are exact once requests have completed, a snapshot taken
// meanwhile may see a request in some counters and not yet in others).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "blockcore/stats/latency_histogram.h"

namespace blockcore {

enum class IoOp : uint8_t { kRead, kWrite, kWriteZeroes, kDiscard, kFlush, kBlockStatus, kCache };
inline constexpr size_t kIoOpCount = 7;
inline constexpr std::array<IoOp, kIoOpCount> kAllIoOps = {
    IoOp::kRead,  IoOp::kWrite,       IoOp::kWriteZeroes, IoOp::kDiscard,
    IoOp::kFlush, IoOp::kBlockStatus, IoOp::kCache};
// "read", "write", "write-zeroes", "discard", "flush", "block-status", "cache".
const char* io_op_name(IoOp op);

struct IoOpSnapshot {
  uint64_t ok = 0;       // completed successfully
  uint64_t failed = 0;   // the node returned an error
  uint64_t invalid = 0;  // refused before execution (range, alignment, read-only)
  uint64_t bytes = 0;    // moved by successful requests
  uint64_t total_ns = 0; // time of the ok and failed requests
  LatencySnapshot latency;
  uint64_t requests() const { return ok + failed; }
};

struct IoStatsSnapshot {
  std::array<IoOpSnapshot, kIoOpCount> ops{};
  const IoOpSnapshot& op(IoOp o) const { return ops[static_cast<size_t>(o)]; }
};

class IoStats {
 public:
  using Clock = std::chrono::steady_clock;

  // One executed request of `op` that started at `start`.
  void record(IoOp op, Clock::time_point start, uint64_t bytes, bool ok) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
    record_ns(op, static_cast<uint64_t>(ns.count() < 0 ? 0 : ns.count()), bytes, ok);
  }
  void record_ns(IoOp op, uint64_t ns, uint64_t bytes, bool ok);
  void record_invalid(IoOp op) {
    counters(op).invalid.fetch_add(1, std::memory_order_relaxed);
  }

  IoStatsSnapshot snapshot() const;

 private:
  struct OpCounters {
    std::atomic<uint64_t> ok{0};
    std::atomic<uint64_t> failed{0};
    std::atomic<uint64_t> invalid{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> total_ns{0};
    LatencyHistogram latency;
  };
  OpCounters& counters(IoOp op) { return ops_[static_cast<size_t>(op)]; }

  std::array<OpCounters, kIoOpCount> ops_;
};

}  // namespace blockcore
