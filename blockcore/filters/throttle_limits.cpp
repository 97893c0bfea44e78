#include "blockcore/filters/throttle_limits.h"

namespace blockcore {
namespace {

constexpr ThrottleBucket kAllBuckets[kThrottleBuckets] = {
    ThrottleBucket::kBpsTotal,  ThrottleBucket::kBpsRead,  ThrottleBucket::kBpsWrite,
    ThrottleBucket::kIopsTotal, ThrottleBucket::kIopsRead, ThrottleBucket::kIopsWrite};

std::array<ThrottleKey, 3 * kThrottleBuckets + 1> make_keys() {
  std::array<ThrottleKey, 3 * kThrottleBuckets + 1> keys;
  size_t i = 0;
  for (ThrottleBucket b : kAllBuckets) {
    const std::string base = throttle_bucket_name(b);
    keys[i++] = ThrottleKey{base, b, ThrottleKeyPart::kAvg};
    keys[i++] = ThrottleKey{base + "-max", b, ThrottleKeyPart::kMax};
    keys[i++] = ThrottleKey{base + "-max-length", b, ThrottleKeyPart::kMaxLength};
  }
  keys[i] = ThrottleKey{"iops-size", ThrottleBucket::kIopsTotal, ThrottleKeyPart::kIopsSize};
  return keys;
}

}  // namespace

bool ThrottleLimits::any() const {
  for (const BucketLimit& b : buckets) {
    if (b.avg != 0) return true;
  }
  return false;
}

const char* throttle_bucket_name(ThrottleBucket b) {
  switch (b) {
    case ThrottleBucket::kBpsTotal: return "bps-total";
    case ThrottleBucket::kBpsRead: return "bps-read";
    case ThrottleBucket::kBpsWrite: return "bps-write";
    case ThrottleBucket::kIopsTotal: return "iops-total";
    case ThrottleBucket::kIopsRead: return "iops-read";
    case ThrottleBucket::kIopsWrite: return "iops-write";
  }
  return "?";
}

bool throttle_bucket_from_name(const std::string& name, ThrottleBucket* out) {
  for (ThrottleBucket b : kAllBuckets) {
    if (name == throttle_bucket_name(b)) {
      *out = b;
      return true;
    }
  }
  return false;
}

bool throttle_bucket_counts_bytes(ThrottleBucket b) {
  return b == ThrottleBucket::kBpsTotal || b == ThrottleBucket::kBpsRead ||
         b == ThrottleBucket::kBpsWrite;
}

bool throttle_bucket_applies(ThrottleBucket b, ThrottleDirection d) {
  switch (b) {
    case ThrottleBucket::kBpsTotal:
    case ThrottleBucket::kIopsTotal: return true;
    case ThrottleBucket::kBpsRead:
    case ThrottleBucket::kIopsRead: return d == ThrottleDirection::kRead;
    case ThrottleBucket::kBpsWrite:
    case ThrottleBucket::kIopsWrite: return d == ThrottleDirection::kWrite;
  }
  return false;
}

uint64_t& ThrottleKey::field(ThrottleLimits& limits) const {
  switch (part) {
    case ThrottleKeyPart::kAvg: return limits[bucket].avg;
    case ThrottleKeyPart::kMax: return limits[bucket].max;
    case ThrottleKeyPart::kMaxLength: return limits[bucket].max_length;
    case ThrottleKeyPart::kIopsSize: break;
  }
  return limits.iops_size;
}

uint64_t ThrottleKey::field(const ThrottleLimits& limits) const {
  return field(const_cast<ThrottleLimits&>(limits));
}

bool ThrottleKey::is_bytes() const {
  if (part == ThrottleKeyPart::kIopsSize) return true;
  return part != ThrottleKeyPart::kMaxLength && throttle_bucket_counts_bytes(bucket);
}

const std::array<ThrottleKey, 3 * kThrottleBuckets + 1>& throttle_keys() {
  static const std::array<ThrottleKey, 3 * kThrottleBuckets + 1> kKeys = make_keys();
  return kKeys;
}

const ThrottleKey* find_throttle_key(const std::string& name) {
  for (const ThrottleKey& k : throttle_keys()) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

Status check_throttle_limits(const ThrottleLimits& limits) {
  const std::string too_big = " must be at most " + std::to_string(kThrottleValueMax);
  if (limits.iops_size > kThrottleValueMax) return Status::invalid("iops-size" + too_big);
  for (ThrottleBucket b : kAllBuckets) {
    const BucketLimit& l = limits[b];
    const std::string name = throttle_bucket_name(b);
    if (l.avg > kThrottleValueMax) return Status::invalid(name + too_big);
    if (l.max > kThrottleValueMax) return Status::invalid(name + "-max" + too_big);
    if (l.max != 0 && l.avg == 0) {
      return Status::invalid(name + "-max requires " + name + " (the average it bursts above)");
    }
    if (l.max != 0 && l.max < l.avg) {
      return Status::invalid(name + "-max (" + std::to_string(l.max) + ") must not be lower than " +
                             name + " (" + std::to_string(l.avg) + ")");
    }
    if (l.max_length == 0) return Status::invalid(name + "-max-length must be at least 1");
    if (l.max_length > 1 && l.max == 0) {
      return Status::invalid(name + "-max-length above 1 requires " + name + "-max");
    }
    if (l.max_length > kThrottleValueMax || (l.max != 0 && l.max_length > kThrottleValueMax / l.max)) {
      return Status::invalid(name + "-max * " + name + "-max-length" + too_big);
    }
  }
  return Status::ok();
}

}  // namespace blockcore
