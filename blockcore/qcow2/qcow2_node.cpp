#include "blockcore/qcow2/qcow2_node.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "blockcore/base/run_blocking.h"
#include "blockcore/qcow2/compression.h"

namespace blockcore::qcow2 {
Qcow2Node::Qcow2Node(const std::string& name, std::unique_ptr<Image> image, const NodeInfo& info)
    : BlockNode(name, "qcow2"), image_(std::move(image)) {
  set_info(info);
  add_child(ChildRole::kFile, image_->files().file);
  if (image_->files().data_file) add_child(ChildRole::kDataFile, image_->files().data_file);
  if (image_->files().backing) add_child(ChildRole::kBacking, image_->files().backing);
}

Qcow2Node::~Qcow2Node() {
  Status s = close_blocking();
  if (!s.is_ok()) spdlog::error("{}: closing the image failed: {}", name(), s.to_string());
}

Status Qcow2Node::close_blocking() {
  return run_blocking<Status>([this]() -> Task<Status> {
    // The bitmaps first: the store writes through the image.
    Status bitmaps_stored = co_await bitmaps().close_store();
    AsyncMutex::Guard g = co_await image_->meta_lock().lock();
    Status closed = co_await image_->close();
    co_return bitmaps_stored.is_ok() ? closed : bitmaps_stored;
  });
}

void Qcow2Node::append_cluster_runs(uint64_t cluster_off, const L2Entry& e, uint64_t begin,
                                    uint64_t end, std::vector<Run>& runs) const {
  const Geometry& g = image_->geometry();
  for (uint64_t pos = begin; pos < end;) {
    const uint32_t sc = g.subcluster_index(pos);
    const uint64_t sc_end = std::min(end, cluster_off + (uint64_t{sc} + 1) * g.subcluster_size);
    Run r;
    r.guest_off = pos;
    r.length = sc_end - pos;
    r.type = e.type(g, sc);
    r.entry = e;
    if (has_host_bytes(r.type)) r.host_off = e.host_offset() + (pos - cluster_off);
    Run* last = runs.empty() ? nullptr : &runs.back();
    const bool merge = last && last->type == r.type && r.type != SubclusterType::kCompressed &&
                       last->guest_off + last->length == r.guest_off &&
                       last->entry.copied() == r.entry.copied() &&
                       (!has_host_bytes(r.type) || last->host_off + last->length == r.host_off);
    if (merge) {
      last->length += r.length;
    } else {
      runs.push_back(r);
    }
    pos = sc_end;
  }
}

Task<Status> Qcow2Node::map_range(uint64_t off, uint64_t len, std::vector<Run>& runs) {
  const Geometry& g = image_->geometry();
  runs.clear();
  std::vector<L2Entry> entries;
  const uint64_t end = off + len;
  uint64_t pos = off;
  while (pos < end) {
    const uint64_t first = g.cluster_start(pos);
    const size_t want = static_cast<size_t>(((end - first) + g.cluster_size - 1) >> g.cluster_bits);
    FLEECE_CO_RETURN_IF_ERROR(co_await image_->l2().read_entries(first, want, entries));
    for (size_t i = 0; i < entries.size() && pos < end; ++i) {
      const uint64_t cluster_off = first + (uint64_t{i} << g.cluster_bits);
      const uint64_t cluster_end = std::min(end, cluster_off + g.cluster_size);
      if (entries[i].type(g, g.subcluster_index(pos)) == SubclusterType::kInvalid &&
          !g.extended_l2) {
        co_return Status::error(EUCLEAN, "invalid L2 entry for guest offset " +
                                              std::to_string(cluster_off));
      }
      append_cluster_runs(cluster_off, entries[i], pos, cluster_end, runs);
      pos = cluster_end;
    }
  }
  for (const Run& r : runs) {
    if (r.type == SubclusterType::kInvalid) {
      co_return Status::error(EUCLEAN, "invalid L2 entry for guest offset " +
                                           std::to_string(r.guest_off));
    }
  }
  co_return Status::ok();
}

Task<Status> Qcow2Node::read_backing(uint64_t off, std::span<std::byte> out) {
  BlockNode* backing = image_->backing();
  const uint64_t bsize = backing ? backing->size() : 0;
  size_t have = 0;
  if (off < bsize) {
    have = static_cast<size_t>(std::min<uint64_t>(out.size(), bsize - off));
    FLEECE_CO_RETURN_IF_ERROR(co_await backing->read(off, out.first(have)));
  }
  if (have < out.size()) std::memset(out.data() + have, 0, out.size() - have);
  co_return Status::ok();
}

Task<Status> Qcow2Node::read_compressed(const L2Entry& e, std::span<std::byte> cluster) {
  const Geometry& g = image_->geometry();
  BlockNode& file = image_->file();
  const uint64_t coff = e.compressed_offset(g);
  uint64_t clen = e.compressed_length(g);
  if (coff >= file.size()) {
    co_return Status::error(EUCLEAN, "compressed cluster at " + std::to_string(coff) +
                                          " lies past the end of the file");
  }
  clen = std::min(clen, file.size() - coff);
  std::vector<std::byte> in(clen);
  FLEECE_CO_RETURN_IF_ERROR(co_await file.read(coff, in));
  co_return decompress_cluster(image_->header().compression_type, in, cluster);
}

Task<Status> Qcow2Node::read_run(const Run& r, std::span<std::byte> out) {
  const Geometry& g = image_->geometry();
  switch (r.type) {
    case SubclusterType::kNormal:
      co_return co_await image_->data().read(r.host_off, out);
    case SubclusterType::kZeroPlain:
    case SubclusterType::kZeroAlloc:
      std::memset(out.data(), 0, out.size());
      co_return Status::ok();
    case SubclusterType::kUnallocatedPlain:
    case SubclusterType::kUnallocatedAlloc:
      co_return co_await read_backing(r.guest_off, out);
    case SubclusterType::kCompressed: {
      std::vector<std::byte> cluster(g.cluster_size);
      FLEECE_CO_RETURN_IF_ERROR(co_await read_compressed(r.entry, cluster));
      std::memcpy(out.data(), cluster.data() + g.offset_in_cluster(r.guest_off), out.size());
      co_return Status::ok();
    }
    case SubclusterType::kInvalid:
      break;
  }
  co_return Status::error(EUCLEAN, "invalid L2 entry for guest offset " + std::to_string(r.guest_off));
}

Task<Status> Qcow2Node::read_old(uint64_t cluster_off, const L2Entry& e, uint64_t begin,
                                 uint64_t end, std::span<std::byte> out) {
  std::vector<Run> runs;
  append_cluster_runs(cluster_off, e, begin, end, runs);
  size_t pos = 0;
  for (const Run& r : runs) {
    FLEECE_CO_RETURN_IF_ERROR(co_await read_run(r, out.subspan(pos, r.length)));
    pos += r.length;
  }
  co_return Status::ok();
}

Task<Status> Qcow2Node::do_read(uint64_t off, std::span<std::byte> buf) {
  RangeLock::Guard range = co_await range_lock_.lock(
      cluster_lock_begin(off), cluster_lock_end(off, buf.size()), RangeLock::Mode::kShared);
  std::vector<Run> runs;
  {
    AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
    Status s = co_await map_range(off, buf.size(), runs);
    if (!s.is_ok()) co_return co_await image_->fail(s);
  }
  size_t pos = 0;
  for (const Run& r : runs) {
    Status s = co_await read_run(r, buf.subspan(pos, r.length));
    if (!s.is_ok()) {
      if (s.code() == EUCLEAN) {
        AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
        co_return co_await image_->fail(s);
      }
      co_return s;
    }
    pos += r.length;
  }
  co_return Status::ok();
}

Task<Result<ExtentList>> Qcow2Node::do_block_status(uint64_t off, uint64_t len) {
  // Bound the work of one call; callers ask again for the rest.
  const Geometry& g = image_->geometry();
  len = std::min<uint64_t>(len, std::max<uint64_t>(g.l2_span(), 1ull << 30));
  std::vector<Run> runs;
  {
    RangeLock::Guard range = co_await range_lock_.lock(
        cluster_lock_begin(off), cluster_lock_end(off, len), RangeLock::Mode::kShared);
    AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
    Status s = co_await map_range(off, len, runs);
    if (!s.is_ok()) co_return co_await image_->fail(s);
  }
  ExtentList out;
  BlockNode* backing = image_->backing();
  for (const Run& r : runs) {
    if (reads_as_zero(r.type)) {
      append_extent(out, Extent{r.length, kExtentZero | kExtentHole, 1});
    } else if (!reads_from_backing(r.type)) {
      append_extent(out, Extent{r.length, 0, 1});
    } else {
      // Unallocated here: what the backing chain says, one layer deeper.
      uint64_t pos = r.guest_off;
      const uint64_t end = r.guest_off + r.length;
      const uint64_t bsize = backing ? backing->size() : 0;
      while (pos < end && pos < bsize) {
        Result<ExtentList> sub = co_await backing->block_status(pos, std::min(end, bsize) - pos);
        if (!sub.is_ok()) co_return sub.status();
        for (const Extent& e : sub.value()) {
          append_extent(out, Extent{e.length, e.flags, e.depth == 0 ? 0u : e.depth + 1});
          pos += e.length;
        }
      }
      if (pos < end) append_extent(out, Extent{end - pos, kExtentZero | kExtentHole, 0});
    }
  }
  co_return out;
}

Task<Status> Qcow2Node::do_flush() {
  AsyncMutex::Guard meta = co_await image_->meta_lock().lock();
  if (!image_->read_only() && image_->metadata_dirty()) {
    co_return co_await image_->write_back();  // ends with a sync of every file
  }
  FLEECE_CO_RETURN_IF_ERROR(co_await image_->file().flush());
  if (image_->external_data()) FLEECE_CO_RETURN_IF_ERROR(co_await image_->data().flush());
  co_return Status::ok();
}

Task<Status> Qcow2Node::do_cache(uint64_t, uint64_t) { co_return Status::ok(); }

}  // namespace blockcore::qcow2
