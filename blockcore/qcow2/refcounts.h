// Refcounts: the image's refcount table (held in memory) and refcount blocks (through
// a TableCache), cluster allocation and freeing, and growth of both structures.
// New refcount blocks are placed at the start of the host range they describe (so they
// describe themselves); a full refcount table moves to the end of the file with the
// blocks it needs (the header is switched only after both are durable).
// Frees and decrements are deferred: they are applied by apply_deferred() only after the
// L2 tables that dropped the references are durable, so the file never holds a
// referenced cluster with too low a count, whatever a crash interrupts; the price of a
// crash is a leak, which the open after it reclaims.
// Errors: EUCLEAN marks detected corruption (refcount overflow or underflow, an
// allocation that would overwrite metadata); the image turns corrupt on it.
// Threading: not thread-safe; every call is made under the image's metadata lock.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <set>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "blockcore/block_node.h"
#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/metadata_map.h"
#include "blockcore/qcow2/table_cache.h"

namespace blockcore::qcow2 {

inline constexpr uint64_t kRefTableOffsetMask = 0xfffffffffffffe00ull;

class Refcounts {
 public:
  // Writes the header's refcount table fields (offset, clusters) durably.
  using TableLocationWriter = std::function<Task<Status>(uint64_t offset, uint32_t clusters)>;

  Refcounts(BlockNode& file, const Geometry& g, MetadataMap& map, size_t cache_tables);

  // Reads the refcount table; checks its entries against the file size.
  Task<Status> load(uint64_t table_offset, uint32_t table_clusters);
  void set_table_location_writer(TableLocationWriter w) { write_location_ = std::move(w); }
  TableCache& cache() { return cache_; }

  uint64_t table_offset() const { return table_offset_; }
  uint32_t table_clusters() const { return table_clusters_; }
  const std::vector<uint64_t>& table() const { return table_; }

  // The refcount of host cluster `cluster` (an index); 0 where no block exists.
  Task<Result<uint64_t>> get(uint64_t cluster);
  // Adds delta to a cluster's refcount (creating its refcount block if needed).
  Task<Status> change(uint64_t cluster, int64_t delta);
  // Sets a refcount outright (repair).
  Task<Status> set(uint64_t cluster, uint64_t value);
  // Allocates n contiguous free clusters with refcount 1 and makes the file long enough
  // to hold them. Returns the host byte offset. *fresh_from (if given) receives the host
  // offset from which the run was never written since open (reads as zeroes).
  // REQUIRES: n <= max_run() (a longer run would always contain the first cluster of a
  // range whose new refcount block lands there).
  Task<Result<uint64_t>> allocate(uint64_t n, uint64_t* fresh_from = nullptr);
  uint64_t max_run() const { return std::max<uint64_t>(1, g_.refblock_entries / 2); }
  // Records a decrement to apply after the next durable L2 write-back.
  void defer_decrement(uint64_t cluster, uint64_t count = 1);
  bool has_deferred() const { return !deferred_.empty(); }
  // Applies the deferred decrements; returns the clusters whose count reached 0.
  Task<Result<std::vector<uint64_t>>> apply_deferred();

  bool dirty() const { return cache_.has_dirty() || !dirty_table_clusters_.empty(); }
  // Write-back, phase 1: the refcount blocks.
  Task<Status> write_blocks() { return cache_.write_dirty(); }
  // Write-back, phase 2 (after a sync): the changed refcount table clusters.
  Task<Status> write_table();

  // Repair mode: new refcount blocks go to the end of the file (the image's counts
  // cannot be trusted to say which clusters are free).
  void set_repairing(bool on) { repairing_ = on; }
  // Clusters the file holds (its size, rounded up).
  uint64_t file_clusters() const;

 private:
  Task<Result<TableCache::Ref>> block_for(uint64_t cluster, bool create);
  Task<Status> create_block(uint64_t rt_index);
  Task<Status> grow_table(uint64_t min_entries);
  Task<Status> ensure_file_size(uint64_t end_cluster);

  BlockNode& file_;
  const Geometry g_;
  MetadataMap& map_;
  TableCache cache_;
  TableLocationWriter write_location_;

  uint64_t table_offset_ = 0;
  uint32_t table_clusters_ = 0;
  std::vector<uint64_t> table_;              // entry values (offset bits only)
  std::set<uint64_t> dirty_table_clusters_;  // indexes of table clusters to write
  uint64_t free_hint_ = 0;                   // no free cluster below this index
  // Runs of several clusters are searched from here (the end of the last run, or the
  // lowest cluster freed since), so small gaps below are not rescanned every time;
  // single clusters fill them.
  uint64_t run_hint_ = 0;
  // Clusters from this index on were never handed out since open (nor in the file then).
  uint64_t untouched_from_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> deferred_;  // cluster, count
  bool repairing_ = false;
};

}  // namespace blockcore::qcow2
