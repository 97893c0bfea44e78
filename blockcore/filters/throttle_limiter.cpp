#include "blockcore/filters/throttle_limiter.h"

#include <algorithm>
#include <cmath>

namespace blockcore {
namespace {

constexpr double kNanosPerSecond = 1e9;

// How full a bucket may get before requests wait (QEMU's bucket_size).
double bucket_size(const BucketLimit& l) {
  if (l.max == 0) return static_cast<double>(l.avg) / 10;
  return static_cast<double>(l.max) * static_cast<double>(l.max_length);
}

// Time for `extra` units to drain at `rate` units per second, rounded up.
ThrottleLimiter::Nanos drain_time(double extra, uint64_t rate) {
  const double ns = std::ceil(extra * kNanosPerSecond / static_cast<double>(rate));
  return ThrottleLimiter::Nanos(std::max<int64_t>(1, static_cast<int64_t>(ns)));
}

}  // namespace

void ThrottleLimiter::leak(Nanos now) {
  if (!started_) {
    started_ = true;
    last_ = now;
    return;
  }
  if (now <= last_) return;
  const double seconds = static_cast<double>((now - last_).count()) / kNanosPerSecond;
  last_ = now;
  for (size_t i = 0; i < kThrottleBuckets; ++i) {
    const BucketLimit& l = limits_.buckets[i];
    Level& v = levels_[i];
    v.level = std::max(0.0, v.level - static_cast<double>(l.avg) * seconds);
    v.burst = std::max(0.0, v.burst - static_cast<double>(l.max) * seconds);
  }
}

void ThrottleLimiter::set_limits(const ThrottleLimits& limits, Nanos now) {
  leak(now);
  limits_ = limits;
  for (size_t i = 0; i < kThrottleBuckets; ++i) {
    const BucketLimit& l = limits_.buckets[i];
    Level& v = levels_[i];
    if (l.avg == 0) {
      v = Level{};
      continue;
    }
    v.level = std::min(v.level, bucket_size(l));
    v.burst = l.max_length > 1 ? std::min(v.burst, static_cast<double>(l.max) / 10) : 0;
  }
}

ThrottleLimiter::Nanos ThrottleLimiter::wait_time(ThrottleDirection d, Nanos now) {
  leak(now);
  Nanos wait{0};
  for (size_t i = 0; i < kThrottleBuckets; ++i) {
    const auto b = static_cast<ThrottleBucket>(i);
    const BucketLimit& l = limits_.buckets[i];
    if (l.avg == 0 || !throttle_bucket_applies(b, d)) continue;
    const Level& v = levels_[i];
    const double extra = v.level - bucket_size(l);
    if (extra > 0) {
      wait = std::max(wait, drain_time(extra, l.avg));
      continue;
    }
    if (l.max_length > 1) {
      const double burst_extra = v.burst - static_cast<double>(l.max) / 10;
      if (burst_extra > 0) wait = std::max(wait, drain_time(burst_extra, l.max));
    }
  }
  return wait;
}

void ThrottleLimiter::account(ThrottleDirection d, uint64_t bytes, Nanos now) {
  leak(now);
  double ops = 1;
  if (limits_.iops_size != 0 && bytes > limits_.iops_size) {
    ops = static_cast<double>(bytes) / static_cast<double>(limits_.iops_size);
  }
  for (size_t i = 0; i < kThrottleBuckets; ++i) {
    const auto b = static_cast<ThrottleBucket>(i);
    const BucketLimit& l = limits_.buckets[i];
    if (l.avg == 0 || !throttle_bucket_applies(b, d)) continue;
    const double units = throttle_bucket_counts_bytes(b) ? static_cast<double>(bytes) : ops;
    levels_[i].level += units;
    if (l.max_length > 1) levels_[i].burst += units;
  }
}

double ThrottleLimiter::level(ThrottleBucket b, Nanos now) {
  leak(now);
  return levels_[static_cast<size_t>(b)].level;
}

}  // namespace blockcore
