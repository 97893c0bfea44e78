// Qcow2BitmapStore: persistent dirty bitmaps in the qcow2 bitmaps extension (QEMU's
// docs/interop/qcow2.rst, "Bitmaps extension"), readable and writable by QEMU both ways,
// and kept crash-safe beyond what QEMU does:
//   - open: loads every bitmap of the directory with its exact content and flags (auto =
//     enabled; granularity; in_use). A bitmap found in_use (an unclean QEMU shutdown, or
//     any bitmap while the bitmaps autoclear bit is clear) is loaded inconsistent (all
//     dirty), unless fleece's own record says fleeced kept it crash-safe (below). A
//     bitmap whose extra data is not marked compatible is loaded read-only and
//     inconsistent, and a read-write open of its image is refused (the spec says it
//     must be left as is, so fleeced could not keep it current); reserved flags, other
//     types and every other broken structure fail the open, as in QEMU.
//   - read-write open: every consistent bitmap gets all its data clusters allocated up
//     front (a fully populated table), is flagged in_use (so QEMU never trusts a copy
//     fleeced is changing) and is listed in fleece's header extension, whose validity is
//     tied to a fleece autoclear bit: any other program that opens the image read-write
//     clears that bit, so fleeced then stops trusting the record and treats in_use
//     bitmaps as inconsistent. Order: data and tables, refcounts, sync; a new directory,
//     sync; the header, sync; only then are the old directory and tables freed — a crash
//     at any point leaves the old or the new state plus leaks the next open reclaims.
//   - writes: persist_marks() writes the changed bitmap bytes in place (whole 4 KiB
//     blocks) and syncs once per batch of concurrent callers (group commit), before the
//     data write they cover is issued; bits are set in memory only after the sync.
//   - create / remove / write_bitmap: the same crash-safe order (new clusters, then a new
//     directory, then the header, then frees); an inconsistent bitmap keeps its on-disk
//     copy (in_use) until it is cleared (then it gets a new layout) or removed.
//   - close: writes every bitmap exactly, clears in_use and drops the record.
// The same class serves a bitmaps-only container file for raw nodes (open_container):
// a qcow2 image with no data clusters whose virtual size equals the node's size.
// Threading: see BitmapStore. Locks, always taken in this order: the operation lock
// (create, remove, write_bitmap, close), the commit lock (every write of bitmap data and
// every change of the list persist_marks reads; persist_marks takes only this one) and
// the image's metadata lock (allocation, directory and header). Callers hold none.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blockcore/base/async_mutex.h"
#include "blockcore/base/result.h"
#include "blockcore/bitmap/bitmap_store.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/qcow2/bitmap_directory.h"
#include "blockcore/qcow2/qcow2_format.h"

namespace blockcore::qcow2 {

class Image;

class Qcow2BitmapStore;
using Qcow2BitmapStorePtr = std::shared_ptr<Qcow2BitmapStore>;

// Opens the store of `image` (REQUIRES: image loaded, refcounts repaired if needed; the
// caller holds no lock; image outlives the store or the store is closed first) and
// appends the bitmaps it holds to `loaded`. A read-write image is taken over as
// described above before this returns; a read-only one is only read.
Task<Result<Qcow2BitmapStorePtr>> open_bitmap_store(Image& image,
                                                    std::vector<DirtyBitmapPtr>& loaded);

// Opens (create: creates when missing, as qcow2 v3 with 64 KiB clusters and virtual
// size `disk_size` rounded up to 512) a bitmaps-only container file for a node of
// `disk_size` bytes, locked like any image; EINVAL when the container's virtual size
// differs, it is not v3, or it maps guest data (L1 entries, snapshots, a backing or data
// file), with the path in the message; ENOENT when missing and not to be created. A
// container left dirty by a crash gets its refcounts repaired. The store owns the
// container's file and image; close() writes everything back and clears the dirty bit.
// Blocking: call on the control/start-up path (it runs its I/O on a private io_context).
Result<Qcow2BitmapStorePtr> open_bitmap_container(const std::string& path, uint64_t disk_size,
                                                  bool read_only, bool create, io::BlockingPool& pool,
                                                  std::vector<DirtyBitmapPtr>& loaded);

class Qcow2BitmapStore final : public BitmapStore {
 public:
  // Use open_bitmap_store() / open_bitmap_container(). `disk_size`: the size of the
  // disk the bitmaps cover (the image's virtual size, or a container's node's size).
  Qcow2BitmapStore(Image& image, uint64_t disk_size, std::string description);
  ~Qcow2BitmapStore() override;

  bool writable() const override;
  std::string describe() const override { return description_; }
  Task<Status> create(const DirtyBitmapPtr& b) override;
  Task<Status> remove(const DirtyBitmapPtr& b) override;
  Task<Status> persist_marks(std::span<const DirtyBitmapPtr> bitmaps, uint64_t off,
                             uint64_t len) override;
  Task<Status> write_bitmap(const DirtyBitmapPtr& b, std::function<void(HBitmap&)> change) override;
  Task<Status> close() override;

  // Syncs persist_marks() has issued (one per batch), for tests and statistics.
  uint64_t commits() const { return commits_.load(std::memory_order_relaxed); }

 private:
  friend Task<Result<Qcow2BitmapStorePtr>> open_bitmap_store(Image&, std::vector<DirtyBitmapPtr>&);
  friend Result<Qcow2BitmapStorePtr> open_bitmap_container(const std::string&, uint64_t, bool, bool,
                                                           io::BlockingPool&,
                                                           std::vector<DirtyBitmapPtr>&);

  // One bitmap of the directory, as stored now.
  struct Stored {
    BitmapDirEntry entry;          // table location, flags, name, extra data
    DirtyBitmapPtr bitmap;         // the memory copy
    std::vector<uint64_t> table;   // its table entries
    // A fully populated table of the exact size whose content is kept a superset of
    // memory: the bitmap is crash-safe and persist_marks() writes into it.
    bool maintained = false;
  };
  // Clusters a replaced layout leaves to free once the new one is published.
  struct Garbage {
    std::vector<uint64_t> clusters;  // host offsets of single clusters
    std::vector<std::pair<uint64_t, uint64_t>> tables;  // offset, clusters
  };
  // A queued persist_marks() call and where its outcome goes.
  struct CommitSlot {
    bool done = false;
    Status status;
  };
  struct PendingMark {
    std::vector<DirtyBitmapPtr> bitmaps;
    uint64_t off = 0;
    uint64_t len = 0;
    std::shared_ptr<CommitSlot> slot;
  };

  // --- open (qcow2_bitmap_load.cpp) ---
  // The body of open_bitmap_store(), for bitmaps of `disk_size` bytes.
  static Task<Result<Qcow2BitmapStorePtr>> open(Image& image, uint64_t disk_size,
                                                std::vector<DirtyBitmapPtr>& loaded);
  // REQUIRE the metadata lock:
  Task<Status> load(std::vector<DirtyBitmapPtr>& loaded);
  Task<Status> read_content(const Stored& s);
  // Read-write open: layouts for consistent bitmaps, in_use everywhere, the record.
  Task<Status> take_over();

  // --- layouts and publishing (qcow2_bitmap_layout.cpp); REQUIRES the metadata lock ---
  // Gives `s` a fully populated table of the exact size holding `content`: allocated
  // data clusters are reused when `reuse` (their content is then already right; new
  // ones are written), else every cluster is new and written; a new table is written
  // unless the old one can stay. What the old layout no longer needs goes to `garbage`.
  // Nothing is durable until write_back().
  Task<Status> build_layout(Stored& s, const HBitmap& content, bool reuse, Garbage& garbage);
  // Writes the whole content into the data clusters of a maintained layout.
  Task<Status> write_content(const Stored& s, const HBitmap& content);
  // Makes `next` the stored directory, durably: its clusters and refcounts, a new
  // directory, the header (bitmaps extension, autoclear bits, fleece record listing the
  // maintained entries unless `closing`, which also clears in_use of maintained
  // entries), then frees the old directory. Empty `next`: the extension is dropped.
  // Sets *recorded to whether the record was written (it is left out when it does not
  // fit in cluster 0). On error nothing changed on disk but leaks.
  Task<Status> publish(std::vector<Stored>& next, bool closing, bool* recorded);
  // Frees clusters no longer referenced by the header (after publish()).
  Task<Status> free_garbage(const Garbage& garbage);
  // Every cluster of a layout (table and data), to free it whole.
  Garbage layout_of(const Stored& s) const;

  // --- writing bits (qcow2_bitmap_persist.cpp); REQUIRES the commit lock ---
  Task<Status> commit(std::vector<PendingMark>& batch);
  Stored* find_stored(const DirtyBitmap* b);

  Image& image_;
  std::unique_ptr<Image> owned_image_;  // a container's image (open_bitmap_container)
  const uint64_t disk_size_;
  const std::string description_;
  const bool read_only_;

  AsyncMutex op_lock_;
  AsyncMutex commit_lock_;
  std::vector<Stored> entries_;  // directory order; changed under both locks above
  bool closed_ = false;          // GUARDED_BY(commit_lock_)
  // False once fleece's record did not fit in cluster 0: no record is written any more
  // and no bitmap is durable (they are kept exact on close only).
  bool record_fits_ = true;      // GUARDED_BY(op_lock_ and the metadata lock)

  std::mutex queue_mu_;
  std::vector<PendingMark> queue_;  // GUARDED_BY(queue_mu_)
  std::atomic<uint64_t> commits_{0};
};

}  // namespace blockcore::qcow2
