// Geometry: the sizes derived from a qcow2 header (cluster, L2 table, subcluster,
// refcount block) and the arithmetic that splits a guest offset into L1/L2 indexes.
// Threading: a plain value.
#pragma once

#include <cstdint>

#include "blockcore/qcow2/qcow2_format.h"

namespace blockcore::qcow2 {

struct Geometry {
  uint32_t cluster_bits = 16;
  uint64_t cluster_size = 1ull << 16;
  bool extended_l2 = false;
  uint32_t l2_entry_bytes = 8;          // 16 with extended L2
  uint32_t l2_bits = 13;                // log2(entries per L2 table)
  uint64_t l2_entries = 1ull << 13;
  uint32_t subclusters = 1;             // per cluster: 32 with extended L2, else 1
  uint64_t subcluster_size = 1ull << 16;
  uint32_t refcount_order = 4;
  uint64_t refblock_entries = 1ull << 15;  // refcounts per refcount block
  uint32_t refblock_bits = 15;
  uint32_t compressed_offset_bits = 54;    // x = 62 - (cluster_bits - 8)
  uint64_t disk_size = 0;
  // Guest data lives in an external data file, mapped 1:1: host offset 0 is valid there
  // (told apart from "unallocated" by the copied flag).
  bool external_data = false;

  static Geometry from(const Header& h) {
    Geometry g;
    g.cluster_bits = h.cluster_bits;
    g.cluster_size = 1ull << h.cluster_bits;
    g.extended_l2 = h.extended_l2();
    g.l2_entry_bytes = g.extended_l2 ? 16 : 8;
    g.l2_bits = h.cluster_bits - (g.extended_l2 ? 4 : 3);
    g.l2_entries = 1ull << g.l2_bits;
    g.subclusters = g.extended_l2 ? 32 : 1;
    g.subcluster_size = g.cluster_size / g.subclusters;
    g.refcount_order = h.refcount_order;
    g.refblock_bits = h.cluster_bits + 3 - h.refcount_order;
    g.refblock_entries = 1ull << g.refblock_bits;
    g.compressed_offset_bits = 62 - (h.cluster_bits - 8);
    g.disk_size = h.size;
    g.external_data = h.has_data_file();
    return g;
  }

  uint64_t offset_in_cluster(uint64_t off) const { return off & (cluster_size - 1); }
  uint64_t cluster_start(uint64_t off) const { return off & ~(cluster_size - 1); }
  uint64_t cluster_index(uint64_t off) const { return off >> cluster_bits; }
  uint64_t l1_index(uint64_t guest_off) const { return guest_off >> (cluster_bits + l2_bits); }
  uint64_t l2_index(uint64_t guest_off) const {
    return (guest_off >> cluster_bits) & (l2_entries - 1);
  }
  // Guest bytes one L2 table maps.
  uint64_t l2_span() const { return 1ull << (cluster_bits + l2_bits); }
  // L1 entries needed for a disk of `size` bytes.
  uint64_t l1_entries_for(uint64_t size) const {
    return (size + l2_span() - 1) >> (cluster_bits + l2_bits);
  }
  // Host bytes covered by one refcount block.
  uint64_t refblock_span() const { return 1ull << (cluster_bits + refblock_bits); }
  uint32_t subcluster_index(uint64_t off) const {
    return static_cast<uint32_t>(offset_in_cluster(off) / subcluster_size);
  }
};

}  // namespace blockcore::qcow2
