// LatencyHistogram: request latencies counted in log2 buckets — bucket i holds the
// latencies in (1 µs·2^(i-1), 1 µs·2^i] (bucket 0: up to 1 µs), the last finite bucket
// ends at 2^24 µs ≈ 16.8 s, and one more bucket takes everything slower. Recording is
// one relaxed atomic increment, so every request can afford it.
// Threading: record() and snapshot() may run concurrently from any thread; a snapshot
// taken while requests complete may be off by those requests (counters are independent).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace blockcore {

struct LatencySnapshot;

class LatencyHistogram {
 public:
  static constexpr size_t kFiniteBuckets = 25;               // 1 µs .. 2^24 µs
  static constexpr size_t kBuckets = kFiniteBuckets + 1;     // + the overflow bucket
  static constexpr uint64_t kFirstBoundNs = 1000;            // 1 µs

  // Inclusive upper bound of finite bucket i in nanoseconds (1000 << i).
  // REQUIRES: i < kFiniteBuckets.
  static constexpr uint64_t upper_bound_ns(size_t i) { return kFirstBoundNs << i; }
  // The bucket a latency of `ns` nanoseconds falls into.
  static size_t bucket_of(uint64_t ns);

  void record(uint64_t ns) {
    counts_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
  }
  LatencySnapshot snapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
};

// A copy of a histogram's counts (per bucket, not cumulative).
struct LatencySnapshot {
  std::array<uint64_t, LatencyHistogram::kBuckets> counts{};
  uint64_t total() const;
  // Cumulative count up to and including bucket i (Prometheus' `le` buckets).
  uint64_t cumulative(size_t i) const;
};

}  // namespace blockcore
