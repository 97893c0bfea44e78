// Where stored bitmaps live in the image: building fully populated layouts (data clusters
// and table), writing content into them, publishing a new directory through the header,
// and freeing what a replaced layout leaves (see qcow2_bitmap_store.h for the order).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "blockcore/qcow2/qcow2_image.h"

namespace blockcore::qcow2 {
namespace {

// Largest single write of bitmap data or of a directory.
constexpr uint64_t kWriteChunk = 4ull << 20;

std::string num(uint64_t v) { return std::to_string(v); }

Task<Status> write_chunked(BlockNode& file, uint64_t off, std::span<const std::byte> data) {
  for (uint64_t pos = 0; pos < data.size(); pos += kWriteChunk) {
    const uint64_t n = std::min<uint64_t>(kWriteChunk, data.size() - pos);
    FLEECE_CO_RETURN_IF_ERROR(co_await file.write(off + pos, data.subspan(pos, n), IoFlags::kNone));
  }
  co_return Status::ok();
}

// Allocates `clusters` contiguous clusters, or ENOSPC when that is more than one run
// the refcount structure can give (only with tiny clusters and huge bitmaps).
Task<Result<uint64_t>> allocate_run(Image& image, uint64_t clusters, const std::string& what) {
  if (clusters > image.refcounts().max_run()) {
    co_return Status::no_space(what + " needs " + num(clusters) +
                               " contiguous clusters, more than this image's cluster size "
                               "allows in one piece; use a larger granularity");
  }
  Result<uint64_t> off = co_await image.refcounts().allocate(clusters);
  if (!off.is_ok()) co_return co_await image.fail(off.status());
  co_return off;
}

}  // namespace

Task<Status> Qcow2BitmapStore::build_layout(Stored& s, const HBitmap& content, bool reuse,
                                            Garbage& garbage) {
  const Geometry& g = image_.geometry();
  const uint64_t cs = g.cluster_size;
  const uint64_t want = bitmap_table_entries_for(g.disk_size, s.entry.granularity(), cs);
  std::vector<uint64_t> table(want, 0);
  std::vector<size_t> missing;
  for (size_t i = 0; i < want; ++i) {
    const uint64_t old = i < s.table.size() ? (s.table[i] & kBitmapTableOffsetMask) : 0;
    if (reuse && old != 0) {
      table[i] = old;
    } else {
      missing.push_back(i);
    }
  }
  for (size_t i = 0; i < s.table.size(); ++i) {
    const uint64_t old = s.table[i] & kBitmapTableOffsetMask;
    if (old != 0 && (!reuse || i >= want)) garbage.clusters.push_back(old);
  }
  // New data clusters, in runs of consecutive table entries, each run written at once.
  std::vector<std::byte> buf;
  const std::string what = "bitmap '" + s.entry.name + "'";
  for (size_t k = 0; k < missing.size();) {
    size_t n = 1;
    while (k + n < missing.size() && missing[k + n] == missing[k] + n &&
           n < image_.refcounts().max_run() && (n + 1) * cs <= kWriteChunk) {
      ++n;
    }
    Result<uint64_t> off = co_await allocate_run(image_, n, what + " data");
    if (!off.is_ok()) co_return off.status();
    buf.assign(n * cs, std::byte{0});
    content.serialize(missing[k] * cs * 8, buf);
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().write(off.value(), buf, IoFlags::kNone));
    for (size_t j = 0; j < n; ++j) {
      table[missing[k + j]] = off.value() + j * cs;
      image_.map().add_cluster(MetadataKind::kBitmapData, off.value() + j * cs);
    }
    k += n;
  }
  // A new table unless the old one says exactly this already.
  bool same = s.entry.table_offset != 0 && s.table.size() == want;
  for (size_t i = 0; same && i < want; ++i) same = s.table[i] == table[i];
  if (!same) {
    const uint64_t clusters = (want * 8 + cs - 1) / cs;
    Result<uint64_t> off = co_await allocate_run(image_, clusters, what + " table");
    if (!off.is_ok()) co_return off.status();
    FLEECE_CO_RETURN_IF_ERROR(
        co_await write_chunked(image_.file(), off.value(), serialize_bitmap_table(table, clusters * cs)));
    image_.map().add_range(MetadataKind::kBitmapTable, off.value(), want * 8);
    if (s.entry.table_offset != 0) {
      garbage.tables.emplace_back(s.entry.table_offset,
                                  (uint64_t{s.entry.table_size} * 8 + cs - 1) / cs);
    }
    s.entry.table_offset = off.value();
    s.entry.table_size = static_cast<uint32_t>(want);
  }
  s.table = std::move(table);
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::write_content(const Stored& s, const HBitmap& content) {
  const uint64_t cs = image_.geometry().cluster_size;
  std::vector<std::byte> buf;
  for (size_t i = 0; i < s.table.size();) {
    const uint64_t off = s.table[i] & kBitmapTableOffsetMask;
    size_t n = 1;
    while (i + n < s.table.size() && (n + 1) * cs <= kWriteChunk &&
           (s.table[i + n] & kBitmapTableOffsetMask) == off + n * cs) {
      ++n;
    }
    buf.assign(n * cs, std::byte{0});
    content.serialize(i * cs * 8, buf);
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().write(off, buf, IoFlags::kNone));
    i += n;
  }
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::publish(std::vector<Stored>& next, bool closing, bool* recorded) {
  const Geometry& g = image_.geometry();
  const uint64_t cs = g.cluster_size;
  const std::optional<BitmapsExtension> old = image_.header().bitmaps;
  *recorded = false;
  auto drop_other_records = [](Header& h) {
    std::erase_if(h.unknown_extensions,
                  [](const RawExtension& e) { return e.type == kExtFleeceBitmaps; });
  };

  if (next.empty()) {
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.rewrite_header([&](Header& h) {
      h.bitmaps.reset();
      h.fleece_bitmaps.reset();
      drop_other_records(h);
      h.autoclear_features &= ~(kAutoclearBitmaps | kAutoclearFleeceBitmaps);
    }));
  } else {
    // The flags each entry gets: a maintained bitmap its state (in_use while fleeced has
    // the image, auto = enabled); any other keeps its flags, in_use set.
    std::vector<BitmapDirEntry> dir;
    FleeceBitmapsRecord record;
    for (const Stored& s : next) {
      BitmapDirEntry e = s.entry;
      if (s.maintained) {
        e.flags = (e.flags & kBitmapFlagExtraDataCompatible) |
                  (s.bitmap->enabled() ? kBitmapFlagAuto : 0) | (closing ? 0 : kBitmapFlagInUse);
      } else {
        e.flags |= kBitmapFlagInUse;
      }
      record.crash_safe.push_back(s.maintained);
      dir.push_back(std::move(e));
    }
    Result<std::vector<std::byte>> bytes = serialize_bitmap_directory(dir, cs, g.disk_size);
    if (!bytes.is_ok()) co_return bytes.status();
    const uint64_t size = bytes.value().size();
    const uint64_t clusters = (size + cs - 1) / cs;
    Result<uint64_t> off = co_await allocate_run(image_, clusters, "the bitmap directory");
    if (!off.is_ok()) co_return off.status();
    bytes.value().resize(clusters * cs);
    Status s = co_await write_chunked(image_.file(), off.value(), bytes.value());
    image_.map().add_range(MetadataKind::kBitmapDirectory, off.value(), size);
    // The directory and its refcounts durable before the header points at it.
    if (s.is_ok()) s = co_await image_.write_back();
    if (s.is_ok()) s = co_await image_.sync();
    record.directory_offset = off.value();
    const bool want_record = !closing && record_fits_;
    auto edit = [&](bool with_record) {
      return [&, with_record](Header& h) {
        h.bitmaps = BitmapsExtension{static_cast<uint32_t>(dir.size()), size, off.value()};
        h.autoclear_features |= kAutoclearBitmaps;
        drop_other_records(h);
        if (with_record) {
          h.fleece_bitmaps = record;
          h.autoclear_features |= kAutoclearFleeceBitmaps;
        } else {
          h.fleece_bitmaps.reset();
          h.autoclear_features &= ~kAutoclearFleeceBitmaps;
        }
      };
    };
    if (s.is_ok()) {
      s = co_await image_.rewrite_header(edit(want_record));
      if (!s.is_ok() && s.code() == EINVAL && want_record) {
        spdlog::warn("{}: fleece's crash-safe record does not fit in the header cluster; "
                     "bitmaps are kept exact on close only (a crash leaves them "
                     "inconsistent)", description_);
        record_fits_ = false;
        s = co_await image_.rewrite_header(edit(false));
      } else if (s.is_ok()) {
        *recorded = want_record;
      }
    }
    if (!s.is_ok()) {
      // Not referenced by the header: give the new directory back.
      image_.map().remove_range(MetadataKind::kBitmapDirectory, off.value());
      for (uint64_t c = 0; c < clusters; ++c) {
        image_.refcounts().defer_decrement((off.value() >> g.cluster_bits) + c);
      }
      co_return s;
    }
    for (size_t i = 0; i < next.size(); ++i) next[i].entry.flags = dir[i].flags;
  }
  if (old) {
    image_.map().remove_range(MetadataKind::kBitmapDirectory, old->directory_offset);
    const uint64_t clusters = (old->directory_size + cs - 1) / cs;
    for (uint64_t c = 0; c < clusters; ++c) {
      image_.refcounts().defer_decrement((old->directory_offset >> g.cluster_bits) + c);
    }
  }
  // Applies the frees; a failure only leaks, the new state is durable.
  if (Status w = co_await image_.write_back(); !w.is_ok()) {
    spdlog::warn("{}: freeing the old bitmap directory failed (the space leaks until the "
                 "next open): {}", description_, w.to_string());
  }
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::free_garbage(const Garbage& garbage) {
  const Geometry& g = image_.geometry();
  for (uint64_t off : garbage.clusters) {
    image_.map().remove_cluster(MetadataKind::kBitmapData, off);
    image_.refcounts().defer_decrement(off >> g.cluster_bits);
  }
  for (const auto& [off, clusters] : garbage.tables) {
    image_.map().remove_range(MetadataKind::kBitmapTable, off);
    for (uint64_t c = 0; c < clusters; ++c) {
      image_.refcounts().defer_decrement((off >> g.cluster_bits) + c);
    }
  }
  if (garbage.clusters.empty() && garbage.tables.empty()) co_return Status::ok();
  co_return co_await image_.write_back();
}

}  // namespace blockcore::qcow2
