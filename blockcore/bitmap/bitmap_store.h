// BitmapStore: where a node's persistent dirty bitmaps live — the qcow2 bitmaps
// extension of the node's own image, or a separate qcow2 container that holds only
// bitmaps (for raw images). NodeBitmaps calls it; the qcow2 driver implements it.
// Every method makes its change durable before it returns (crash safety is the point),
// and none ever leaves the stored copy of a durable bitmap with a bit clear that is set
// in memory.
// Threading: methods are coroutines callable from any executor, concurrently; the
// store serializes its own writes.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/bitmap/dirty_bitmap.h"

namespace blockcore {

class BitmapStore {
 public:
  virtual ~BitmapStore() = default;

  // False for a store in an image opened read-only (its bitmaps are read_only).
  virtual bool writable() const = 0;
  // What it is, for queries and messages ("disk0.qcow2", "bitmaps of disk0.raw in X").
  virtual std::string describe() const = 0;

  // Stores a new persistent bitmap (content, flags), durably. On success `b` is
  // durable(). EEXIST when the name is taken in the store, ENOSPC over the format's
  // limits, EROFS when not writable.
  virtual Task<Status> create(const DirtyBitmapPtr& b) = 0;
  // Removes a stored bitmap and frees its space, durably. Afterwards the store ignores
  // `b` (a persist_marks() for it just marks memory) and `b` is no longer durable().
  virtual Task<Status> remove(const DirtyBitmapPtr& b) = 0;
  // Durably sets the bits of [off, off + len) in the stored copy of every bitmap in
  // `bitmaps` (each durable()), then marks them in memory. Concurrent calls are batched
  // into one write-and-sync (group commit). On error memory is unchanged.
  virtual Task<Status> persist_marks(std::span<const DirtyBitmapPtr> bitmaps, uint64_t off,
                                     uint64_t len) = 0;
  // Under the store's write lock (which persist_marks() holds too, so no bit is set in
  // memory meanwhile): applies `change` to a copy of b's content (no change: the content
  // as it is), stores the result and b's flags (auto = enabled) durably, and only then
  // makes the result b's memory content. Used for clear, merge, transaction restore,
  // enable/disable, and for an inconsistent bitmap that was cleared (the caller drops
  // the inconsistent flag first; the store then allocates its clusters, and it becomes
  // durable()). On error memory is unchanged.
  virtual Task<Status> write_bitmap(const DirtyBitmapPtr& b,
                                    std::function<void(HBitmap&)> change = {}) = 0;
  // Writes every bitmap exactly and marks them consistent for other programs (clears
  // in_use, drops fleece's crash-safe record); then nothing more is written. Idempotent.
  virtual Task<Status> close() = 0;
};

}  // namespace blockcore
