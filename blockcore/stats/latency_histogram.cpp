#include "blockcore/stats/latency_histogram.h"

#include <bit>

namespace blockcore {

size_t LatencyHistogram::bucket_of(uint64_t ns) {
  if (ns <= kFirstBoundNs) return 0;
  // Whole microseconds, rounded up: bucket i holds (2^(i-1), 2^i] µs.
  const uint64_t us = (ns + kFirstBoundNs - 1) / kFirstBoundNs;
  const auto i = static_cast<size_t>(std::bit_width(us - 1));
  return i < kFiniteBuckets ? i : kFiniteBuckets;
}

LatencySnapshot LatencyHistogram::snapshot() const {
  LatencySnapshot s;
  for (size_t i = 0; i < kBuckets; ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  return s;
}

uint64_t LatencySnapshot::total() const { return cumulative(counts.size() - 1); }

uint64_t LatencySnapshot::cumulative(size_t i) const {
  uint64_t sum = 0;
  for (size_t j = 0; j <= i && j < counts.size(); ++j) sum += counts[j];
  return sum;
}

}  // namespace blockcore
