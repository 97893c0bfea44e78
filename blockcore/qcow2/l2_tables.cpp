#include "blockcore/qcow2/l2_tables.h"

#include <algorithm>

#include "blockcore/base/big_endian.h"

namespace blockcore::qcow2 {

L2Tables::L2Tables(BlockNode& file, const Geometry& g, MetadataMap& map, Refcounts& refcounts,
                   size_t cache_tables)
    : file_(file), g_(g), map_(map), refcounts_(refcounts),
      cache_(file, g.cluster_size, cache_tables, "L2 table") {}

Task<Status> L2Tables::load_l1(uint64_t offset, uint32_t entries) {
  l1_offset_ = offset;
  std::vector<std::byte> raw(uint64_t{entries} * 8);
  if (!raw.empty()) {
    if (Status s = co_await file_.read(offset, raw); !s.is_ok()) {
      co_return s.with_context("reading the L1 table");
    }
  }
  l1_.resize(entries);
  const uint64_t file_size = file_.size();
  for (uint32_t i = 0; i < entries; ++i) {
    const uint64_t e = load_be64(raw.data() + uint64_t{i} * 8);
    const uint64_t off = e & kOffsetMask;
    if (off % g_.cluster_size != 0 || (off != 0 && off + g_.cluster_size > file_size)) {
      co_return Status::invalid("L1 entry " + std::to_string(i) + " points to an L2 table at " +
                                std::to_string(off) + ", outside the file (" +
                                std::to_string(file_size) + " bytes) or misaligned");
    }
    if (off == 0 && (e & kFlagCopied)) {
      co_return Status::invalid("L1 entry " + std::to_string(i) + " is flagged copied but empty");
    }
    l1_[i] = e & ~kL1ReservedMask;
    if (off) map_.add_cluster(MetadataKind::kActiveL2, off);
  }
  co_return Status::ok();
}

L2Entry L2Tables::entry(const TableCache::Ref& table, uint64_t guest_off) const {
  const std::byte* p = table.bytes().data() + g_.l2_index(guest_off) * g_.l2_entry_bytes;
  L2Entry e;
  e.word = load_be64(p);
  if (g_.extended_l2) e.bitmap = load_be64(p + 8);
  return e;
}

void L2Tables::set_entry(TableCache::Ref& table, uint64_t guest_off, const L2Entry& e) {
  std::byte* p = table.bytes().data() + g_.l2_index(guest_off) * g_.l2_entry_bytes;
  store_be64(p, e.word);
  if (g_.extended_l2) store_be64(p + 8, e.bitmap);
  table.mark_dirty();
}

Task<Status> L2Tables::read_entries(uint64_t guest_off, size_t n, std::vector<L2Entry>& out) {
  out.clear();
  const uint64_t first = g_.l2_index(guest_off);
  const size_t count = static_cast<size_t>(std::min<uint64_t>(n, g_.l2_entries - first));
  const uint64_t l1_index = g_.l1_index(guest_off);
  const uint64_t table_off = l1_index < l1_.size() ? (l1_[l1_index] & kOffsetMask) : 0;
  if (table_off == 0) {
    out.assign(count, L2Entry{});
    co_return Status::ok();
  }
  Result<TableCache::Ref> t = co_await cache_.get(table_off);
  if (!t.is_ok()) co_return t.status();
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    out.push_back(entry(t.value(), guest_off + (uint64_t{i} << g_.cluster_bits)));
  }
  co_return Status::ok();
}

Task<Result<TableCache::Ref>> L2Tables::writable_table(uint64_t guest_off) {
  const uint64_t i = g_.l1_index(guest_off);
  if (i >= l1_.size()) {
    co_return Status::io_error("guest offset " + std::to_string(guest_off) +
                               " lies beyond the L1 table");
  }
  const uint64_t e = l1_[i];
  const uint64_t old = e & kOffsetMask;
  if (old != 0 && (e & kFlagCopied)) co_return co_await cache_.get(old);

  Result<uint64_t> fresh = co_await refcounts_.allocate(1);
  if (!fresh.is_ok()) co_return fresh.status();
  Result<TableCache::Ref> t{TableCache::Ref()};
  if (old == 0) {
    t = co_await cache_.create(fresh.value());
  } else {
    // Shared with a snapshot: copy it; the snapshot keeps the old one.
    Result<TableCache::Ref> shared = co_await cache_.get(old);
    if (!shared.is_ok()) co_return shared.status();
    std::vector<std::byte> copy(shared.value().bytes().begin(), shared.value().bytes().end());
    t = co_await cache_.create(fresh.value(), copy);
    refcounts_.defer_decrement(old >> g_.cluster_bits);
    map_.remove_cluster(MetadataKind::kActiveL2, old);
  }
  if (!t.is_ok()) co_return t.status();
  l1_[i] = fresh.value() | kFlagCopied;
  dirty_l1_clusters_.insert((i * 8) >> g_.cluster_bits);
  map_.add_cluster(MetadataKind::kActiveL2, fresh.value());
  co_return t;
}

Task<Status> L2Tables::write_l1() {
  for (uint64_t c : dirty_l1_clusters_) {
    const uint64_t first = (c << g_.cluster_bits) / 8;
    const uint64_t last = std::min<uint64_t>(l1_.size(), first + g_.cluster_size / 8);
    std::vector<std::byte> buf((last - first) * 8);
    for (uint64_t i = first; i < last; ++i) store_be64(buf.data() + (i - first) * 8, l1_[i]);
    if (Status s = map_.check_except(l1_offset_ + first * 8, buf.size(), MetadataKind::kActiveL1,
                                     l1_offset_);
        !s.is_ok()) {
      co_return Status::error(EUCLEAN, s.message());
    }
    FLEECE_CO_RETURN_IF_ERROR(
        co_await file_.write(l1_offset_ + first * 8, buf, IoFlags::kNone));
  }
  dirty_l1_clusters_.clear();
  co_return Status::ok();
}

}  // namespace blockcore::qcow2
