// Zeroing and discarding in Qcow2Node: whole clusters change only their L2 entries (the
// zero flag or subcluster zero bits; unmapped when allowed), partial clusters are
// written with zeroes through the allocating write path.
#include <algorithm>
#include <vector>

#include "blockcore/qcow2/qcow2_node.h"

namespace blockcore::qcow2 {
namespace {

constexpr uint64_t kAllZeroBits = uint64_t{kAllSubclusters} << 32;
constexpr size_t kZeroChunk = 1u << 20;

}  // namespace

Task<Status> Qcow2Node::write_zero_bytes(uint64_t off, uint64_t len) {
  std::vector<std::byte> zeroes(static_cast<size_t>(std::min<uint64_t>(len, kZeroChunk)));
  while (len > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeroes.size()));
    FLEECE_CO_RETURN_IF_ERROR(co_await write_locked(off, std::span(zeroes).first(n)));
    off += n;
    len -= n;
  }
  co_return Status::ok();
}

Task<Status> Qcow2Node::do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) {
  const Geometry& g = image_->geometry();
  const uint64_t end = off + len;
  // Whole clusters [a, b); the last cluster counts as whole when the range reaches the
  // end of the disk.
  const uint64_t a = (off + g.cluster_size - 1) & ~(g.cluster_size - 1);
  uint64_t b = end == size() ? ((end + g.cluster_size - 1) & ~(g.cluster_size - 1))
                             : (end & ~(g.cluster_size - 1));
  const bool metadata_only = image_->header().version >= 3 || !image_->backing();
  const bool partial = a >= b ? true : (off < a || std::min(b, end) < end);
  if (has_flag(flags, IoFlags::kFastZero) && (partial || !metadata_only)) {
    co_return Status::not_supported(name() + ": zeroing part of a cluster writes data");
  }
  RangeLock::Guard range = co_await range_lock_.lock(
      cluster_lock_begin(off), cluster_lock_end(off, len), RangeLock::Mode::kExclusive);
  if (!metadata_only || a >= b) {
    FLEECE_CO_RETURN_IF_ERROR(co_await write_zero_bytes(off, len));
  } else {
    if (off < a) FLEECE_CO_RETURN_IF_ERROR(co_await write_zero_bytes(off, a - off));
    FLEECE_CO_RETURN_IF_ERROR(co_await zero_clusters(a, (b - a) >> g.cluster_bits,
                                                     has_flag(flags, IoFlags::kMayTrim),
                                                     /*discard=*/false));
    if (b < end) FLEECE_CO_RETURN_IF_ERROR(co_await write_zero_bytes(b, end - b));
  }
  range.release();
  if (has_flag(flags, IoFlags::kFua)) co_return co_await do_flush();
  co_return Status::ok();
}

Task<Status> Qcow2Node::do_discard(uint64_t off, uint64_t len, IoFlags) {
  const Geometry& g = image_->geometry();
  const uint64_t end = off + len;
  const uint64_t a = (off + g.cluster_size - 1) & ~(g.cluster_size - 1);
  const uint64_t b = end == size() ? ((end + g.cluster_size - 1) & ~(g.cluster_size - 1))
                                   : (end & ~(g.cluster_size - 1));
  if (a >= b) co_return Status::ok();  // discard is a hint: partial clusters stay
  if (image_->header().version < 3 && image_->backing()) co_return Status::ok();
  RangeLock::Guard range = co_await range_lock_.lock(
      a >> g.cluster_bits, b >> g.cluster_bits, RangeLock::Mode::kExclusive);
  co_return co_await zero_clusters(a, (b - a) >> g.cluster_bits, /*unmap=*/true, /*discard=*/true);
}

Task<Status> Qcow2Node::zero_clusters(uint64_t first, uint64_t count, bool unmap, bool discard) {
  const Geometry& g = image_->geometry();
  const bool external = image_->external_data();
  const bool raw_data = external && image_->header().data_file_raw();
  const bool has_backing = image_->backing() != nullptr;
  const bool zero_flag = image_->header().version >= 3;
  if (raw_data) {
    // The data file must stay a valid raw image: zero it there; the entries stay.
    co_return co_await image_->data().write_zeroes(first, count << g.cluster_bits,
                                                   unmap ? IoFlags::kMayTrim : IoFlags::kNone);
  }
  std::vector<L2Entry> entries;
  while (count > 0) {
    const uint64_t in_table = g.l2_entries - g.l2_index(first);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(count, in_table));
    AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
    FLEECE_CO_RETURN_IF_ERROR(co_await image_->prepare_modify());
    Status s = co_await image_->l2().read_entries(first, n, entries);
    if (!s.is_ok()) co_return co_await image_->fail(s);
    std::vector<L2Entry> updated(n);
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      const L2Entry& old = entries[i];
      L2Entry& e = updated[i];
      if (!external && old.has_host(g)) {
        if (Status o = image_->map().check(old.host_offset(), g.cluster_size); !o.is_ok()) {
          co_return co_await image_->fail(Status::error(EUCLEAN, o.message()));
        }
      }
      const bool ours = old.has_host(g) && old.copied();
      // v2 has no zero flag: a zeroed cluster is deallocated (only done without a
      // backing file, where unallocated reads as zeroes).
      const bool keep_host = !unmap && ours && zero_flag;
      if (g.extended_l2) {
        e.word = keep_host ? old.word : 0;
        e.bitmap = (discard && !has_backing) ? 0 : kAllZeroBits;
      } else if (keep_host) {
        e.word = old.host_offset() | kFlagZero | kFlagCopied;
      } else if (discard && !has_backing) {
        e.word = 0;
      } else {
        e.word = zero_flag ? kFlagZero : 0;
      }
      if (e.word != old.word || e.bitmap != old.bitmap) changed = true;
    }
    if (changed) {
      Result<TableCache::Ref> table = co_await image_->l2().writable_table(first);
      if (!table.is_ok()) co_return co_await image_->fail(table.status());
      for (size_t i = 0; i < n; ++i) {
        const L2Entry& old = entries[i];
        const L2Entry& e = updated[i];
        if (e.word == old.word && e.bitmap == old.bitmap) continue;
        const uint64_t cluster_off = first + (uint64_t{i} << g.cluster_bits);
        image_->l2().set_entry(table.value(), cluster_off, e);
        if (external) continue;  // data-file clusters carry no refcounts
        // Drop the old host cluster's reference once the entry is durable.
        if (old.compressed()) {
          const uint64_t coff = old.compressed_offset(g);
          const uint64_t clen = old.compressed_length(g);
          for (uint64_t c = coff >> g.cluster_bits; c <= (coff + clen - 1) >> g.cluster_bits; ++c) {
            image_->refcounts().defer_decrement(c);
          }
        } else if (old.host_offset() != 0 && e.host_offset() != old.host_offset()) {
          image_->refcounts().defer_decrement(old.host_offset() >> g.cluster_bits);
        }
      }
    }
    meta.unlock();
    if (external && unmap) {
      (void)co_await image_->data().discard(first, uint64_t{n} << g.cluster_bits, IoFlags::kNone);
    }
    first += uint64_t{n} << g.cluster_bits;
    count -= n;
  }
  co_return Status::ok();
}

}  // namespace blockcore::qcow2
