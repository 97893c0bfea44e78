// The write path of Qcow2Node: in-place writes into allocated clusters, and allocating
// writes with copy-on-write of only the bytes the write does not cover.
#include <algorithm>
#include <cstring>

#include "blockcore/qcow2/qcow2_node.h"

namespace blockcore::qcow2 {
namespace {

using Action = Qcow2Node::ClusterAction;

struct ClusterPlan {
  uint64_t cluster_off = 0;
  L2Entry old;
  Action action = Action::kNew;
  uint64_t host = 0;
  bool allocated = false;  // host came from the allocator in this request
  bool fresh = false;      // host bytes are known to read as zeroes
  L2Entry updated;
};

uint32_t subcluster_mask(uint32_t first, uint32_t last) {
  const uint32_t upto = last >= 31 ? 0xffffffffu : ((1u << (last + 1)) - 1);
  return upto & ~((1u << first) - 1);
}

bool all_zero(std::span<const std::byte> b) {
  return b.empty() || (b[0] == std::byte{0} && std::memcmp(b.data(), b.data() + 1, b.size() - 1) == 0);
}

}  // namespace

bool Qcow2Node::writable_in_place(const std::vector<Run>& runs) const {
  return std::all_of(runs.begin(), runs.end(), [](const Run& r) {
    return r.type == SubclusterType::kNormal && r.entry.copied();
  });
}

Task<Status> Qcow2Node::do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) {
  bool done = false;
  {
    RangeLock::Guard range = co_await range_lock_.lock(
        cluster_lock_begin(off), cluster_lock_end(off, buf.size()), RangeLock::Mode::kShared);
    std::vector<Run> runs;
    bool in_place = false;
    {
      AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
      if (image_->corrupt()) co_return Status::io_error(name() + ": the image is marked corrupt");
      if (image_->read_only()) co_return Status::read_only(name() + ": the image is read-only");
      Status s = co_await map_range(off, buf.size(), runs);
      if (!s.is_ok()) co_return co_await image_->fail(s);
      in_place = writable_in_place(runs);
      if (in_place && !image_->external_data()) {
        // A hostile entry may point into metadata: never write there.
        for (const Run& r : runs) {
          if (Status o = image_->map().check(r.host_off, r.length); !o.is_ok()) {
            co_return co_await image_->fail(Status::error(EUCLEAN, o.message()));
          }
        }
      }
    }
    if (in_place) {
      size_t pos = 0;
      for (const Run& r : runs) {
        FLEECE_CO_RETURN_IF_ERROR(
            co_await image_->data().write(r.host_off, buf.subspan(pos, r.length), IoFlags::kNone));
        pos += r.length;
      }
      done = true;
    }
  }
  if (!done) {
    RangeLock::Guard range = co_await range_lock_.lock(
        cluster_lock_begin(off), cluster_lock_end(off, buf.size()), RangeLock::Mode::kExclusive);
    FLEECE_CO_RETURN_IF_ERROR(co_await write_locked(off, buf));
  }
  if (has_flag(flags, IoFlags::kFua)) co_return co_await do_flush();
  co_return Status::ok();
}

Task<Status> Qcow2Node::write_locked(uint64_t off, std::span<const std::byte> buf) {
  const uint64_t span = image_->geometry().l2_span();
  while (!buf.empty()) {
    const uint64_t table_end = (off / span + 1) * span;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), table_end - off));
    FLEECE_CO_RETURN_IF_ERROR(co_await write_table_chunk(off, buf.first(n)));
    off += n;
    buf = buf.subspan(n);
  }
  co_return Status::ok();
}

Task<Status> Qcow2Node::write_table_chunk(uint64_t off, std::span<const std::byte> buf) {
  const Geometry& g = image_->geometry();
  const uint64_t end = off + buf.size();
  const uint64_t first = g.cluster_start(off);
  const size_t count = static_cast<size_t>((end - first + g.cluster_size - 1) >> g.cluster_bits);
  const bool external = image_->external_data();
  std::vector<ClusterPlan> plans(count);

  // 1. Plan and allocate, under the metadata lock.
  {
    AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
    FLEECE_CO_RETURN_IF_ERROR(co_await image_->prepare_modify());
    std::vector<L2Entry> entries;
    Status s = co_await image_->l2().read_entries(first, count, entries);
    if (!s.is_ok()) co_return co_await image_->fail(s);
    for (size_t i = 0; i < count; ++i) {
      ClusterPlan& p = plans[i];
      p.cluster_off = first + (uint64_t{i} << g.cluster_bits);
      p.old = entries[i];
      const SubclusterType t0 = p.old.type(g, 0);
      if (t0 == SubclusterType::kInvalid && !g.extended_l2) {
        co_return co_await image_->fail(Status::error(
            EUCLEAN, "invalid L2 entry for guest offset " + std::to_string(p.cluster_off)));
      }
      const bool ours = p.old.has_host(g) && p.old.copied();
      if (ours) {
        p.action = (!g.extended_l2 && t0 == SubclusterType::kZeroAlloc) ? Action::kReuse
                                                                          : Action::kInPlace;
        p.host = p.old.host_offset();
        if (!external) {
          if (Status o = image_->map().check(p.host, g.cluster_size); !o.is_ok()) {
            co_return co_await image_->fail(Status::error(EUCLEAN, o.message()));
          }
        }
      } else if (!external && p.old.has_host(g) &&
                 !image_->map().check(p.old.host_offset(), g.cluster_size).is_ok()) {
        // A "shared" cluster that is really metadata: copying away from it would free it.
        co_return co_await image_->fail(Status::error(
            EUCLEAN, "the L2 entry for guest offset " + std::to_string(p.cluster_off) +
                         " points into metadata at " + std::to_string(p.old.host_offset())));
      } else if (external) {
        p.action = Action::kNew;
        p.host = p.cluster_off;  // external data files map guest offsets 1:1
      } else {
        p.action = Action::kNew;
      }
    }
    // Consecutive new clusters get one contiguous host run.
    for (size_t i = 0; i < count;) {
      if (external || plans[i].action != Action::kNew) {
        ++i;
        continue;
      }
      size_t j = i;
      const uint64_t max_run = image_->refcounts().max_run();
      while (j < count && plans[j].action == Action::kNew && j - i < max_run) ++j;
      uint64_t fresh_from = UINT64_MAX;
      Result<uint64_t> host = co_await image_->refcounts().allocate(j - i, &fresh_from);
      if (!host.is_ok()) {
        // Give back what this request already took.
        for (size_t k = 0; k < i; ++k) {
          if (plans[k].allocated) (void)co_await image_->refcounts().change(plans[k].host >> g.cluster_bits, -1);
        }
        co_return co_await image_->fail(host.status());
      }
      for (size_t k = i; k < j; ++k) {
        plans[k].host = host.value() + ((k - i) << g.cluster_bits);
        plans[k].allocated = true;
        plans[k].fresh = plans[k].host >= fresh_from;
      }
      i = j;
    }
  }

  // 2. Data, without the metadata lock (the exclusive range lock keeps others out).
  // Clusters the write covers whole, on consecutive host clusters, go out as one write.
  auto whole = [&](size_t k) {
    return plans[k].cluster_off >= off && plans[k].cluster_off + g.cluster_size <= end;
  };
  Status data_status;
  for (size_t i = 0; i < count && data_status.is_ok();) {
    size_t j = i + 1;
    if (whole(i)) {
      while (j < count && whole(j) && plans[j].host == plans[j - 1].host + g.cluster_size) ++j;
    }
    if (j - i > 1) {
      const uint64_t bytes = uint64_t{j - i} << g.cluster_bits;
      data_status = co_await image_->data().write(
          plans[i].host, buf.subspan(plans[i].cluster_off - off, bytes), IoFlags::kNone);
      for (size_t k = i; k < j; ++k) {
        plans[k].updated.word = plans[k].host | kFlagCopied;
        plans[k].updated.bitmap = g.extended_l2 ? kAllSubclusters : 0;
      }
    } else {
      ClusterPlan& p = plans[i];
      const uint64_t seg_begin = std::max(off, p.cluster_off);
      const uint64_t seg_end = std::min(end, p.cluster_off + g.cluster_size);
      data_status = co_await write_cluster(p.cluster_off, p.old, p.action, p.host, p.fresh,
                                           seg_begin, buf.subspan(seg_begin - off, seg_end - seg_begin),
                                           p.updated);
    }
    i = j;
  }

  // 3. Link the clusters (or give them back), under the metadata lock.
  AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
  if (!data_status.is_ok()) {
    for (const ClusterPlan& p : plans) {
      if (p.allocated) (void)co_await image_->refcounts().change(p.host >> g.cluster_bits, -1);
    }
    co_return co_await image_->fail(data_status);
  }
  Result<TableCache::Ref> table = co_await image_->l2().writable_table(first);
  if (!table.is_ok()) co_return co_await image_->fail(table.status());
  for (const ClusterPlan& p : plans) {
    image_->l2().set_entry(table.value(), p.cluster_off, p.updated);
    if (external || p.action != Action::kNew) continue;
    // The old cluster loses this reference once the new entry is durable.
    if (p.old.compressed()) {
      const uint64_t coff = p.old.compressed_offset(g);
      const uint64_t clen = p.old.compressed_length(g);
      for (uint64_t c = coff >> g.cluster_bits; c <= (coff + clen - 1) >> g.cluster_bits; ++c) {
        image_->refcounts().defer_decrement(c);
      }
    } else if (p.old.host_offset() != 0) {
      image_->refcounts().defer_decrement(p.old.host_offset() >> g.cluster_bits);
    }
  }
  co_return Status::ok();
}

Task<Status> Qcow2Node::write_cluster(uint64_t cluster_off, const L2Entry& old, ClusterAction action,
                                      uint64_t host, bool fresh, uint64_t seg_begin,
                                      std::span<const std::byte> part, L2Entry& updated) {
  const Geometry& g = image_->geometry();
  BlockNode& data = image_->data();
  const uint64_t co = seg_begin - cluster_off;
  const uint64_t ce = co + part.size();
  const uint64_t cs = g.cluster_size;

  // True when the bytes of [from, co) and [ce, to) are known to read as zeroes from the
  // entry alone (zero subclusters, or unallocated ones with no backing data there).
  BlockNode* backing = image_->backing();
  auto known_zero = [&](uint64_t from, uint64_t to) {
    for (auto [a, b] : {std::pair{from, co}, std::pair{ce, to}}) {
      for (uint64_t pos = a; pos < b;) {
        const uint32_t sc = g.subcluster_index(cluster_off + pos);
        const uint64_t sc_end = std::min<uint64_t>(b, (uint64_t{sc} + 1) * g.subcluster_size);
        const SubclusterType t = old.type(g, sc);
        if (reads_from_backing(t) ? (backing && cluster_off + pos < backing->size())
                                  : !reads_as_zero(t)) {
          return false;
        }
        pos = sc_end;
      }
    }
    return true;
  };
  // Writes [from, to) of the cluster at `host`: `part` in the middle, the rest as it
  // reads now. Only `part` is written when the rest reads as zeroes and the host bytes
  // are fresh (zero already), so copying from an empty backing range costs nothing.
  // `host_fresh`: the host bytes of [from, to) read as zeroes already.
  auto write_region = [&](uint64_t from, uint64_t to, bool old_is_zero,
                          bool host_fresh) -> Task<Status> {
    if (from == co && to == ce) co_return co_await data.write(host + co, part, IoFlags::kNone);
    if (old_is_zero && host_fresh) co_return co_await data.write(host + co, part, IoFlags::kNone);
    std::vector<std::byte> region(to - from);
    if (!old_is_zero) {
      if (co > from) {
        FLEECE_CO_RETURN_IF_ERROR(co_await read_old(cluster_off, old, cluster_off + from,
                                                    cluster_off + co, std::span(region).first(co - from)));
      }
      if (to > ce) {
        FLEECE_CO_RETURN_IF_ERROR(co_await read_old(cluster_off, old, cluster_off + ce, cluster_off + to,
                                                    std::span(region).subspan(ce - from)));
      }
      if (host_fresh && all_zero(region)) co_return co_await data.write(host + co, part, IoFlags::kNone);
    }
    std::memcpy(region.data() + (co - from), part.data(), part.size());
    co_return co_await data.write(host + from, region, IoFlags::kNone);
  };

  if (!g.extended_l2) {
    updated.word = host | kFlagCopied;
    updated.bitmap = 0;
    if (action == Action::kInPlace) co_return co_await data.write(host + co, part, IoFlags::kNone);
    co_return co_await write_region(0, cs, known_zero(0, cs), fresh);
  }

  // Extended L2: work in whole subclusters.
  const uint64_t scs = g.subcluster_size;
  const uint32_t s0 = static_cast<uint32_t>(co / scs);
  const uint32_t s1 = static_cast<uint32_t>((ce - 1) / scs);
  const uint32_t touched = subcluster_mask(s0, s1);
  const uint64_t from = uint64_t{s0} * scs;
  const uint64_t to = (uint64_t{s1} + 1) * scs;
  updated.word = host | kFlagCopied;
  if (action == Action::kInPlace) {
    updated.bitmap = (uint64_t{old.zero_bits() & ~touched} << 32) | (old.alloc_bits() | touched);
    bool all_normal = true;
    for (uint32_t sc = s0; sc <= s1; ++sc) all_normal &= old.type(g, sc) == SubclusterType::kNormal;
    if (all_normal) co_return co_await data.write(host + co, part, IoFlags::kNone);
    const bool zero = known_zero(from, to);
    // The host cluster already holds other subclusters' data: never fresh.
    co_return co_await write_region(from, to, zero, /*host_fresh=*/false);
  }
  if (old.compressed() || old.has_host(g)) {
    // A compressed or shared cluster: the new one holds every subcluster.
    updated.bitmap = kAllSubclusters;
    co_return co_await write_region(0, cs, false, fresh);
  }
  // No host cluster yet: only the touched subclusters get data.
  updated.bitmap = (uint64_t{old.zero_bits() & ~touched} << 32) | touched;
  co_return co_await write_region(from, to, known_zero(from, to), fresh);
}

}  // namespace blockcore::qcow2
