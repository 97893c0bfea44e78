// NodeBitmaps: the named dirty bitmaps of one block node and the write tracking.
// BlockNode owns one; its public write, write_zeroes and discard call before_write()
// after validating a request and before the driver sees it, so every path that changes
// a node's data marks the node's enabled bitmaps first (BlockNode::write_now, which runs
// only while every mark is in memory, marks once right after the write instead):
//   - a bitmap that is not durable is marked in memory;
//   - for durable bitmaps (persistent in a writable store), granules not yet dirty are
//     first made durable by the store (one batched write and sync for concurrent
//     writers), then marked; granules already dirty cost a lookup in memory.
// The management operations (QMP block-dirty-bitmap-*) are here so that every caller
// (control commands, transactions, config start-up, fleecing) applies the same rules:
// names unique per node, busy/read-only/inconsistent checks with QEMU's messages,
// persistent bitmaps stored before they are listed.
// Threading: thread-safe. before_write() may run concurrently with itself and with the
// management calls; management calls are serialized among themselves by the caller
// (the control executor) but are safe anyway (an internal mutex guards the list).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/bitmap/bitmap_store.h"
#include "blockcore/bitmap/dirty_bitmap.h"

namespace blockcore {

struct BitmapOptions {
  std::string name;
  uint64_t granularity = kDefaultBitmapGranularity;
  bool persistent = false;
  bool disabled = false;
};

class NodeBitmaps {
 public:
  explicit NodeBitmaps(std::string node_name);
  ~NodeBitmaps();

  // --- the write path ---
  // True when some bitmap records writes (one atomic load; callers skip before_write
  // otherwise).
  bool tracking() const { return tracking_.load(std::memory_order_acquire); }
  // True when no store is attached, so no bitmap is durable and every mark is a write
  // to memory: try_mark() then always succeeds. Fixed from the store's attachment (at
  // open) until close_store() has finished.
  bool marks_in_memory() const { return !has_store_.load(std::memory_order_acquire); }
  // The fast path, no I/O: marks [off, off + len) in every enabled bitmap that is not
  // durable and returns true when every enabled durable bitmap already has it dirty;
  // false means before_write() must run (granules to make durable first).
  bool try_mark(uint64_t off, uint64_t len);
  // Marks [off, off + len) in every enabled bitmap, durably for durable ones. An error
  // (the store could not record the change) must fail the write.
  Task<Status> before_write(uint64_t off, uint64_t len);

  // --- the store ---
  // Attaches the node's store with the bitmaps it loaded (driver open path).
  void attach_store(std::shared_ptr<BitmapStore> store, std::vector<DirtyBitmapPtr> loaded);
  // Closes the store (stored bitmaps written exactly and released) and detaches it.
  // Node close path; idempotent.
  Task<Status> close_store();
  BitmapStore* store() const;

  // --- queries ---
  DirtyBitmapPtr find(const std::string& name) const;
  // ENOENT "Dirty bitmap 'NAME' not found" (QEMU's text) when absent.
  Result<DirtyBitmapPtr> lookup(const std::string& name) const;
  std::vector<DirtyBitmapPtr> list() const;  // sorted by name

  // --- management (QEMU's semantics) ---
  // Creates a bitmap covering `disk_size` bytes: EEXIST for a taken name, EINVAL for a
  // bad name/granularity, ENOTSUP "...cannot store persistent bitmaps" for a persistent
  // bitmap on a node without a store, EROFS when the store is read-only.
  Task<Result<DirtyBitmapPtr>> create(const BitmapOptions& opts, uint64_t disk_size);
  // Removes it (from the store too when persistent): EBUSY when busy.
  Task<Status> remove(const std::string& name);
  // Clears every bit (an inconsistent bitmap becomes consistent and clean): EBUSY when
  // busy, EROFS when read-only. Stored at once for persistent bitmaps. `cleared`, when
  // given, receives exactly the content that was cleared (taken atomically with the
  // clear, so no write recorded just before is missing from it).
  Task<Status> clear(const std::string& name, HBitmap* cleared = nullptr);
  // Starts / stops recording: EBUSY as above; an inconsistent bitmap: EINVAL.
  // `checked`: the caller made those checks earlier (a transaction's commit, after its
  // prepare checked and a later action of it made the bitmap busy).
  Task<Status> set_enabled(const std::string& name, bool enabled, bool checked = false);
  // target |= each source: EBUSY/EROFS/EINVAL(inconsistent) on the target, EINVAL on an
  // inconsistent source, EINVAL on a size mismatch. Durable bits are stored before
  // they are set in memory.
  Task<Status> merge(const std::string& target, std::span<const DirtyBitmapPtr> sources);
  // b |= bits (a map of b's granules), stored first when b is durable; no busy or
  // read-only checks: for undo paths (transaction abort, fleecing rollback), which put
  // back bits the bitmap had. On a store error memory still gets the bits (this session
  // reports them) and the error is returned.
  Task<Status> add_content(const DirtyBitmapPtr& b, const HBitmap& bits);
  // Ends a fleecing rotation of b (DirtyBitmap::freeze): with rollback the frozen bits
  // go back into b (a failed backup: the next one includes them), without they are
  // dropped (b is stored as it is now). No busy checks: b is usually exported.
  Task<Status> end_rotation(const DirtyBitmapPtr& b, const HBitmap& frozen, bool rollback);
  // Puts back content saved with DirtyBitmap::snapshot() (transaction abort), stored
  // first for persistent bitmaps; on a store error memory is put back anyway and the
  // error returned.
  Task<Status> restore(const DirtyBitmapPtr& b, const HBitmap& content);

  // A hidden write tracker (QEMU's anonymous bitmaps): an unlisted, memory-only bitmap
  // that records every write from now on until removed — e.g. so a transaction undo can
  // tell the writes made meanwhile from what it is undoing.
  DirtyBitmapPtr add_write_tracker(uint64_t granularity, uint64_t disk_size);
  void remove_write_tracker(const DirtyBitmapPtr& tracker);

  // Recomputes tracking() (after a bitmap's enabled flag changed directly).
  void update_tracking();

 private:
  const std::string node_name_;
  std::atomic<bool> tracking_{false};
  std::atomic<bool> has_store_{false};  // set before a bitmap can be durable, cleared after
  mutable std::mutex mu_;
  std::vector<DirtyBitmapPtr> bitmaps_;   // GUARDED_BY(mu_), sorted by name
  std::vector<DirtyBitmapPtr> trackers_;  // GUARDED_BY(mu_), hidden, memory only
  std::shared_ptr<BitmapStore> store_;    // GUARDED_BY(mu_)
};

}  // namespace blockcore
