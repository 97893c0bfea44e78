// L1 and L2 table entries: their bit layout and a decoded view of one L2 entry (with
// its subcluster bitmap when the image uses extended L2 entries), including the
// per-subcluster state QEMU's qcow2 code calls the subcluster type.
// Threading: pure functions on plain values.
#pragma once

#include <cstdint>

#include "blockcore/qcow2/geometry.h"

namespace blockcore::qcow2 {

inline constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;  // L1 and standard L2 offsets
inline constexpr uint64_t kFlagCopied = 1ull << 63;             // refcount is exactly 1
inline constexpr uint64_t kFlagCompressed = 1ull << 62;
inline constexpr uint64_t kFlagZero = 1ull;                      // standard cluster reads as zero
inline constexpr uint64_t kL1ReservedMask = 0x7f000000000001ffull;
inline constexpr uint64_t kL2ReservedMask = 0x3f000000000001feull;
inline constexpr uint32_t kAllSubclusters = 0xffffffffu;

// What one (sub)cluster of the guest disk is, per its L2 entry.
enum class SubclusterType {
  kUnallocatedPlain,  // no host offset: from backing (or zeroes)
  kUnallocatedAlloc,  // host cluster reserved, this subcluster not written: from backing
  kZeroPlain,         // reads as zeroes, no host offset
  kZeroAlloc,         // reads as zeroes, host cluster kept (preallocated zero)
  kNormal,            // data at host offset
  kCompressed,        // compressed data
  kInvalid,           // reserved bits or contradictory bits set
};

// The subcluster reads as zeroes.
inline bool reads_as_zero(SubclusterType t) {
  return t == SubclusterType::kZeroPlain || t == SubclusterType::kZeroAlloc;
}
// The subcluster reads through to the backing chain.
inline bool reads_from_backing(SubclusterType t) {
  return t == SubclusterType::kUnallocatedPlain || t == SubclusterType::kUnallocatedAlloc;
}
// The subcluster's bytes have a place in a host cluster.
inline bool has_host_bytes(SubclusterType t) {
  return t == SubclusterType::kNormal || t == SubclusterType::kZeroAlloc ||
         t == SubclusterType::kUnallocatedAlloc;
}

struct L2Entry {
  uint64_t word = 0;    // the 64-bit descriptor (with flags)
  uint64_t bitmap = 0;  // extended L2 only: bits 0-31 allocated, 32-63 zero

  bool compressed() const { return (word & kFlagCompressed) != 0; }
  bool copied() const { return (word & kFlagCopied) != 0; }
  // Host cluster offset of a standard entry (0 = none, except in an external data file).
  uint64_t host_offset() const { return compressed() ? 0 : (word & kOffsetMask); }
  // The entry names a host cluster (offset 0 counts in external data files, where the
  // copied flag, always set there, tells it from "unallocated").
  bool has_host(const Geometry& g) const {
    return !compressed() && ((word & kOffsetMask) != 0 || (g.external_data && copied()));
  }
  uint32_t alloc_bits() const { return static_cast<uint32_t>(bitmap); }
  uint32_t zero_bits() const { return static_cast<uint32_t>(bitmap >> 32); }

  // Compressed cluster location: host byte offset and the byte length of the sectors
  // holding the data (QEMU: the count of 512-byte sectors minus one, plus the bytes
  // up to the end of the first sector).
  uint64_t compressed_offset(const Geometry& g) const {
    return word & ((1ull << g.compressed_offset_bits) - 1);
  }
  uint64_t compressed_length(const Geometry& g) const {
    const uint64_t off = compressed_offset(g);
    const uint64_t extra_sectors =
        (word & ~kFlagCompressed & ~kFlagCopied) >> g.compressed_offset_bits;
    return (extra_sectors + 1) * 512 - (off & 511);
  }

  SubclusterType type(const Geometry& g, uint32_t sc) const {
    if (compressed()) {
      return (g.extended_l2 && bitmap != 0) ? SubclusterType::kInvalid : SubclusterType::kCompressed;
    }
    if ((word & kL2ReservedMask) != 0) return SubclusterType::kInvalid;
    const bool host = has_host(g);
    if (!g.extended_l2) {
      if (word & kFlagZero) return host ? SubclusterType::kZeroAlloc : SubclusterType::kZeroPlain;
      if (host) return SubclusterType::kNormal;
      return (word & kFlagCopied) ? SubclusterType::kInvalid : SubclusterType::kUnallocatedPlain;
    }
    if (word & kFlagZero) return SubclusterType::kInvalid;  // no zero flag with extended L2
    const bool alloc = (alloc_bits() >> sc) & 1;
    const bool zero = (zero_bits() >> sc) & 1;
    if (alloc && zero) return SubclusterType::kInvalid;
    if (!host) {
      if (alloc) return SubclusterType::kInvalid;
      return zero ? SubclusterType::kZeroPlain : SubclusterType::kUnallocatedPlain;
    }
    if (zero) return SubclusterType::kZeroAlloc;
    return alloc ? SubclusterType::kNormal : SubclusterType::kUnallocatedAlloc;
  }
};

}  // namespace blockcore::qcow2
