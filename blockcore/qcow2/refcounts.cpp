#include "blockcore/qcow2/refcounts.h"

#include <algorithm>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "blockcore/qcow2/refcount_codec.h"

namespace blockcore::qcow2 {
namespace {

Status corrupt(std::string what) { return Status::error(EUCLEAN, std::move(what)); }

// The file grows in steps (an eighth of its size, 1 to 32 MiB), so appending clusters
// costs one ftruncate per step rather than one per cluster.
constexpr uint64_t kMinFileGrowStep = 1u << 20;
constexpr uint64_t kMaxFileGrowStep = 32u << 20;

}  // namespace

Refcounts::Refcounts(BlockNode& file, const Geometry& g, MetadataMap& map, size_t cache_tables)
    : file_(file), g_(g), map_(map), cache_(file, g.cluster_size, cache_tables, "refcount block") {}

uint64_t Refcounts::file_clusters() const {
  return (file_.size() + g_.cluster_size - 1) >> g_.cluster_bits;
}

Task<Status> Refcounts::load(uint64_t table_offset, uint32_t table_clusters) {
  table_offset_ = table_offset;
  table_clusters_ = table_clusters;
  const uint64_t bytes = uint64_t{table_clusters} * g_.cluster_size;
  std::vector<std::byte> raw(bytes);
  if (Status s = co_await file_.read(table_offset, raw); !s.is_ok()) {
    co_return s.with_context("reading the refcount table");
  }
  table_.resize(bytes / 8);
  const uint64_t file_size = file_.size();
  untouched_from_ = file_clusters();
  for (size_t i = 0; i < table_.size(); ++i) {
    const uint64_t e = load_be64(raw.data() + i * 8);
    if (e & ~kRefTableOffsetMask) {
      co_return Status::invalid("refcount table entry " + std::to_string(i) +
                                " has reserved bits set");
    }
    if (e != 0 && (e % g_.cluster_size != 0 || e + g_.cluster_size > file_size || e == 0)) {
      co_return Status::invalid("refcount block " + std::to_string(i) + " at offset " +
                                std::to_string(e) + " lies outside the file (" +
                                std::to_string(file_size) + " bytes) or is misaligned");
    }
    table_[i] = e;
    if (e) map_.add_cluster(MetadataKind::kRefcountBlock, e);
  }
  co_return Status::ok();
}

Task<Result<TableCache::Ref>> Refcounts::block_for(uint64_t cluster, bool create) {
  const uint64_t rt = cluster >> g_.refblock_bits;
  if (rt >= table_.size() || table_[rt] == 0) {
    if (!create) co_return TableCache::Ref();
    if (rt >= table_.size()) {
      if (Status s = co_await grow_table(rt + 1); !s.is_ok()) co_return s;
    }
    if (table_[rt] == 0) {
      if (Status s = co_await create_block(rt); !s.is_ok()) co_return s;
    }
  }
  co_return co_await cache_.get(table_[rt]);
}

Task<Result<uint64_t>> Refcounts::get(uint64_t cluster) {
  Result<TableCache::Ref> b = co_await block_for(cluster, /*create=*/false);
  if (!b.is_ok()) co_return b.status();
  if (!b.value()) co_return uint64_t{0};
  co_return get_refcount(b.value().bytes(), g_.refcount_order, cluster & (g_.refblock_entries - 1));
}

Task<Status> Refcounts::set(uint64_t cluster, uint64_t value) {
  Result<TableCache::Ref> b = co_await block_for(cluster, /*create=*/value != 0);
  if (!b.is_ok()) co_return b.status();
  if (!b.value()) co_return Status::ok();  // no block: every count in its range is 0 already
  if (value > max_refcount(g_.refcount_order)) {
    co_return corrupt("refcount " + std::to_string(value) + " does not fit " +
                      std::to_string(1u << g_.refcount_order) + "-bit refcounts");
  }
  TableCache::Ref ref = b.value();
  set_refcount(ref.bytes(), g_.refcount_order, cluster & (g_.refblock_entries - 1), value);
  ref.mark_dirty();
  if (value == 0) {
    free_hint_ = std::min(free_hint_, cluster);
    run_hint_ = std::min(run_hint_, cluster);
  }
  co_return Status::ok();
}

Task<Status> Refcounts::change(uint64_t cluster, int64_t delta) {
  Result<TableCache::Ref> b = co_await block_for(cluster, /*create=*/delta > 0);
  if (!b.is_ok()) co_return b.status();
  if (!b.value()) {
    co_return corrupt("refcount of cluster " + std::to_string(cluster) +
                      " would drop below 0 (it has no refcount block)");
  }
  TableCache::Ref ref = b.value();
  const uint64_t index = cluster & (g_.refblock_entries - 1);
  const uint64_t old = get_refcount(ref.bytes(), g_.refcount_order, index);
  if (delta < 0 && old < static_cast<uint64_t>(-delta)) {
    co_return corrupt("refcount of cluster " + std::to_string(cluster) + " would drop below 0");
  }
  const uint64_t now = old + static_cast<uint64_t>(delta);
  if (delta > 0 && (now < old || now > max_refcount(g_.refcount_order))) {
    co_return corrupt("refcount of cluster " + std::to_string(cluster) + " would overflow " +
                      std::to_string(1u << g_.refcount_order) + "-bit refcounts");
  }
  set_refcount(ref.bytes(), g_.refcount_order, index, now);
  ref.mark_dirty();
  if (now == 0) {
    free_hint_ = std::min(free_hint_, cluster);
    run_hint_ = std::min(run_hint_, cluster);
  }
  co_return Status::ok();
}

Task<Status> Refcounts::ensure_file_size(uint64_t end_cluster) {
  const uint64_t need = end_cluster << g_.cluster_bits;
  if (file_.size() >= need) co_return Status::ok();
  const uint64_t step = std::clamp(file_.size() / 8, kMinFileGrowStep, kMaxFileGrowStep);
  const uint64_t grown = std::max(need, (file_.size() + step) / kMinFileGrowStep * kMinFileGrowStep);
  Status s = co_await file_.truncate(grown);
  if (!s.is_ok() && grown != need) s = co_await file_.truncate(need);
  co_return s;
}

Task<Status> Refcounts::create_block(uint64_t rt) {
  const uint64_t range_start = rt << g_.refblock_bits;
  uint64_t block_cluster = range_start;
  if (repairing_) {
    // Counts are untrusted while repairing: take the cluster after everything.
    block_cluster = file_clusters();
  }
  const uint64_t offset = block_cluster << g_.cluster_bits;
  if (Status s = map_.check(offset, g_.cluster_size); !s.is_ok()) {
    co_return corrupt("new refcount block: " + s.message());
  }
  FLEECE_CO_RETURN_IF_ERROR(co_await ensure_file_size(block_cluster + 1));
  untouched_from_ = std::max(untouched_from_, block_cluster + 1);
  Result<TableCache::Ref> b = co_await cache_.create(offset);
  if (!b.is_ok()) co_return b.status();
  table_[rt] = offset;
  dirty_table_clusters_.insert((rt * 8) >> g_.cluster_bits);
  map_.add_cluster(MetadataKind::kRefcountBlock, offset);
  if ((block_cluster >> g_.refblock_bits) == rt) {
    // Self-describing: its own count lives in it.
    TableCache::Ref ref = b.value();
    set_refcount(ref.bytes(), g_.refcount_order, block_cluster & (g_.refblock_entries - 1), 1);
    co_return Status::ok();
  }
  co_return co_await change(block_cluster, +1);
}

Task<Status> Refcounts::grow_table(uint64_t min_entries) {
  const uint64_t per_cluster = g_.cluster_size / 8;
  uint64_t entries = std::max<uint64_t>({min_entries, table_.size() * 2, per_cluster});
  entries = (entries + per_cluster - 1) / per_cluster * per_cluster;
  if (entries * 8 > kMaxRefcountTableBytes) {
    entries = kMaxRefcountTableBytes / 8;
    if (entries < min_entries) {
      co_return Status::no_space("the image outgrew its largest possible refcount table");
    }
  }
  const uint64_t table_clusters = entries / per_cluster;
  // Lay out [A, A + B + T): B new refcount blocks (for every range there that has none),
  // then the T clusters of the new table, all past the end of the file.
  const uint64_t a = file_clusters();
  auto missing_blocks = [&](uint64_t end) {
    std::vector<uint64_t> rts;
    for (uint64_t rt = a >> g_.refblock_bits; rt <= (end - 1) >> g_.refblock_bits; ++rt) {
      if (rt >= table_.size() || table_[rt] == 0) rts.push_back(rt);
    }
    return rts;
  };
  std::vector<uint64_t> rts;
  for (uint64_t b = 0;;) {
    rts = missing_blocks(a + b + table_clusters);
    if (rts.size() == b) break;
    b = rts.size();
  }
  const uint64_t blocks = rts.size();
  const uint64_t new_offset = (a + blocks) << g_.cluster_bits;
  if (Status s = map_.check(a << g_.cluster_bits, (blocks + table_clusters) << g_.cluster_bits);
      !s.is_ok()) {
    co_return corrupt("new refcount table: " + s.message());
  }
  FLEECE_CO_RETURN_IF_ERROR(co_await ensure_file_size(a + blocks + table_clusters));
  untouched_from_ = std::max(untouched_from_, a + blocks + table_clusters);

  const uint64_t old_offset = table_offset_;
  const uint32_t old_clusters = table_clusters_;
  table_.resize(entries, 0);
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t off = (a + i) << g_.cluster_bits;
    Result<TableCache::Ref> b = co_await cache_.create(off);
    if (!b.is_ok()) co_return b.status();
    table_[rts[i]] = off;
    map_.add_cluster(MetadataKind::kRefcountBlock, off);
  }
  table_offset_ = new_offset;
  table_clusters_ = static_cast<uint32_t>(table_clusters);
  for (uint64_t c = a; c < a + blocks + table_clusters; ++c) {
    FLEECE_CO_RETURN_IF_ERROR(co_await change(c, +1));
  }
  // Durable order: blocks, the whole new table, then the header switch.
  FLEECE_CO_RETURN_IF_ERROR(co_await cache_.write_dirty());
  for (uint64_t i = 0; i < table_clusters; ++i) dirty_table_clusters_.insert(i);
  FLEECE_CO_RETURN_IF_ERROR(co_await write_table());
  FLEECE_CO_RETURN_IF_ERROR(co_await file_.flush());
  if (!write_location_) co_return Status::invalid("refcount table moved without a header writer");
  FLEECE_CO_RETURN_IF_ERROR(co_await write_location_(table_offset_, table_clusters_));
  map_.remove_range(MetadataKind::kRefcountTable, old_offset);
  map_.add_range(MetadataKind::kRefcountTable, table_offset_, table_clusters << g_.cluster_bits);
  for (uint64_t i = 0; i < old_clusters; ++i) {
    defer_decrement((old_offset >> g_.cluster_bits) + i);
  }
  co_return Status::ok();
}

Task<Result<uint64_t>> Refcounts::allocate(uint64_t n, uint64_t* fresh_from) {
  if (n == 0 || n > max_run()) {
    co_return Status::invalid("cannot allocate " + std::to_string(n) + " contiguous clusters");
  }
  for (;;) {
    // The first run of n clusters with refcount 0 at or after the hint.
    const uint64_t from = n == 1 ? free_hint_ : std::max(free_hint_, run_hint_);
    uint64_t start = from;
    uint64_t len = 0;
    uint64_t first_free = UINT64_MAX;
    while (len < n) {
      Result<uint64_t> rc = co_await get(start + len);
      if (!rc.is_ok()) co_return rc.status();
      if (rc.value() != 0) {
        start += len + 1;
        len = 0;
      } else {
        first_free = std::min(first_free, start + len);
        ++len;
      }
    }
    // Nothing below first_free is free (when the scan began at the hint); the hint moves
    // past the run when it starts there.
    if (from == free_hint_) free_hint_ = first_free;
    // Blocks for the run; creating one takes a cluster, so look again afterwards.
    bool created = false;
    for (uint64_t rt = start >> g_.refblock_bits; rt <= (start + n - 1) >> g_.refblock_bits; ++rt) {
      if (rt >= table_.size() || table_[rt] == 0) {
        Result<TableCache::Ref> b = co_await block_for(rt << g_.refblock_bits, /*create=*/true);
        if (!b.is_ok()) co_return b.status();
        created = true;
      }
    }
    if (created) continue;
    if (Status s = map_.check(start << g_.cluster_bits, n << g_.cluster_bits); !s.is_ok()) {
      co_return corrupt("cluster allocation: " + s.message() + " (its refcount is 0)");
    }
    for (uint64_t c = start; c < start + n; ++c) {
      FLEECE_CO_RETURN_IF_ERROR(co_await change(c, +1));
    }
    if (start == free_hint_) free_hint_ = start + n;  // else a shorter gap stays before it
    if (n > 1) run_hint_ = start + n;
    FLEECE_CO_RETURN_IF_ERROR(co_await ensure_file_size(start + n));
    if (fresh_from) *fresh_from = std::max(start, untouched_from_) << g_.cluster_bits;
    untouched_from_ = std::max(untouched_from_, start + n);
    co_return start << g_.cluster_bits;
  }
}

void Refcounts::defer_decrement(uint64_t cluster, uint64_t count) {
  deferred_.emplace_back(cluster, count);
}

Task<Result<std::vector<uint64_t>>> Refcounts::apply_deferred() {
  std::vector<std::pair<uint64_t, uint64_t>> work;
  work.swap(deferred_);
  std::vector<uint64_t> freed;
  for (size_t i = 0; i < work.size(); ++i) {
    const auto [cluster, count] = work[i];
    Status s;
    Result<uint64_t> before = co_await get(cluster);
    if (!before.is_ok()) {
      s = before.status();
    } else if (before.value() == count) {
      // Freeing a cluster the metadata map says is live metadata: a lying entry.
      Status o = map_.check(cluster << g_.cluster_bits, g_.cluster_size);
      if (!o.is_ok()) s = corrupt("freeing cluster " + std::to_string(cluster) + ": " + o.message());
    }
    if (s.is_ok()) s = co_await change(cluster, -static_cast<int64_t>(count));
    if (!s.is_ok()) {
      // Keep what was not applied for the next attempt.
      deferred_.insert(deferred_.end(), work.begin() + static_cast<long>(i) + 1, work.end());
      co_return s;
    }
    Result<uint64_t> rc = co_await get(cluster);
    if (rc.is_ok() && rc.value() == 0) freed.push_back(cluster);
  }
  co_return freed;
}

Task<Status> Refcounts::write_table() {
  const uint64_t per_cluster = g_.cluster_size / 8;
  std::vector<std::byte> buf(g_.cluster_size);
  for (uint64_t c : dirty_table_clusters_) {
    if (c >= table_clusters_) continue;
    for (uint64_t i = 0; i < per_cluster; ++i) {
      const uint64_t idx = c * per_cluster + i;
      store_be64(buf.data() + i * 8, idx < table_.size() ? table_[idx] : 0);
    }
    FLEECE_CO_RETURN_IF_ERROR(co_await file_.write(table_offset_ + (c << g_.cluster_bits), buf,
                                                   IoFlags::kNone));
  }
  dirty_table_clusters_.clear();
  co_return Status::ok();
}

}  // namespace blockcore::qcow2
