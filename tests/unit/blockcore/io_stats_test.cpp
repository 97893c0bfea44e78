#include "blockcore/stats/io_stats.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "blockcore/stats/latency_histogram.h"

namespace blockcore {
namespace {

TEST(LatencyHistogramTest, BucketBoundsAreInclusivePowersOfTwoMicroseconds) {
  EXPECT_EQ(LatencyHistogram::bucket_of(0), 0u);
  EXPECT_EQ(LatencyHistogram::bucket_of(1000), 0u);  // 1 µs
  EXPECT_EQ(LatencyHistogram::bucket_of(1001), 1u);
  EXPECT_EQ(LatencyHistogram::bucket_of(2000), 1u);  // 2 µs
  EXPECT_EQ(LatencyHistogram::bucket_of(2001), 2u);
  EXPECT_EQ(LatencyHistogram::bucket_of(4000), 2u);
  EXPECT_EQ(LatencyHistogram::bucket_of(1'000'000), 10u);  // 1 ms <= 1024 µs
  for (size_t i = 0; i < LatencyHistogram::kFiniteBuckets; ++i) {
    const uint64_t bound = LatencyHistogram::upper_bound_ns(i);
    EXPECT_EQ(LatencyHistogram::bucket_of(bound), i) << i;
    EXPECT_EQ(LatencyHistogram::bucket_of(bound + 1), i + 1) << i;
  }
  // The last finite bound is about 16.8 s; anything slower overflows.
  EXPECT_EQ(LatencyHistogram::upper_bound_ns(LatencyHistogram::kFiniteBuckets - 1),
            16'777'216'000u);
  EXPECT_EQ(LatencyHistogram::bucket_of(60'000'000'000), LatencyHistogram::kFiniteBuckets);
  EXPECT_EQ(LatencyHistogram::bucket_of(UINT64_MAX), LatencyHistogram::kFiniteBuckets);
}

TEST(LatencyHistogramTest, SnapshotCountsAndCumulates) {
  LatencyHistogram h;
  h.record(500);        // bucket 0
  h.record(1500);       // bucket 1
  h.record(1500);       // bucket 1
  h.record(3'000'000);  // 3 ms: bucket 12 (2048, 4096] µs
  const LatencySnapshot s = h.snapshot();
  EXPECT_EQ(s.counts[0], 1u);
  EXPECT_EQ(s.counts[1], 2u);
  EXPECT_EQ(s.counts[12], 1u);
  EXPECT_EQ(s.cumulative(0), 1u);
  EXPECT_EQ(s.cumulative(1), 3u);
  EXPECT_EQ(s.cumulative(11), 3u);
  EXPECT_EQ(s.cumulative(12), 4u);
  EXPECT_EQ(s.total(), 4u);
}

TEST(IoStatsTest, CountsOkFailedInvalidBytesAndTime) {
  IoStats st;
  st.record_ns(IoOp::kRead, 2000, 4096, true);
  st.record_ns(IoOp::kRead, 3000, 4096, true);
  st.record_ns(IoOp::kRead, 5000, 4096, false);  // failed: no bytes
  st.record_invalid(IoOp::kRead);
  st.record_ns(IoOp::kFlush, 100, 0, true);
  const IoStatsSnapshot s = st.snapshot();
  const IoOpSnapshot& r = s.op(IoOp::kRead);
  EXPECT_EQ(r.ok, 2u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.invalid, 1u);
  EXPECT_EQ(r.requests(), 3u);
  EXPECT_EQ(r.bytes, 8192u);
  EXPECT_EQ(r.total_ns, 10000u);
  EXPECT_EQ(r.latency.total(), 3u);
  EXPECT_EQ(s.op(IoOp::kFlush).ok, 1u);
  EXPECT_EQ(s.op(IoOp::kWrite).requests(), 0u);
}

TEST(IoStatsTest, ConcurrentRecordsAreNotLost) {
  IoStats st;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) st.record_ns(IoOp::kWrite, 1500, 512, true);
    });
  }
  for (auto& t : threads) t.join();
  const IoOpSnapshot w = st.snapshot().op(IoOp::kWrite);
  EXPECT_EQ(w.ok, 40000u);
  EXPECT_EQ(w.bytes, 40000u * 512);
  EXPECT_EQ(w.latency.counts[1], 40000u);
}

TEST(IoStatsTest, OpNames) {
  EXPECT_STREQ(io_op_name(IoOp::kWriteZeroes), "write-zeroes");
  EXPECT_STREQ(io_op_name(IoOp::kBlockStatus), "block-status");
  EXPECT_EQ(kAllIoOps.size(), kIoOpCount);
}

}  // namespace
}  // namespace blockcore
