// DirtyBitmap: a named bitmap of a node that records which granules (granularity bytes,
// a power of two from 512 B to 2 GiB) of the node's disk were written, and its states:
//   enabled     records writes (QEMU "recording"; the qcow2 "auto" flag);
//   persistent  stored in the node's BitmapStore (qcow2 bitmaps extension);
//   durable     persistent and consistent in a writable store (enabled or not), which
//               keeps the stored copy a superset of the memory copy: a granule's bit is
//               set in memory only after the store made it durable (before_write goes
//               through BitmapStore::persist_marks, whole-map changes through
//               BitmapStore::write_bitmap), so no data is written under a bit that a
//               crash could lose;
//   inconsistent loaded from a copy that may be stale (in_use after an unclean QEMU
//               shutdown): every bit reads as dirty until clear() or removal;
//   read_only   stored in an image opened read-only: content and flags cannot change;
//   busy        in use by an export or a frozen fleecing copy (count of BusyGuards):
//               it may be read but not removed, cleared, merged into or toggled.
// Byte ranges are clipped to the disk; a range marks every granule it touches.
// Threading: every method is thread-safe (an internal mutex, held for in-memory work
// only: microseconds, or one pass over the map for whole-map operations).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/bitmap/hbitmap.h"

namespace blockcore {

inline constexpr uint64_t kMinBitmapGranularity = 512;
inline constexpr uint64_t kMaxBitmapGranularity = 1ull << 31;
inline constexpr uint64_t kDefaultBitmapGranularity = 65536;
inline constexpr size_t kMaxBitmapNameLength = 1023;  // qcow2's limit

// OK when `g` is a valid granularity; else EINVAL naming the rule.
Status check_bitmap_granularity(uint64_t g);
// OK when `name` is a valid bitmap name (1..1023 bytes); else EINVAL.
Status check_bitmap_name(const std::string& name);

// One run of a dirty-bitmap block-status answer.
struct DirtyExtent {
  uint64_t length = 0;
  bool dirty = false;
  bool operator==(const DirtyExtent&) const = default;
};

class DirtyBitmap {
 public:
  // REQUIRES: check_bitmap_granularity(granularity) and check_bitmap_name(name) pass.
  DirtyBitmap(std::string name, uint64_t disk_size, uint64_t granularity);

  const std::string& name() const { return name_; }
  uint64_t granularity() const { return granularity_; }
  uint64_t disk_size() const;
  uint64_t granules() const;  // ceil(disk_size / granularity)

  bool enabled() const { return enabled_.load(std::memory_order_acquire); }
  void set_enabled(bool on) { enabled_.store(on, std::memory_order_release); }
  bool persistent() const { return persistent_.load(std::memory_order_acquire); }
  void set_persistent(bool on) { persistent_.store(on, std::memory_order_release); }
  bool durable() const { return durable_.load(std::memory_order_acquire); }
  void set_durable(bool on) { durable_.store(on, std::memory_order_release); }
  bool read_only() const { return read_only_.load(std::memory_order_acquire); }
  void set_read_only(bool on) { read_only_.store(on, std::memory_order_release); }
  bool inconsistent() const { return inconsistent_.load(std::memory_order_acquire); }
  // Marks the bitmap inconsistent and every bit dirty (or, off, just drops the flag).
  void set_inconsistent(bool on);
  bool busy() const { return busy_.load(std::memory_order_acquire) != 0; }

  // Keeps the bitmap busy while alive. Move-only.
  class BusyGuard {
   public:
    BusyGuard() = default;
    explicit BusyGuard(std::shared_ptr<DirtyBitmap> b);
    BusyGuard(BusyGuard&& o) noexcept = default;
    BusyGuard& operator=(BusyGuard&& o) noexcept;
    ~BusyGuard();
    const std::shared_ptr<DirtyBitmap>& bitmap() const { return b_; }

   private:
    void release();
    std::shared_ptr<DirtyBitmap> b_;
  };
  static BusyGuard make_busy(const std::shared_ptr<DirtyBitmap>& b) { return BusyGuard(b); }

  // Dirty bytes: set granules * granularity, the last granule counted up to disk_size.
  uint64_t dirty_bytes() const;
  uint64_t dirty_granules() const;

  // True when every granule touched by [off, off + len) is dirty.
  bool all_dirty(uint64_t off, uint64_t len) const;
  // Marks / clears every granule touched by [off, off + len).
  void mark(uint64_t off, uint64_t len);
  void reset(uint64_t off, uint64_t len);
  // Granule-indexed forms (for stores): [first, first + n).
  void mark_granules(uint64_t first, uint64_t n);
  void clear();    // every bit clean (and no longer inconsistent)
  HBitmap take();  // clear(), returning the content it cleared
  void set_all();  // every bit dirty
  // this |= other. Different granularities are fine (a dirty granule of `other` marks
  // every granule of this map it touches). REQUIRES: equal disk sizes.
  void merge_from(const DirtyBitmap& other);
  // this |= bits, a map of this bitmap's granules (REQUIRES: bits.size() == granules()).
  void merge_content(const HBitmap& bits);

  // Block status of [off, off + len) (clipped to the disk): contiguous runs starting at
  // off whose inner boundaries fall on granule boundaries, equal neighbours merged, at
  // most max_extents (>= 1) runs; the runs may cover less than len when the cap is hit.
  // Cost: proportional to the number of runs returned, not to len.
  std::vector<DirtyExtent> extents(uint64_t off, uint64_t len, size_t max_extents) const;
  // The first dirty byte range at or after off, clipped to end: {start, length}, or
  // {end, 0} when [off, end) is clean.
  std::pair<uint64_t, uint64_t> next_dirty_range(uint64_t off, uint64_t end) const;

  // Content in serialized form (qcow2 data order), granule-indexed; see HBitmap.
  void serialize(uint64_t first_granule, std::span<std::byte> out) const;
  void deserialize(uint64_t first_granule, std::span<const std::byte> in);
  // Fleecing rotation: returns the content and clears memory, while a store keeps
  // writing those bits (retained) until drop_retained(), so a crash before the backup
  // ends reloads them (rolled back). Retained bits accumulate over several freezes.
  HBitmap freeze();
  void drop_retained();
  // What a store writes: memory | retained; with_retained(c): c | retained.
  HBitmap stored_snapshot() const;
  HBitmap with_retained(HBitmap content) const;
  void serialize_stored(uint64_t first_granule, std::span<std::byte> out) const;
  // A copy of the content (for frozen fleecing copies and transaction rollback), and
  // the reverse. restore() REQUIRES a map of the same size.
  HBitmap snapshot() const;
  void restore(const HBitmap& content);
  // Resizes to a new disk size (new granules clean).
  void resize(uint64_t disk_size);

 private:
  const std::string name_;
  const uint64_t granularity_;
  const uint32_t granularity_bits_;
  std::atomic<bool> enabled_{true};
  std::atomic<bool> persistent_{false};
  std::atomic<bool> durable_{false};
  std::atomic<bool> read_only_{false};
  std::atomic<bool> inconsistent_{false};
  std::atomic<uint32_t> busy_{0};
  mutable std::mutex mu_;
  uint64_t disk_size_;  // GUARDED_BY(mu_)
  HBitmap bits_;        // GUARDED_BY(mu_)
  HBitmap retained_;    // GUARDED_BY(mu_) size 0 when nothing is retained
};

using DirtyBitmapPtr = std::shared_ptr<DirtyBitmap>;

}  // namespace blockcore
