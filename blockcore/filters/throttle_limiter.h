// ThrottleLimiter: the pure leaky-bucket arithmetic behind the `throttle` filter (the
// model of QEMU's util/throttle.c, as nbdkit's rate filter keeps it apart from waiting):
// each limited bucket has a level that admitted requests fill (bytes, or operations)
// and that drains at the average rate. A request may start while every bucket it fills
// is at most full — `avg/10` units without a burst limit, `max * max-length` with one —
// and, with a burst longer than a second, while a second bucket draining at `max` holds
// at most `max/10`. A request larger than the room left still starts once the bucket
// is at most full, so any size gets through and the long-run rate is the average.
// The limiter never sleeps: wait_time() says how long the next request must wait, the
// caller waits (a timer) and asks again. Time is passed in, so tests drive a fake clock.
// Threading: not thread-safe; the owner (ThrottleGate) serializes calls.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "blockcore/filters/throttle_limits.h"

namespace blockcore {

class ThrottleLimiter {
 public:
  using Nanos = std::chrono::nanoseconds;  // time since any fixed epoch

  explicit ThrottleLimiter(const ThrottleLimits& limits = {}) : limits_(limits) {}

  const ThrottleLimits& limits() const { return limits_; }
  // New limits from `now` on. The levels carry over, capped at the new bucket sizes, so
  // a lower limit does not leave a debt from the old rate.
  void set_limits(const ThrottleLimits& limits, Nanos now);

  // How long a request in direction `d` must still wait at `now` (zero: it may start).
  Nanos wait_time(ThrottleDirection d, Nanos now);
  // Counts a request of `bytes` that starts at `now` into its buckets.
  void account(ThrottleDirection d, uint64_t bytes, Nanos now);

  // The level of a bucket after draining to `now` (for tests and diagnostics).
  double level(ThrottleBucket b, Nanos now);

 private:
  struct Level {
    double level = 0;  // drains at avg
    double burst = 0;  // drains at max (only with max-length > 1)
  };
  // Drains every bucket for the time since the last call.
  void leak(Nanos now);

  ThrottleLimits limits_;
  std::array<Level, kThrottleBuckets> levels_{};
  Nanos last_{0};
  bool started_ = false;
};

}  // namespace blockcore
