// L2Tables: the guest-to-host mapping of a qcow2 image — the active L1 table (held in
// memory) and its L2 tables (through a TableCache). Looks entries up, and makes an L2
// table writable before an entry changes: allocating it when the L1 entry is empty,
// copying it when a snapshot shares it (the shared copy's count drops only after the
// new L1 entry is durable, through Refcounts' deferred decrements).
// Write-back order (driven by the image): L2 tables, sync, then the L1 clusters that
// point at new tables.
// Threading: not thread-safe; every call is made under the image's metadata lock.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "blockcore/block_node.h"
#include "blockcore/qcow2/cluster_entry.h"
#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/metadata_map.h"
#include "blockcore/qcow2/refcounts.h"
#include "blockcore/qcow2/table_cache.h"

namespace blockcore::qcow2 {

class L2Tables {
 public:
  L2Tables(BlockNode& file, const Geometry& g, MetadataMap& map, Refcounts& refcounts,
           size_t cache_tables);

  // Reads the active L1 table and checks its entries (alignment, inside the file).
  Task<Status> load_l1(uint64_t offset, uint32_t entries);
  const std::vector<uint64_t>& l1() const { return l1_; }
  uint64_t l1_offset() const { return l1_offset_; }
  TableCache& cache() { return cache_; }

  // Reads the entries of up to `n` consecutive clusters from guest_off (cluster
  // aligned), stopping at the end of its L2 table. Clusters without an L2 table read as
  // unallocated entries.
  Task<Status> read_entries(uint64_t guest_off, size_t n, std::vector<L2Entry>& out);

  // The L2 table mapping guest_off, allocated or copied so that it may be changed.
  Task<Result<TableCache::Ref>> writable_table(uint64_t guest_off);
  L2Entry entry(const TableCache::Ref& table, uint64_t guest_off) const;
  void set_entry(TableCache::Ref& table, uint64_t guest_off, const L2Entry& e);

  bool tables_dirty() const { return cache_.has_dirty(); }
  bool l1_dirty() const { return !dirty_l1_clusters_.empty(); }
  Task<Status> write_tables() { return cache_.write_dirty(); }
  Task<Status> write_l1();

 private:
  BlockNode& file_;
  const Geometry g_;
  MetadataMap& map_;
  Refcounts& refcounts_;
  TableCache cache_;
  uint64_t l1_offset_ = 0;
  std::vector<uint64_t> l1_;
  std::set<uint64_t> dirty_l1_clusters_;
};

}  // namespace blockcore::qcow2
