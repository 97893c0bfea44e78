// FleeceSnapshot: one point-in-time view of a live node, kept by copy-before-write.
// Before a write, write-zeroes or trim changes the live node, the old data of every
// granule it touches that was not copied yet is copied to the snapshot's target (a
// sparse overlay file) — once per granule however many writers race for it. The view
// reads copied granules from the target and the others from the live node.
// Locking: a RangeLock over granules. A view read holds it shared on its range while it
// reads the live node, so a write that must first copy one of those granules (exclusive
// while copying) waits for the read; writes to granules already copied take no lock.
// Failure policy (on-cbw-error): break-snapshot (the copy failure, a timeout or the
// overlay limit breaks the view: its reads fail with EIO, the live write goes on, the
// broken handler runs once) or break-guest-write (the live write fails with the error,
// the view stays valid).
// A trim through the view releases the target's space for whole granules and stops
// copying them; reads there then fail with EIO (the backup client said it is done).
// Threading: thread-safe; every method may be called concurrently from any executor.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "blockcore/base/range_lock.h"
#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/bitmap/hbitmap.h"
#include "blockcore/block_node.h"
#include "blockcore/extent.h"

namespace blockcore {

struct CbwOptions {
  uint64_t granularity = 64 * 1024;      // bytes per copy unit, a power of two >= 512
  bool break_guest_write = false;        // on-cbw-error: break-guest-write
  std::chrono::milliseconds timeout{0};  // cbw-timeout; 0 = none
  uint64_t overlay_limit = 0;            // bytes the target may hold; 0 = no limit
};

class FleeceSnapshot : public std::enable_shared_from_this<FleeceSnapshot> {
 public:
  using BrokenHandler = std::function<void(const std::string& reason)>;

  // REQUIRES: target is writable and at least as large as live; granularity is a power
  // of two no smaller than live's request alignment.
  FleeceSnapshot(std::string id, BlockNodePtr live, BlockNodePtr target, CbwOptions opts,
                 BrokenHandler on_broken);

  const std::string& id() const { return id_; }
  uint64_t size() const { return size_; }
  const CbwOptions& options() const { return opts_; }
  BlockNode& live() const { return *live_; }
  BlockNode& target() const { return *target_; }
  bool broken() const { return broken_.load(std::memory_order_acquire); }
  std::string broken_reason() const;
  // Bytes of old data copied to the target (granules * granularity, clipped to size).
  uint64_t copied_bytes() const;

  // Copy-before-write for a write-like request on [off, off + len) of the live node.
  // OK when the live write may proceed.
  Task<Status> before_live_write(uint64_t off, uint64_t len);

  // The view. REQUIRES: ranges inside size().
  Task<Status> read(uint64_t off, std::span<std::byte> buf);
  Task<Result<ExtentList>> block_status(uint64_t off, uint64_t len);
  Task<Status> discard(uint64_t off, uint64_t len);

  // Invalidates the view (idempotent; the first reason is kept and reported once).
  void break_snapshot(const std::string& reason);

 private:
  uint64_t first_granule(uint64_t off) const { return off / opts_.granularity; }
  uint64_t end_granule(uint64_t off, uint64_t len) const {
    return (off + len + opts_.granularity - 1) / opts_.granularity;
  }
  // Copies the not-yet-copied granules of [first, end). REQUIRES: the exclusive lock.
  Task<Status> copy_granules(uint64_t first, uint64_t end);
  Task<Status> copy_run(uint64_t first, uint64_t end);
  Status broken_status() const;

  const std::string id_;
  const BlockNodePtr live_;
  const BlockNodePtr target_;
  const CbwOptions opts_;
  const uint64_t size_;
  const BrokenHandler on_broken_;
  RangeLock locks_;  // over granule indices
  std::atomic<bool> broken_{false};
  mutable std::mutex mu_;
  HBitmap copied_;        // GUARDED_BY(mu_) old data in the target, or nothing to copy
  HBitmap released_;      // GUARDED_BY(mu_) trimmed through the view
  std::string reason_;    // GUARDED_BY(mu_)
};

using FleeceSnapshotPtr = std::shared_ptr<FleeceSnapshot>;

}  // namespace blockcore
