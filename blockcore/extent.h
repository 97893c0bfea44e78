// Extents: what block_status reports — runs of bytes with allocation flags and the
// depth of the layer that provides them. Helpers to append with merging and to clamp.
// Threading: plain values.
#pragma once

#include <cstdint>
#include <vector>

namespace blockcore {

// Flag bits of Extent::flags.
inline constexpr uint32_t kExtentHole = 1;  // no storage allocated for the range
inline constexpr uint32_t kExtentZero = 2;  // the range reads as zeroes

struct Extent {
  uint64_t length = 0;
  uint32_t flags = 0;
  // Which layer of a backing chain provides the data: 0 = none (unallocated in the
  // whole chain), 1 = this node, 2 = its first backing node, ...
  uint32_t depth = 1;

  bool operator==(const Extent&) const = default;
};

using ExtentList = std::vector<Extent>;

// Appends e to list, merging it with the last extent when flags and depth match.
inline void append_extent(ExtentList& list, const Extent& e) {
  if (e.length == 0) return;
  if (!list.empty() && list.back().flags == e.flags && list.back().depth == e.depth) {
    list.back().length += e.length;
  } else {
    list.push_back(e);
  }
}

// Total bytes covered by the list.
inline uint64_t extents_length(const ExtentList& list) {
  uint64_t n = 0;
  for (const auto& e : list) n += e.length;
  return n;
}

}  // namespace blockcore
