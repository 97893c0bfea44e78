// The management operations of the qcow2 bitmap store: create, remove, write_bitmap and
// close, each durable in the crash-safe order of qcow2_bitmap_store.h.
#include "blockcore/qcow2/qcow2_bitmap_store.h"

#include <spdlog/spdlog.h>

#include <bit>

#include "blockcore/qcow2/qcow2_image.h"

namespace blockcore::qcow2 {
namespace {

std::string num(uint64_t v) { return std::to_string(v); }

}  // namespace

Qcow2BitmapStore::Garbage Qcow2BitmapStore::layout_of(const Stored& s) const {
  Garbage g;
  for (uint64_t t : s.table) {
    if (t & kBitmapTableOffsetMask) g.clusters.push_back(t & kBitmapTableOffsetMask);
  }
  const uint64_t cs = image_.geometry().cluster_size;
  g.tables.emplace_back(s.entry.table_offset, (uint64_t{s.entry.table_size} * 8 + cs - 1) / cs);
  return g;
}

Task<Status> Qcow2BitmapStore::create(const DirtyBitmapPtr& b) {
  AsyncMutex::Guard op = co_await op_lock_.lock();
  const std::string prefix =
      "Can't make bitmap '" + b->name() + "' persistent in '" + description_ + "': ";
  if (read_only_ || closed_) co_return Status::read_only(prefix + "the image is read-only");
  if (image_.header().version < 3) {
    co_return Status::not_supported(prefix + "Cannot store dirty bitmaps in qcow2 v2 files");
  }
  for (const Stored& s : entries_) {
    if (s.entry.name == b->name()) {
      co_return Status::error(EEXIST, prefix + "Bitmap already exists: " + b->name());
    }
  }
  const Geometry& g = image_.geometry();
  if (b->disk_size() != disk_size_) {
    co_return Status::invalid(prefix + "the bitmap covers " + num(b->disk_size()) +
                              " bytes, the disk " + num(disk_size_));
  }
  if (g.disk_size == 0) co_return Status::invalid(prefix + "the image is empty");
  if (Status c = check_new_bitmap_constraints(b->name(), b->granularity(), g.disk_size,
                                              g.cluster_size);
      !c.is_ok()) {
    co_return Status::invalid(prefix + c.message());
  }
  if (entries_.size() + 1 > kMaxBitmaps) {
    co_return Status::no_space(prefix + "Maximum number of persistent bitmaps is already reached");
  }
  std::vector<BitmapDirEntry> dir;
  for (const Stored& s : entries_) dir.push_back(s.entry);
  BitmapDirEntry e;
  e.name = b->name();
  e.granularity_bits = static_cast<uint8_t>(std::countr_zero(b->granularity()));
  e.flags = b->enabled() ? kBitmapFlagAuto : 0;
  dir.push_back(e);
  if (bitmap_directory_bytes(dir) > kMaxBitmapDirectoryBytes) {
    co_return Status::no_space(prefix + "Not enough space in the bitmap directory");
  }

  std::vector<Stored> next = entries_;
  Stored fresh;
  fresh.entry = std::move(e);
  fresh.bitmap = b;
  {
    AsyncMutex::Guard meta = co_await image_.meta_lock().lock();
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.prepare_modify());
    Garbage none;
    Status st = co_await build_layout(fresh, b->snapshot(), false, none);
    fresh.maintained = true;
    next.push_back(fresh);
    if (st.is_ok()) st = co_await image_.write_back();
    if (st.is_ok()) st = co_await image_.sync();
    bool recorded = false;
    if (st.is_ok()) st = co_await publish(next, /*closing=*/false, &recorded);
    if (!st.is_ok()) {
      // Referenced by nothing durable: give back what was allocated.
      if (fresh.entry.table_offset != 0) (void)co_await free_garbage(layout_of(fresh));
      co_return st;
    }
    b->set_durable(recorded);
  }
  AsyncMutex::Guard commit = co_await commit_lock_.lock();
  entries_ = std::move(next);
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::remove(const DirtyBitmapPtr& b) {
  AsyncMutex::Guard op = co_await op_lock_.lock();
  // Held throughout: no batch may write into the clusters being freed.
  AsyncMutex::Guard commit = co_await commit_lock_.lock();
  size_t index = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].bitmap == b) index = i;
  }
  if (index == entries_.size()) co_return Status::ok();  // not stored: nothing to do
  if (read_only_ || closed_) {
    co_return Status::read_only("Bitmap '" + b->name() + "' is stored in read-only '" +
                                description_ + "'");
  }
  if (image_.header().version < 3) {
    co_return Status::not_supported("Bitmaps of qcow2 v2 files cannot be removed");
  }
  std::vector<Stored> next = entries_;
  Stored gone = std::move(next[index]);
  next.erase(next.begin() + static_cast<long>(index));
  AsyncMutex::Guard meta = co_await image_.meta_lock().lock();
  FLEECE_CO_RETURN_IF_ERROR(co_await image_.prepare_modify());
  bool recorded = false;
  FLEECE_CO_RETURN_IF_ERROR(co_await publish(next, /*closing=*/false, &recorded));
  entries_ = std::move(next);
  b->set_durable(false);
  if (Status s = co_await free_garbage(layout_of(gone)); !s.is_ok()) {
    spdlog::warn("{}: freeing the clusters of removed bitmap '{}' failed (they leak until the "
                 "next open): {}", description_, b->name(), s.to_string());
  }
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::write_bitmap(const DirtyBitmapPtr& b,
                                            std::function<void(HBitmap&)> change) {
  AsyncMutex::Guard op = co_await op_lock_.lock();
  AsyncMutex::Guard commit = co_await commit_lock_.lock();
  Stored* s = find_stored(b.get());
  if (s == nullptr) {
    co_return Status::error(ENOENT, "bitmap '" + b->name() + "' is not stored in '" +
                                        description_ + "'");
  }
  if (read_only_ || closed_) {
    co_return Status::read_only("Bitmap '" + b->name() + "' is stored in read-only '" +
                                description_ + "'");
  }
  if (b->inconsistent()) {
    co_return Status::invalid("Bitmap '" + b->name() + "' is inconsistent; clear it first");
  }
  if (image_.header().version < 3) {
    co_return Status::not_supported("Bitmaps of qcow2 v2 files cannot be changed");
  }
  // A bitmap that becomes crash-safe here is durable from now on, so the writes racing
  // with this call queue behind the commit lock instead of marking memory alone.
  const bool was_durable = b->durable();
  if (!s->maintained && record_fits_) b->set_durable(true);
  HBitmap content = b->snapshot();
  if (change) change(content);
  // What is stored: the new content plus the bits a fleece retains (freeze()).
  const HBitmap old = b->stored_snapshot();
  const HBitmap stored = b->with_retained(content);
  // Content that only gains bits may be written in place (a torn write leaves a
  // superset); content that loses bits (clear, restore) goes to new clusters switched
  // in by the header, so a crash leaves the old content or the new, never a mix.
  HBitmap merged = stored;
  merged.merge(old);
  const bool only_adds = merged == stored;

  const bool flags_change = s->maintained && s->entry.auto_flag() != b->enabled();
  Status st;
  if (s->maintained && only_adds && !flags_change) {
    st = co_await write_content(*s, stored);
    if (st.is_ok()) st = co_await image_.file().flush();
  } else {
    std::vector<Stored> next = entries_;
    Stored& n = next[static_cast<size_t>(s - entries_.data())];
    Garbage garbage;
    AsyncMutex::Guard meta = co_await image_.meta_lock().lock();
    st = co_await image_.prepare_modify();
    if (st.is_ok() && n.maintained && only_adds) {
      st = co_await write_content(n, stored);
    } else if (st.is_ok()) {
      // A new layout, written whole (also for a bitmap inconsistent on disk).
      st = co_await build_layout(n, stored, /*reuse=*/false, garbage);
      n.maintained = st.is_ok();
    }
    if (st.is_ok()) st = co_await image_.write_back();
    if (st.is_ok()) st = co_await image_.sync();
    bool recorded = false;
    if (st.is_ok()) st = co_await publish(next, /*closing=*/false, &recorded);
    if (st.is_ok()) {
      entries_ = std::move(next);
      s = find_stored(b.get());
      b->set_durable(recorded && s->maintained);
      if (Status f = co_await free_garbage(garbage); !f.is_ok()) {
        spdlog::warn("{}: freeing the old clusters of bitmap '{}' failed (they leak until the "
                     "next open): {}", description_, b->name(), f.to_string());
      }
    }
  }
  if (!st.is_ok()) {
    b->set_durable(was_durable);
    co_return st;
  }
  b->restore(content);
  co_return Status::ok();
}

Task<Status> Qcow2BitmapStore::close() {
  AsyncMutex::Guard op = co_await op_lock_.lock();
  AsyncMutex::Guard commit = co_await commit_lock_.lock();
  if (closed_) co_return Status::ok();
  closed_ = true;
  Status st;
  AsyncMutex::Guard meta = co_await image_.meta_lock().lock();
  // A corrupt image is not written any more (its bitmaps stay in_use).
  if (!read_only_ && !image_.corrupt() && image_.header().version >= 3 && !entries_.empty()) {
    // Every maintained bitmap exactly as in memory (with bits a fleece still retains:
    // the daemon rolls fleeces back before it closes), then a directory without in_use and
    // a header without fleece's record.
    for (const Stored& s : entries_) {
      if (s.maintained && st.is_ok()) st = co_await write_content(s, s.bitmap->stored_snapshot());
    }
    if (st.is_ok()) st = co_await image_.prepare_modify();
    if (st.is_ok()) st = co_await image_.sync();
    std::vector<Stored> next = entries_;
    bool recorded = false;
    if (st.is_ok()) st = co_await publish(next, /*closing=*/true, &recorded);
    if (st.is_ok()) entries_ = std::move(next);
  }
  for (const Stored& s : entries_) s.bitmap->set_durable(false);
  if (owned_image_) {
    Status c = co_await image_.close();
    if (st.is_ok()) st = c;
  }
  if (!st.is_ok()) st = st.with_context("storing the bitmaps of '" + description_ + "'");
  co_return st;
}

}  // namespace blockcore::qcow2
