// ThrottleLimits: the limits of a `throttle` filter node — bytes per second and
// operations per second, for reads, writes and both together, each with an optional
// burst — named and checked as QEMU's ThrottleLimits (qapi/block-core.json): bps-total,
// bps-read, bps-write, iops-total, iops-read, iops-write, each with `-max` (the burst
// rate) and `-max-length` (how many seconds a burst at that rate may last), and
// iops-size (a request larger than this counts as several operations). 0 = unlimited.
// The YAML config, blockdev-add, block-set-throttle and query-named-block-nodes all use
// these names through the table below.
// Threading: plain values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "blockcore/base/status.h"

namespace blockcore {

// One leaky bucket's configuration (QEMU's LeakyBucket avg/max/burst_length).
struct BucketLimit {
  uint64_t avg = 0;         // units per second; 0 = no limit
  uint64_t max = 0;         // burst rate; 0 = bursts of avg/10 only
  uint64_t max_length = 1;  // seconds a burst at `max` may last (>1 needs max)
  bool operator==(const BucketLimit&) const = default;
};

enum class ThrottleBucket : size_t { kBpsTotal, kBpsRead, kBpsWrite, kIopsTotal, kIopsRead, kIopsWrite };
inline constexpr size_t kThrottleBuckets = 6;

enum class ThrottleDirection { kRead, kWrite };

struct ThrottleLimits {
  std::array<BucketLimit, kThrottleBuckets> buckets{};
  uint64_t iops_size = 0;  // bytes of one counted operation; 0 = every request is one

  BucketLimit& operator[](ThrottleBucket b) { return buckets[static_cast<size_t>(b)]; }
  const BucketLimit& operator[](ThrottleBucket b) const { return buckets[static_cast<size_t>(b)]; }
  // True when some bucket limits anything.
  bool any() const;
  bool operator==(const ThrottleLimits&) const = default;
};

// "bps-total", "bps-read", ... (the `-max` and `-max-length` keys append to it).
const char* throttle_bucket_name(ThrottleBucket b);
// The bucket of that name, or false.
bool throttle_bucket_from_name(const std::string& name, ThrottleBucket* out);
// True for buckets that count bytes (bps-*), false for operations (iops-*).
bool throttle_bucket_counts_bytes(ThrottleBucket b);
// True when requests in direction `d` fill bucket `b`.
bool throttle_bucket_applies(ThrottleBucket b, ThrottleDirection d);

// One configurable key: "bps-read", "bps-read-max", "bps-read-max-length" or "iops-size".
enum class ThrottleKeyPart { kAvg, kMax, kMaxLength, kIopsSize };
struct ThrottleKey {
  std::string name;
  ThrottleBucket bucket = ThrottleBucket::kBpsTotal;  // unused for kIopsSize
  ThrottleKeyPart part = ThrottleKeyPart::kAvg;
  // The field the key sets in `limits`.
  uint64_t& field(ThrottleLimits& limits) const;
  uint64_t field(const ThrottleLimits& limits) const;
  // Values with a size suffix (bytes) rather than a count or seconds.
  bool is_bytes() const;
};
// All 19 keys, in documentation order.
const std::array<ThrottleKey, 3 * kThrottleBuckets + 1>& throttle_keys();
// nullptr for an unknown key.
const ThrottleKey* find_throttle_key(const std::string& name);

// The largest value of any limit (QEMU's THROTTLE_VALUE_MAX).
inline constexpr uint64_t kThrottleValueMax = 1000000000000000ull;

// QEMU's consistency rules, with the key names in the message (EINVAL): a `-max` needs
// its average and may not be below it; a `-max-length` is at least 1 and above 1 needs
// its `-max`; no value (nor max * max-length) beyond kThrottleValueMax.
Status check_throttle_limits(const ThrottleLimits& limits);

}  // namespace blockcore
