// ThrottleLimits checks and ThrottleLimiter's leaky-bucket arithmetic, on a fake clock:
// the initial burst of avg/10, the long-run rate, burst limits (max, max-length),
// iops-size, read/write/total buckets, and limit changes.
#include "blockcore/filters/throttle_limiter.h"

#include <gtest/gtest.h>

#include <chrono>

namespace blockcore {
namespace {

using Nanos = std::chrono::nanoseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMiB = 1 << 20;
const ThrottleDirection kRead = ThrottleDirection::kRead;
const ThrottleDirection kWrite = ThrottleDirection::kWrite;

ThrottleLimits limits_with(ThrottleBucket b, uint64_t avg, uint64_t max = 0, uint64_t length = 1) {
  ThrottleLimits l;
  l[b] = BucketLimit{avg, max, length};
  return l;
}

// Runs requests of `bytes` in direction d back to back, each as soon as the limiter
// allows, until `until`; returns how many started. `now` advances by the waits.
uint64_t run_greedy(ThrottleLimiter& lim, ThrottleDirection d, uint64_t bytes, Nanos& now,
                    Nanos until) {
  uint64_t started = 0;
  while (true) {
    Nanos w = lim.wait_time(d, now);
    if (now + w > until) return started;
    now += w;
    lim.account(d, bytes, now);
    ++started;
  }
}

TEST(ThrottleLimitsTest, KeysAndNames) {
  EXPECT_EQ(throttle_keys().size(), 19u);
  const ThrottleKey* k = find_throttle_key("bps-read-max-length");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->part, ThrottleKeyPart::kMaxLength);
  EXPECT_FALSE(k->is_bytes());
  EXPECT_TRUE(find_throttle_key("bps-write-max")->is_bytes());
  EXPECT_FALSE(find_throttle_key("iops-total")->is_bytes());
  EXPECT_TRUE(find_throttle_key("iops-size")->is_bytes());
  EXPECT_EQ(find_throttle_key("bps"), nullptr);
  ThrottleLimits l;
  find_throttle_key("iops-write-max")->field(l) = 7;
  EXPECT_EQ(l[ThrottleBucket::kIopsWrite].max, 7u);
  EXPECT_FALSE(ThrottleLimits{}.any());
  EXPECT_FALSE(l.any());  // a max alone limits nothing (and is refused below)
}

TEST(ThrottleLimitsTest, ConsistencyRules) {
  EXPECT_TRUE(check_throttle_limits(ThrottleLimits{}).is_ok());
  EXPECT_TRUE(check_throttle_limits(limits_with(ThrottleBucket::kBpsRead, 100, 200, 5)).is_ok());
  Status s = check_throttle_limits(limits_with(ThrottleBucket::kBpsRead, 0, 200));
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_EQ(s.message().rfind("bps-read-max requires bps-read", 0), 0u) << s.message();
  s = check_throttle_limits(limits_with(ThrottleBucket::kIopsTotal, 100, 50));
  EXPECT_EQ(s.message().rfind("iops-total-max (50) must not be lower", 0), 0u) << s.message();
  s = check_throttle_limits(limits_with(ThrottleBucket::kBpsWrite, 100, 0, 3));
  EXPECT_EQ(s.message().rfind("bps-write-max-length above 1 requires", 0), 0u) << s.message();
  s = check_throttle_limits(limits_with(ThrottleBucket::kBpsWrite, 100, 0, 0));
  EXPECT_EQ(s.message().rfind("bps-write-max-length must be at least 1", 0), 0u);
  s = check_throttle_limits(limits_with(ThrottleBucket::kBpsTotal, kThrottleValueMax + 1));
  EXPECT_FALSE(s.is_ok());
  s = check_throttle_limits(
      limits_with(ThrottleBucket::kBpsTotal, 10, kThrottleValueMax / 2, 3));
  EXPECT_FALSE(s.is_ok());
  // Total and per-direction limits may be combined (QEMU refuses that; fleece applies both).
  ThrottleLimits both = limits_with(ThrottleBucket::kBpsTotal, 100);
  both[ThrottleBucket::kBpsRead] = BucketLimit{50, 0, 1};
  EXPECT_TRUE(check_throttle_limits(both).is_ok());
}

TEST(ThrottleLimiterTest, UnlimitedNeverWaits) {
  ThrottleLimiter lim;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(lim.wait_time(kRead, Nanos(i)).count(), 0);
    lim.account(kRead, 1 << 30, Nanos(i));
  }
}

TEST(ThrottleLimiterTest, BurstOfATenthThenAverageRate) {
  // 10 MiB/s: 1 MiB may pass at once (avg/10), then requests wait for the bucket.
  ThrottleLimiter lim(limits_with(ThrottleBucket::kBpsRead, 10 * kMiB));
  Nanos now{seconds(100)};
  EXPECT_EQ(lim.wait_time(kRead, now).count(), 0);
  lim.account(kRead, kMiB, now);  // level 1 MiB == bucket size: still allowed
  EXPECT_EQ(lim.wait_time(kRead, now).count(), 0);
  lim.account(kRead, kMiB, now);  // 2 MiB: 1 MiB over, drains in 100 ms
  const Nanos w = lim.wait_time(kRead, now);
  EXPECT_NEAR(std::chrono::duration<double>(w).count(), 0.1, 1e-6);
  EXPECT_GT(lim.wait_time(kRead, now + w - milliseconds(1)).count(), 0);
  EXPECT_EQ(lim.wait_time(kRead, now + w).count(), 0);
  // Writes are not limited by a read bucket.
  EXPECT_EQ(lim.wait_time(kWrite, now).count(), 0);
}

TEST(ThrottleLimiterTest, LongRunRateIsTheAverage) {
  ThrottleLimiter lim(limits_with(ThrottleBucket::kBpsRead, 20 * kMiB));
  const Nanos start{seconds(5)};
  Nanos now = start;
  // 256 KiB requests for 10 s: 200 MiB plus the initial 2 MiB bucket (and one request).
  const uint64_t n = run_greedy(lim, kRead, 256 << 10, now, start + seconds(10));
  const double mib = static_cast<double>(n) / 4;
  EXPECT_GE(mib, 200.0);
  EXPECT_LE(mib, 202.5);
}

TEST(ThrottleLimiterTest, LargeRequestGetsThroughAndIsPaidFor) {
  ThrottleLimiter lim(limits_with(ThrottleBucket::kBpsWrite, kMiB));
  const Nanos now{seconds(1)};
  EXPECT_EQ(lim.wait_time(kWrite, now).count(), 0);
  lim.account(kWrite, 32 * kMiB, now);  // far beyond the bucket, still admitted
  const double wait = std::chrono::duration<double>(lim.wait_time(kWrite, now)).count();
  EXPECT_NEAR(wait, 31.9, 1e-6);  // until the level is back at 0.1 MiB
}

TEST(ThrottleLimiterTest, IopsCountsOperationsAndIopsSize) {
  ThrottleLimits l = limits_with(ThrottleBucket::kIopsTotal, 100);
  ThrottleLimiter lim(l);
  Nanos now{seconds(1)};
  // 100 IOPS: 10 at once (bucket avg/10 = 10, the 11th still fits at level 10).
  uint64_t n = run_greedy(lim, kRead, 4096, now, now);
  EXPECT_EQ(n, 11u);
  // Over 5 s: 500 more.
  const Nanos start = now;
  n = run_greedy(lim, kWrite, 1 << 20, now, start + seconds(5));
  EXPECT_NEAR(static_cast<double>(n), 500, 2);

  // iops-size 4 KiB: a 64 KiB request counts as 16 operations.
  l.iops_size = 4096;
  ThrottleLimiter sized(l);
  const Nanos t{seconds(1)};
  sized.account(kRead, 64 << 10, t);
  EXPECT_DOUBLE_EQ(sized.level(ThrottleBucket::kIopsTotal, t), 16.0);
  sized.account(kRead, 512, t);  // smaller than iops-size: one operation
  EXPECT_DOUBLE_EQ(sized.level(ThrottleBucket::kIopsTotal, t), 17.0);
}

TEST(ThrottleLimiterTest, BurstAtMaxForMaxLengthSeconds) {
  // 1 MiB/s average, bursts at 10 MiB/s for up to 2 s: the first ~2 s run at about
  // 10 MiB/s (bucket 20 MiB, burst bucket 1 MiB at 10 MiB/s), then 1 MiB/s.
  ThrottleLimiter lim(limits_with(ThrottleBucket::kBpsRead, kMiB, 10 * kMiB, 2));
  const Nanos start{seconds(1)};
  Nanos now = start;
  const uint64_t chunk = 64 << 10;
  uint64_t in_first_second = run_greedy(lim, kRead, chunk, now, start + seconds(1));
  const double first_mib = static_cast<double>(in_first_second * chunk) / kMiB;
  EXPECT_GT(first_mib, 9.5);
  EXPECT_LT(first_mib, 11.5);
  // After the burst is used up (about 2.2 s at 10 MiB/s minus the 1 MiB/s leak), the rate
  // falls back to the average.
  run_greedy(lim, kRead, chunk, now, start + seconds(5));
  const Nanos mid = now;
  const uint64_t later = run_greedy(lim, kRead, chunk, now, mid + seconds(10));
  const double later_mib = static_cast<double>(later * chunk) / kMiB;
  EXPECT_NEAR(later_mib, 10.0, 0.2);
}

TEST(ThrottleLimiterTest, TotalBucketLimitsBothDirections) {
  ThrottleLimiter lim(limits_with(ThrottleBucket::kBpsTotal, 10 * kMiB));
  const Nanos now{seconds(1)};
  lim.account(kRead, 2 * kMiB, now);
  EXPECT_GT(lim.wait_time(kWrite, now).count(), 0);
  EXPECT_GT(lim.wait_time(kRead, now).count(), 0);
}

TEST(ThrottleLimiterTest, ChangingLimitsTakesEffectAtOnce) {
  ThrottleLimiter lim(limits_with(ThrottleBucket::kBpsRead, kMiB));
  const Nanos now{seconds(1)};
  lim.account(kRead, 16 * kMiB, now);
  EXPECT_GT(lim.wait_time(kRead, now), seconds(10));
  // Raising the limit caps the old debt at the new bucket: the next request may go.
  lim.set_limits(limits_with(ThrottleBucket::kBpsRead, 100 * kMiB), now);
  EXPECT_EQ(lim.wait_time(kRead, now).count(), 0);
  lim.account(kRead, 20 * kMiB, now);
  EXPECT_GT(lim.wait_time(kRead, now).count(), 0);
  // Removing it lets everything through and forgets the level.
  lim.set_limits(ThrottleLimits{}, now);
  EXPECT_EQ(lim.wait_time(kRead, now).count(), 0);
  lim.set_limits(limits_with(ThrottleBucket::kBpsRead, kMiB), now);
  EXPECT_EQ(lim.wait_time(kRead, now).count(), 0);
  EXPECT_DOUBLE_EQ(lim.level(ThrottleBucket::kBpsRead, now), 0.0);
}

TEST(ThrottleLimiterTest, TimeGoingBackwardsDoesNotDrain) {
  ThrottleLimiter lim(limits_with(ThrottleBucket::kIopsRead, 10));
  lim.account(kRead, 1, Nanos(seconds(10)));
  lim.account(kRead, 1, Nanos(seconds(10)));
  EXPECT_DOUBLE_EQ(lim.level(ThrottleBucket::kIopsRead, Nanos(seconds(5))), 2.0);
}

}  // namespace
}  // namespace blockcore
