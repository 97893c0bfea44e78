// Opening the qcow2 bitmap store: reading and checking the bitmap directory, the tables
// and the data, deciding which bitmaps are consistent (see qcow2_bitmap_store.h), and the
// take-over of a read-write image (populated layouts, in_use, fleece's record).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "blockcore/qcow2/qcow2_image.h"

namespace blockcore::qcow2 {
namespace {

// Largest single read of bitmap data.
constexpr uint64_t kReadChunk = 4ull << 20;

std::string num(uint64_t v) { return std::to_string(v); }

Status misplaced(const std::string& what, uint64_t off, uint64_t len, const std::string& why) {
  return Status::invalid(what + " at offset " + num(off) + " (" + num(len) + " bytes) " + why);
}

}  // namespace

Qcow2BitmapStore::Qcow2BitmapStore(Image& image, uint64_t disk_size, std::string description)
    : image_(image),
      disk_size_(disk_size),
      description_(std::move(description)),
      read_only_(image.read_only()) {}

Qcow2BitmapStore::~Qcow2BitmapStore() = default;

bool Qcow2BitmapStore::writable() const { return !read_only_; }

Task<Result<Qcow2BitmapStorePtr>> open_bitmap_store(Image& image,
                                                    std::vector<DirtyBitmapPtr>& loaded) {
  co_return co_await Qcow2BitmapStore::open(image, image.geometry().disk_size, loaded);
}

Task<Result<Qcow2BitmapStorePtr>> Qcow2BitmapStore::open(Image& image, uint64_t disk_size,
                                                         std::vector<DirtyBitmapPtr>& loaded) {
  auto store = std::make_shared<Qcow2BitmapStore>(image, disk_size, image.file().describe());
  AsyncMutex::Guard meta = co_await image.meta_lock().lock();
  std::vector<DirtyBitmapPtr> mine;
  if (Status s = co_await store->load(mine); !s.is_ok()) co_return s.with_context("bitmaps");
  if (!store->read_only_ && !store->entries_.empty()) {
    if (Status s = co_await store->take_over(); !s.is_ok()) {
      co_return s.with_context("taking over the persistent bitmaps");
    }
  }
  loaded.insert(loaded.end(), mine.begin(), mine.end());
  co_return store;
}

Task<Status> Qcow2BitmapStore::load(std::vector<DirtyBitmapPtr>& loaded) {
  const Header& h = image_.header();
  if (!h.bitmaps) co_return Status::ok();
  const Geometry& g = image_.geometry();
  const uint64_t cs = g.cluster_size;
  const uint64_t file_size = image_.file().size();
  const BitmapsExtension& ext = *h.bitmaps;
  MetadataMap& map = image_.map();

  // Image::load() checked that the directory lies inside the file and put it in the map.
  if (Status s = map.check_except(ext.directory_offset, ext.directory_size,
                                  MetadataKind::kBitmapDirectory, ext.directory_offset);
      !s.is_ok()) {
    co_return Status::invalid("the bitmap directory overlaps other metadata: " + s.message());
  }
  std::vector<std::byte> dir(ext.directory_size);
  FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().read(ext.directory_offset, dir));
  Result<std::vector<BitmapDirEntry>> parsed =
      parse_bitmap_directory(dir, ext.nb_bitmaps, cs, g.disk_size);
  if (!parsed.is_ok()) co_return parsed.status();

  // The extension is only valid with its autoclear bit (never in v2: no such bits);
  // fleece's record only with both bits and for this very directory.
  const bool valid = (h.autoclear_features & kAutoclearBitmaps) != 0;
  const FleeceBitmapsRecord* record = nullptr;
  if (valid && (h.autoclear_features & kAutoclearFleeceBitmaps) && h.fleece_bitmaps &&
      h.fleece_bitmaps->directory_offset == ext.directory_offset) {
    record = &*h.fleece_bitmaps;
  }
  if (!valid) {
    spdlog::warn("{}: the bitmaps autoclear bit is clear (a program without bitmap support "
                 "wrote the image): every stored bitmap is inconsistent", description_);
  }

  std::vector<Stored> entries;
  for (size_t i = 0; i < parsed.value().size(); ++i) {
    Stored s;
    s.entry = std::move(parsed.value()[i]);
    const BitmapDirEntry& e = s.entry;
    const std::string what = "bitmap '" + e.name + "'";
    if (!e.usable() && !read_only_) {
      co_return Status::invalid(what + " carries extra data not marked compatible, which "
                                "must be left untouched; the image can only be opened read-only");
    }
    // Placement: the table and every data cluster inside the file, apart from all other
    // metadata (and from each other).
    const uint64_t table_bytes = uint64_t{e.table_size} * 8;
    if (e.table_offset > file_size || table_bytes > file_size - e.table_offset) {
      co_return misplaced(what + ": the table", e.table_offset, table_bytes,
                          "lies past the end of the file (" + num(file_size) + " bytes)");
    }
    if (Status o = map.check(e.table_offset, table_bytes); !o.is_ok()) {
      co_return misplaced(what + ": the table", e.table_offset, table_bytes,
                          "overlaps other metadata: " + o.message());
    }
    map.add_range(MetadataKind::kBitmapTable, e.table_offset, table_bytes);
    std::vector<std::byte> raw(table_bytes);
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().read(e.table_offset, raw));
    Result<std::vector<uint64_t>> table = parse_bitmap_table(raw, cs, e.name);
    if (!table.is_ok()) co_return table.status();
    s.table = std::move(table.value());
    bool populated = true;
    for (size_t t = 0; t < s.table.size(); ++t) {
      const uint64_t off = s.table[t] & kBitmapTableOffsetMask;
      if (off == 0) {
        populated = false;
        continue;
      }
      const std::string where = what + ": data cluster " + num(t);
      if (off > file_size || cs > file_size - off) {
        co_return misplaced(where, off, cs, "lies past the end of the file");
      }
      if (Status o = map.check(off, cs); !o.is_ok()) {
        co_return misplaced(where, off, cs, "overlaps other metadata: " + o.message());
      }
      map.add_cluster(MetadataKind::kBitmapData, off);
    }

    auto b = std::make_shared<DirtyBitmap>(e.name, disk_size_, e.granularity());
    b->set_persistent(true);
    b->set_enabled(e.auto_flag());
    s.bitmap = b;
    const bool exact =
        e.table_size == bitmap_table_entries_for(g.disk_size, e.granularity(), cs);
    bool consistent = valid && e.usable() &&
                      (!e.in_use() || (record && i < record->crash_safe.size() &&
                                       record->crash_safe[i]));
    if (consistent && !exact) {
      if (!e.in_use()) {
        co_return Status::invalid(what + ": its table of " + num(e.table_size) +
                                  " entries does not match the virtual size");
      }
      consistent = false;  // fleece's record, but not a layout fleece wrote: distrust it
    }
    if (consistent) {
      FLEECE_CO_RETURN_IF_ERROR(co_await read_content(s));
      s.maintained = !read_only_ && populated && e.in_use();
    } else {
      b->set_inconsistent(true);
    }
    if (read_only_ || h.version < 3 || !e.usable()) b->set_read_only(true);
    if (!consistent) {
      spdlog::warn("{}: bitmap '{}' {}; loaded as inconsistent (every bit dirty)", description_,
                   e.name, !e.usable() ? "has extra data fleece does not know"
                                       : "may be stale (in_use: not saved by its last writer)");
    }
    loaded.push_back(b);
    entries.push_back(std::move(s));
  }
  entries_ = std::move(entries);
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::read_content(const Stored& s) {
  const uint64_t cs = image_.geometry().cluster_size;
  const uint64_t bits_per_cluster = cs * 8;
  DirtyBitmap& b = *s.bitmap;
  std::vector<std::byte> buf;
  for (size_t i = 0; i < s.table.size();) {
    const uint64_t off = s.table[i] & kBitmapTableOffsetMask;
    if (off == 0) {
      if (s.table[i] & kBitmapTableAllOnes) b.mark_granules(i * bits_per_cluster, bits_per_cluster);
      ++i;
      continue;
    }
    // A run of table entries whose clusters follow each other in the file: one read.
    size_t n = 1;
    while (i + n < s.table.size() && (n + 1) * cs <= kReadChunk &&
           (s.table[i + n] & kBitmapTableOffsetMask) == off + n * cs) {
      ++n;
    }
    buf.resize(n * cs);
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().read(off, buf));
    b.deserialize(i * bits_per_cluster, buf);
    i += n;
  }
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::take_over() {
  // v2 images cannot carry a valid bitmaps extension: nothing is rewritten (their
  // bitmaps were loaded inconsistent and read-only).
  if (image_.header().version < 3) co_return Status::ok();
  FLEECE_CO_RETURN_IF_ERROR(co_await image_.prepare_modify());
  std::vector<Stored> next = entries_;
  Garbage garbage;
  for (Stored& s : next) {
    if (s.bitmap->inconsistent() || s.maintained) continue;
    FLEECE_CO_RETURN_IF_ERROR(
        co_await build_layout(s, s.bitmap->snapshot(), /*reuse=*/true, garbage));
    s.maintained = true;
  }
  // New clusters and their refcounts durable before the directory refers to them.
  FLEECE_CO_RETURN_IF_ERROR(co_await image_.write_back());
  FLEECE_CO_RETURN_IF_ERROR(co_await image_.sync());
  bool recorded = false;
  FLEECE_CO_RETURN_IF_ERROR(co_await publish(next, /*closing=*/false, &recorded));
  entries_ = std::move(next);
  for (Stored& s : entries_) s.bitmap->set_durable(s.maintained && recorded);
  Status freed = co_await free_garbage(garbage);
  if (!freed.is_ok()) {
    spdlog::warn("{}: freeing replaced bitmap tables failed (the space leaks until the next "
                 "open): {}", description_, freed.to_string());
  }
  co_return Status::ok();
}

}  // namespace blockcore::qcow2
