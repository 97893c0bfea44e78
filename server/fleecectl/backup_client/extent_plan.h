// Extent planning for fleecectl backup: which byte ranges of the fleece view to read
// (the allocated ones for a full backup, the dirty ones for an incremental), widened to
// whole clusters of the target image, merged and cut into read requests; and, for a
// buffer that was read, which clusters hold data and which only zeroes. Also the NBD URI
// of one export. Pure functions, unit-tested.
// Threading: stateless.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fleecectl::backup {

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const ByteRange&) const = default;
};

// One run of NBD block status: `length` bytes with the context's `flags`.
struct StatusRun {
  uint64_t length = 0;
  uint32_t flags = 0;
};

// NBD flag bits: base:allocation (NBD_STATE_HOLE, NBD_STATE_ZERO) and
// qemu:dirty-bitmap (NBD_STATE_DIRTY).
inline constexpr uint32_t kStateHole = 1;
inline constexpr uint32_t kStateZero = 2;
inline constexpr uint32_t kStateDirty = 1;

// The ranges, starting at `start`, whose runs match: with `want_set`, runs that have
// any bit of `mask` set (dirty); without, runs that have none of them (not zero).
// Adjacent matches are merged.
std::vector<ByteRange> select_runs(uint64_t start, const std::vector<StatusRun>& runs,
                                   uint32_t mask, bool want_set);

// Widens every range to multiples of `align` (a power of two), clips to `size`, merges
// ranges that then touch or overlap (input in ascending order) and cuts the result into
// pieces of at most `max_request` bytes (a multiple of `align`).
std::vector<ByteRange> plan_requests(const std::vector<ByteRange>& ranges, uint64_t align,
                                     uint64_t size, uint64_t max_request);

// Total bytes of a list of ranges.
uint64_t total_bytes(const std::vector<ByteRange>& ranges);

// A stretch of a read buffer: clusters holding data, or only zero bytes.
struct BufferRun {
  uint64_t offset = 0;  // in the disk
  uint64_t length = 0;
  bool zero = false;
  bool operator==(const BufferRun&) const = default;
};

// Splits `data` (the disk's bytes at `offset`) at `cluster` boundaries into data and
// all-zero runs; neighbours of the same kind are merged.
std::vector<BufferRun> split_zero_clusters(uint64_t offset, std::span<const std::byte> data,
                                           uint64_t cluster);

// `uri` (nbd:// nbds:// nbd+unix:// ...) with its export path replaced by `export_name`
// (percent-encoded where it must be). An empty string if `uri` has no "://".
std::string uri_with_export(const std::string& uri, const std::string& export_name);

}  // namespace fleecectl::backup
