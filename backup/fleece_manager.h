// FleeceManager: the fleecing sessions of the daemon. fleece-start takes a point-in-time
// snapshot of a live node in one step while its writes are paused (no write in flight,
// new ones held for microseconds):
//   - a sparse overlay is created (unlinked at once, see fleece_overlay.h),
//   - the snapshot is added to the node's copy-before-write filter,
//   - with a bitmap B: B's content becomes a frozen copy (offered on the view as
//     qemu:dirty-bitmap:B) and B restarts empty and keeps recording. The stored copy of
//     a persistent B keeps the frozen bits (DirtyBitmap::retain) until the backup ends,
//     so a crash or restart mid-backup loses no change: B reloads as frozen | new.
//     B is busy until the session ends: it keeps recording, but management commands
//     that would change or remove it are refused.
// fleece-stop ends a session: without rollback the frozen copy is dropped (B is stored
// as it is now); with rollback it is merged back into B. A session broken by a copy
// failure stays listed (state "broken") until stopped.
// The export of the view is the server's business: start() returns the view node.
// Threading: start/stop/list from the control executor (they are coroutines); the
// snapshot machinery they set up is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "blockcore/bitmap/dirty_bitmap.h"
#include "blockcore/block_node.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/filters/copy_before_write.h"
#include "blockcore/filters/fleece_snapshot.h"
#include "blockcore/filters/snapshot_access_node.h"
#include "blockcore/io/blocking_pool.h"

namespace backup {

// The copy unit of a snapshot when the request leaves it open: a guest page (4 KiB, or
// the node's request alignment if larger), so a 4 KiB write copies 4 KiB of old data —
// not a whole 64 KiB cluster: reading, allocating and writing 16 times what the guest
// wrote is what makes the first write to a cluster slow, and fills the overlay 16 times
// faster — doubled only while the granule maps would pass 8 MiB each (4 KiB granules up
// to 256 GiB, 16 KiB for 1 TiB).
uint64_t default_copy_granularity(uint64_t disk_size, uint64_t request_alignment);

struct FleeceRequest {
  std::string id;
  blockcore::BlockNodePtr live;
  std::optional<std::string> bitmap;  // rotated: frozen copy on the view, live restarts
  std::string overlay_dir;            // required
  blockcore::CbwOptions cbw{.granularity = 0};  // granularity 0: chosen by the disk size
};

struct Fleece {
  std::string id;
  blockcore::BlockNodePtr live;
  std::shared_ptr<blockcore::FileNode> overlay;
  blockcore::FleeceSnapshotPtr snapshot;
  std::shared_ptr<blockcore::SnapshotAccessNode> view;
  std::shared_ptr<blockcore::CopyBeforeWrite> filter;
  std::string bitmap;                  // empty: none
  blockcore::DirtyBitmapPtr live_bitmap;
  // Keeps the live bitmap from being removed, cleared, disabled or merged into while the
  // session needs it to merge the frozen copy back (rollback) or store it (done).
  blockcore::DirtyBitmap::BusyGuard live_busy;
  blockcore::DirtyBitmapPtr frozen;    // on the view node, named like the live one
  std::chrono::system_clock::time_point started;

  std::string state() const { return snapshot->broken() ? "broken" : "active"; }
  uint64_t overlay_bytes() const;  // space the overlay file takes
};
using FleecePtr = std::shared_ptr<Fleece>;

class FleeceManager {
 public:
  // `on_broken(fleece id, node name, reason)` runs once per broken snapshot (from an I/O
  // thread): the daemon turns it into a FLEECE_BROKEN event.
  using BrokenHandler =
      std::function<void(const std::string& id, const std::string& node, const std::string& reason)>;
  FleeceManager(blockcore::io::BlockingPool& pool, BrokenHandler on_broken);
  // Detaches every snapshot still active from its live node (the filter and the
  // snapshot reference each other through the node). Bitmaps are not rolled back here:
  // stop_all() does that; without it the stored copies still hold the frozen bits.
  ~FleeceManager();

  // EEXIST for a taken id; ENOENT for an unknown bitmap; EBUSY when the bitmap is frozen
  // by another fleece; EINVAL for a read-only live node; overlay errors as they come.
  // On error nothing is left behind.
  blockcore::Task<blockcore::Result<FleecePtr>> start(const FleeceRequest& req);
  // ENOENT for an unknown id. The caller removed the view's export first.
  blockcore::Task<blockcore::Status> stop(const std::string& id, bool rollback);
  // Every session rolled back (daemon shutdown).
  blockcore::Task<void> stop_all();

  FleecePtr find(const std::string& id) const;
  std::vector<FleecePtr> list() const;  // by id

 private:
  blockcore::Task<blockcore::Status> end_session(const FleecePtr& f, bool rollback);
  // EEXIST when `id` is taken, EBUSY when `bitmap` (may be null) is frozen by a fleece.
  // REQUIRES: mu_ held.
  blockcore::Status check_free_locked(const std::string& id,
                                      const blockcore::DirtyBitmapPtr& bitmap) const;

  blockcore::io::BlockingPool& pool_;
  BrokenHandler on_broken_;
  mutable std::mutex mu_;
  std::map<std::string, FleecePtr> fleeces_;  // GUARDED_BY(mu_)
};

}  // namespace backup
