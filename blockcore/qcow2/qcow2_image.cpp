#include "blockcore/qcow2/qcow2_image.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/reference_scan.h"

namespace blockcore::qcow2 {
namespace {

// Header field offsets written in place.
constexpr uint64_t kRefcountTableOffsetField = 48;
constexpr uint64_t kIncompatibleFeaturesField = 72;
constexpr uint64_t kAutoclearFeaturesField = 88;

}  // namespace

Image::Image(std::string node_name, Header header, ImageFiles files, bool read_only,
             size_t l2_cache_tables, size_t refblock_cache_tables)
    : node_name_(std::move(node_name)),
      header_(std::move(header)),
      g_(Geometry::from(header_)),
      files_(std::move(files)),
      read_only_(read_only),
      map_(g_.cluster_size),
      refcounts_(*files_.file, g_, map_, refblock_cache_tables),
      l2_(*files_.file, g_, map_, refcounts_, l2_cache_tables) {
  marked_dirty_ = (header_.incompatible_features & kIncompatDirty) != 0;
  refcounts_.set_table_location_writer(
      [this](uint64_t off, uint32_t clusters) { return write_table_location(off, clusters); });
  auto make_room = [this]() -> Task<Status> { co_return co_await write_back(); };
  refcounts_.cache().set_make_room(make_room);
  l2_.cache().set_make_room(make_room);
  // The overlap check before every table write.
  l2_.cache().set_write_check([this](uint64_t off, uint64_t len) {
    Status s = map_.check_except(off, len, MetadataKind::kActiveL2, off);
    return s.is_ok() ? s : Status::error(EUCLEAN, s.message());
  });
  refcounts_.cache().set_write_check([this](uint64_t off, uint64_t len) {
    Status s = map_.check_except(off, len, MetadataKind::kRefcountBlock, off);
    return s.is_ok() ? s : Status::error(EUCLEAN, s.message());
  });
}

Task<Status> Image::load() {
  const uint64_t file_size = files_.file->size();
  auto inside = [&](uint64_t off, uint64_t len, const char* what) -> Status {
    if (off > file_size || len > file_size - off) {
      return Status::invalid(std::string(what) + " at offset " + std::to_string(off) + " (" +
                             std::to_string(len) + " bytes) lies past the end of the file (" +
                             std::to_string(file_size) + " bytes)");
    }
    return Status::ok();
  };
  const uint64_t l1_bytes = uint64_t{header_.l1_size} * 8;
  const uint64_t rt_bytes = uint64_t{header_.refcount_table_clusters} * g_.cluster_size;
  FLEECE_CO_RETURN_IF_ERROR(inside(header_.l1_table_offset, l1_bytes, "the L1 table"));
  FLEECE_CO_RETURN_IF_ERROR(inside(header_.refcount_table_offset, rt_bytes, "the refcount table"));
  if (header_.refcount_table_clusters == 0) co_return Status::invalid("the refcount table is empty");

  map_.add_range(MetadataKind::kHeader, 0, g_.cluster_size);
  if (header_.crypto_header) {
    map_.add_range(MetadataKind::kHeader, header_.crypto_header->first, header_.crypto_header->second);
  }
  // Tables must not overlap each other or the header.
  if (Status s = map_.check(header_.l1_table_offset, l1_bytes); !s.is_ok()) {
    co_return Status::invalid("the L1 table overlaps other metadata: " + s.message());
  }
  map_.add_range(MetadataKind::kActiveL1, header_.l1_table_offset, l1_bytes);
  if (Status s = map_.check(header_.refcount_table_offset, rt_bytes); !s.is_ok()) {
    co_return Status::invalid("the refcount table overlaps other metadata: " + s.message());
  }
  map_.add_range(MetadataKind::kRefcountTable, header_.refcount_table_offset, rt_bytes);

  if (header_.nb_snapshots > 0) {
    if (header_.snapshots_offset >= file_size) {
      co_return Status::invalid("the snapshot table lies past the end of the file");
    }
    const uint64_t want = std::min<uint64_t>(file_size - header_.snapshots_offset,
                                             max_snapshot_table_bytes(header_.nb_snapshots));
    std::vector<std::byte> raw(want);
    FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->read(header_.snapshots_offset, raw));
    Result<std::vector<SnapshotEntry>> snaps = parse_snapshot_table(raw, header_.nb_snapshots, g_);
    if (!snaps.is_ok()) co_return snaps.status();
    snapshots_ = std::move(snaps.value());
    const uint64_t table_bytes = snapshot_table_bytes(snapshots_);
    map_.add_range(MetadataKind::kSnapshotTable, header_.snapshots_offset, table_bytes);
    for (const SnapshotEntry& s : snapshots_) {
      FLEECE_CO_RETURN_IF_ERROR(
          inside(s.l1_table_offset, uint64_t{s.l1_size} * 8, "a snapshot's L1 table"));
      map_.add_range(MetadataKind::kInactiveL1, s.l1_table_offset, uint64_t{s.l1_size} * 8);
    }
  }
  if (header_.bitmaps) {
    FLEECE_CO_RETURN_IF_ERROR(inside(header_.bitmaps->directory_offset,
                                     header_.bitmaps->directory_size, "the bitmap directory"));
    map_.add_range(MetadataKind::kBitmapDirectory, header_.bitmaps->directory_offset,
                   header_.bitmaps->directory_size);
  }
  FLEECE_CO_RETURN_IF_ERROR(
      co_await refcounts_.load(header_.refcount_table_offset, header_.refcount_table_clusters));
  FLEECE_CO_RETURN_IF_ERROR(co_await l2_.load_l1(header_.l1_table_offset, header_.l1_size));
  co_return Status::ok();
}

Task<Status> Image::sync() {
  FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->flush());
  if (files_.data_file) FLEECE_CO_RETURN_IF_ERROR(co_await files_.data_file->flush());
  co_return Status::ok();
}

Task<Status> Image::write_header_u64(uint64_t offset, uint64_t value) {
  std::byte buf[8];
  store_be64(buf, value);
  co_return co_await files_.file->write(offset, buf, IoFlags::kNone);
}

Task<Status> Image::write_table_location(uint64_t offset, uint32_t clusters) {
  std::byte buf[12];
  store_be64(buf, offset);
  store_be32(buf + 8, clusters);
  FLEECE_CO_RETURN_IF_ERROR(
      co_await files_.file->write(kRefcountTableOffsetField, buf, IoFlags::kNone));
  FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->flush());
  header_.refcount_table_offset = offset;
  header_.refcount_table_clusters = clusters;
  co_return Status::ok();
}

Task<Status> Image::clear_unknown_autoclear_bits() {
  // Any autoclear bit nobody here knows is cleared, as the spec demands of a writer.
  // The bitmap bits stay: the bitmap store maintains what they vouch for.
  const uint64_t autoclear = header_.autoclear_features & kAutoclearKnown;
  if (autoclear == header_.autoclear_features) co_return Status::ok();
  FLEECE_CO_RETURN_IF_ERROR(co_await write_header_u64(kAutoclearFeaturesField, autoclear));
  FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->flush());
  header_.autoclear_features = autoclear;
  co_return Status::ok();
}

Task<Status> Image::prepare_for_use() {
  FLEECE_CO_RETURN_IF_ERROR(co_await load());
  if (read_only_) co_return Status::ok();
  if (header_.version >= 3) FLEECE_CO_RETURN_IF_ERROR(co_await clear_unknown_autoclear_bits());
  // A dirty bit means a crash (or QEMU's lazy refcounts): rebuild the refcounts. v2
  // images have no dirty bit to tell a crash by, so every read-write open checks them.
  const bool dirty = (header_.incompatible_features & kIncompatDirty) != 0;
  if (!dirty && header_.version >= 3) co_return Status::ok();
  Result<uint64_t> fixed = co_await repair_refcounts();
  if (!fixed.is_ok()) {
    co_return dirty ? fixed.status().with_context("not closed cleanly") : fixed.status();
  }
  if (dirty || fixed.value() > 0) {
    spdlog::info("{}: '{}' {}; refcounts checked, {} corrected", node_name_,
                 files_.file->describe(),
                 dirty ? "was not closed cleanly" : "is a v2 image (no dirty bit)", fixed.value());
  }
  co_return Status::ok();
}

Task<Status> Image::rewrite_header(const std::function<void(Header&)>& edit) {
  if (corrupt_) co_return Status::io_error(node_name_ + ": the image is marked corrupt");
  if (read_only_) co_return Status::read_only(node_name_ + ": the image is read-only");
  Header h = header_;
  edit(h);
  Result<std::vector<std::byte>> bytes = serialize_header(h);
  if (!bytes.is_ok()) co_return bytes.status();
  // Zeroes after the end marker up to the old header's reach (a sector at least), so no
  // stale extension bytes are left behind in cluster 0.
  std::vector<std::byte> out = std::move(bytes.value());
  out.resize(std::min<uint64_t>(g_.cluster_size, std::max<uint64_t>(out.size() + 511, 4096)) &
             ~uint64_t{511});
  if (Status s = map_.check_except(0, out.size(), MetadataKind::kHeader, 0); !s.is_ok()) {
    co_return co_await fail(Status::error(EUCLEAN, "header rewrite: " + s.message()));
  }
  FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->write(0, out, IoFlags::kNone));
  FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->flush());
  header_ = std::move(h);
  co_return Status::ok();
}

Task<Status> Image::prepare_modify() {
  if (corrupt_) co_return Status::io_error(node_name_ + ": the image is marked corrupt");
  if (read_only_) co_return Status::read_only(node_name_ + ": the image is read-only");
  if (marked_dirty_ || header_.version < 3) co_return Status::ok();
  const uint64_t incompat = header_.incompatible_features | kIncompatDirty;
  FLEECE_CO_RETURN_IF_ERROR(co_await write_header_u64(kIncompatibleFeaturesField, incompat));
  FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->flush());
  header_.incompatible_features = incompat;
  marked_dirty_ = true;
  co_return Status::ok();
}

bool Image::metadata_dirty() const {
  return refcounts_.dirty() || l2_.tables_dirty() || l2_.l1_dirty() || refcounts_.has_deferred();
}

Task<Status> Image::write_back() {
  if (corrupt_) co_return Status::io_error(node_name_ + ": the image is marked corrupt");
  if (!refcounts_.dirty() && !l2_.tables_dirty() && !l2_.l1_dirty() && !refcounts_.has_deferred()) {
    co_return Status::ok();
  }
  Status s = co_await [&]() -> Task<Status> {
    FLEECE_CO_RETURN_IF_ERROR(co_await refcounts_.write_blocks());
    FLEECE_CO_RETURN_IF_ERROR(co_await sync());
    FLEECE_CO_RETURN_IF_ERROR(co_await refcounts_.write_table());
    FLEECE_CO_RETURN_IF_ERROR(co_await l2_.write_tables());
    if (l2_.l1_dirty()) {
      FLEECE_CO_RETURN_IF_ERROR(co_await sync());
      FLEECE_CO_RETURN_IF_ERROR(co_await l2_.write_l1());
    }
    FLEECE_CO_RETURN_IF_ERROR(co_await sync());
    // Every dropped reference is durable now: apply the decrements it allows.
    if (refcounts_.has_deferred()) {
      Result<std::vector<uint64_t>> freed = co_await refcounts_.apply_deferred();
      if (!freed.is_ok()) co_return freed.status();
      for (uint64_t c : freed.value()) {
        const uint64_t off = c << g_.cluster_bits;
        l2_.cache().drop(off);
        // Give the space back to the filesystem; a failure only costs space.
        (void)co_await files_.file->discard(off, g_.cluster_size, IoFlags::kNone);
      }
      // Written now (no sync needed: a crash before it only leaks the freed clusters),
      // so an idle image rarely carries leaks into a crash.
      FLEECE_CO_RETURN_IF_ERROR(co_await refcounts_.write_blocks());
    }
    co_return Status::ok();
  }();
  if (!s.is_ok()) co_return co_await fail(s);
  co_return s;
}

Task<Status> Image::fail(const Status& s) {
  if (s.code() != EUCLEAN) co_return s;
  co_return co_await mark_corrupt(s.message());
}

Task<Status> Image::mark_corrupt(const std::string& why) {
  const std::string msg = node_name_ + ": corruption detected, image marked corrupt and read-only: " + why;
  if (!corrupt_) {
    corrupt_ = true;
    spdlog::error("{}", msg);
    if (!read_only_ && header_.version >= 3) {
      const uint64_t incompat = header_.incompatible_features | kIncompatCorrupt;
      Status s = co_await write_header_u64(kIncompatibleFeaturesField, incompat);
      if (s.is_ok()) s = co_await files_.file->flush();
      if (s.is_ok()) header_.incompatible_features = incompat;
    }
    read_only_ = true;
    if (on_corrupt_) on_corrupt_(msg);
  }
  co_return Status::io_error(msg);
}

Task<Status> Image::close() {
  if (read_only_ || corrupt_) co_return Status::ok();
  // Twice: the first pass applies deferred decrements, whose blocks the second writes.
  for (int pass = 0; pass < 3 && metadata_dirty(); ++pass) {
    FLEECE_CO_RETURN_IF_ERROR(co_await write_back());
  }
  FLEECE_CO_RETURN_IF_ERROR(co_await sync());
  if (marked_dirty_ && header_.version >= 3) {
    const uint64_t incompat = header_.incompatible_features & ~kIncompatDirty;
    FLEECE_CO_RETURN_IF_ERROR(co_await write_header_u64(kIncompatibleFeaturesField, incompat));
    FLEECE_CO_RETURN_IF_ERROR(co_await files_.file->flush());
    header_.incompatible_features = incompat;
    marked_dirty_ = false;
  }
  co_return Status::ok();
}

Task<Result<uint64_t>> Image::repair_refcounts() {
  Result<ReferenceScan> scan = co_await scan_references(*files_.file, header_, g_, l2_.l1(),
                                                        refcounts_.table(), snapshots_);
  if (!scan.is_ok()) co_return scan.status();
  if (!scan.value().problems.empty()) {
    co_return Status::invalid("the image needs repair beyond refcounts (" +
                              scan.value().problems.front() + "); run 'qemu-img check -r all'");
  }
  const std::vector<uint32_t>& refs = scan.value().refs;
  refcounts_.set_repairing(true);
  uint64_t fixed = 0;
  const uint64_t clusters = std::max<uint64_t>(refs.size(), refcounts_.file_clusters());
  for (uint64_t c = 0; c < clusters; ++c) {
    const uint64_t want = c < refs.size() ? refs[c] : 0;
    Result<uint64_t> have = co_await refcounts_.get(c);
    if (!have.is_ok()) co_return have.status();
    if (have.value() == want) continue;
    FLEECE_CO_RETURN_IF_ERROR(co_await refcounts_.set(c, want));
    ++fixed;
  }
  refcounts_.set_repairing(false);
  if (fixed) FLEECE_CO_RETURN_IF_ERROR(co_await write_back());
  co_return fixed;
}

}  // namespace blockcore::qcow2
