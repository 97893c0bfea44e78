// The crash-safe write path of the qcow2 bitmap store: persist_marks() batches concurrent
// callers (group commit) and writes the bitmap blocks their writes dirty in place, one
// sync per batch, before any bit is set in memory.
#include <algorithm>
#include <cstring>

#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "blockcore/qcow2/qcow2_image.h"

namespace blockcore::qcow2 {
namespace {

// Bitmap data is written in blocks of this size (or the cluster, when smaller): the
// unit a disk writes at once, so an interrupted write never tears a bit that was set.
constexpr uint64_t kPersistBlock = 4096;

// Sets bits [first, first + n) of the serialized bitmap in `buf` (bit i = bit i % 8 of
// byte i / 8).
void set_bits(std::span<std::byte> buf, uint64_t first, uint64_t n) {
  uint64_t i = first;
  const uint64_t end = first + n;
  for (; i < end && i % 8 != 0; ++i) buf[i / 8] |= std::byte(1u << (i % 8));
  if (end - i >= 8) {
    const uint64_t bytes = (end - i) / 8;
    std::memset(buf.data() + i / 8, 0xff, bytes);
    i += bytes * 8;
  }
  for (; i < end; ++i) buf[i / 8] |= std::byte(1u << (i % 8));
}

}  // namespace

Qcow2BitmapStore::Stored* Qcow2BitmapStore::find_stored(const DirtyBitmap* b) {
  for (Stored& s : entries_) {
    if (s.bitmap.get() == b) return &s;
  }
  return nullptr;
}

Task<Status> Qcow2BitmapStore::persist_marks(std::span<const DirtyBitmapPtr> bitmaps, uint64_t off,
                                             uint64_t len) {
  auto slot = std::make_shared<CommitSlot>();
  {
    std::lock_guard g(queue_mu_);
    queue_.push_back(PendingMark{{bitmaps.begin(), bitmaps.end()}, off, len, slot});
  }
  AsyncMutex::Guard lock = co_await commit_lock_.lock();
  // An earlier holder may have committed this call with its batch.
  if (slot->done) co_return slot->status;
  std::vector<PendingMark> batch;
  {
    std::lock_guard g(queue_mu_);
    batch.swap(queue_);
  }
  const Status s = co_await commit(batch);
  for (PendingMark& p : batch) {
    p.slot->status = s;
    p.slot->done = true;
  }
  co_return s;
}

Task<Status> Qcow2BitmapStore::commit(std::vector<PendingMark>& batch) {
  // Per stored bitmap, the granule ranges [first, end) the batch sets.
  struct Work {
    Stored* stored;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
  };
  std::vector<Work> work;
  if (closed_) {
    // Its bitmaps were written for good (in_use cleared): a write now would go
    // unrecorded on disk, so it is refused. (Nothing writes a node after its close.)
    co_return Status::io_error("the bitmaps of '" + description_ +
                               "' are closed; the write cannot be recorded");
  }
  for (const PendingMark& p : batch) {
    for (const DirtyBitmapPtr& b : p.bitmaps) {
      // A bitmap the store no longer keeps (removed) is marked in memory only.
      Stored* s = find_stored(b.get());
      if (s == nullptr || !s->maintained || b->all_dirty(p.off, p.len)) continue;
      const uint64_t g = b->granularity();
      const uint64_t first = p.off / g;
      const uint64_t end = std::min(b->granules(), (p.off + p.len + g - 1) / g);
      if (first >= end) continue;
      auto it = std::find_if(work.begin(), work.end(), [&](const Work& w) { return w.stored == s; });
      if (it == work.end()) it = work.insert(work.end(), Work{s, {}});
      it->ranges.emplace_back(first, end);
    }
  }

  if (!work.empty()) {
    const uint64_t cs = image_.geometry().cluster_size;
    const uint64_t bs = std::min(kPersistBlock, cs);
    const uint64_t block_bits = bs * 8;
    std::vector<std::byte> buf;
    for (const Work& w : work) {
      std::vector<uint64_t> blocks;
      for (const auto& [first, end] : w.ranges) {
        for (uint64_t blk = first / block_bits; blk <= (end - 1) / block_bits; ++blk) {
          blocks.push_back(blk);
        }
      }
      std::sort(blocks.begin(), blocks.end());
      blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
      // Consecutive blocks of one cluster go out as one write.
      for (size_t i = 0; i < blocks.size();) {
        const uint64_t cluster = blocks[i] * bs / cs;
        size_t n = 1;
        while (i + n < blocks.size() && blocks[i + n] == blocks[i] + n &&
               blocks[i + n] * bs / cs == cluster) {
          ++n;
        }
        const uint64_t first_bit = blocks[i] * block_bits;
        const uint64_t end_bit = first_bit + n * block_bits;
        buf.assign(n * bs, std::byte{0});
        // The stored form (memory, and bits a fleece retains) with the batch's new bits.
        w.stored->bitmap->serialize_stored(first_bit, buf);
        for (const auto& [first, end] : w.ranges) {
          const uint64_t a = std::max(first, first_bit);
          const uint64_t e = std::min(end, end_bit);
          if (a < e) set_bits(buf, a - first_bit, e - a);
        }
        const uint64_t host =
            (w.stored->table[cluster] & kBitmapTableOffsetMask) + (blocks[i] * bs) % cs;
        FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().write(host, buf, IoFlags::kNone));
        i += n;
      }
    }
    FLEECE_CO_RETURN_IF_ERROR(co_await image_.file().flush());
    commits_.fetch_add(1, std::memory_order_relaxed);
  }
  // Durable now: memory may follow.
  for (const PendingMark& p : batch) {
    for (const DirtyBitmapPtr& b : p.bitmaps) b->mark(p.off, p.len);
  }
  co_return Status::ok();
}

}  // namespace blockcore::qcow2
