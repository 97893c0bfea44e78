// Qcow2BitmapStore: persistent dirty bitmaps in the qcow2 bitmaps extension (QEMU's
// docs/interop/qcow2.rst, "Bitmaps extension"), readable and writable by QEMU both ways,
// and kept crash-safe beyond what QEMU does:
//   - open: loads every bitmap of the directory with its exact content and flags (auto =
//     enabled; granularity; in_use). A bitmap found in_use (an unclean QEMU shutdown, or
//     a program that cleared the bitmaps autoclear bit) is loaded inconsistent
//     (all dirty), unless fleece's own record says fleeced kept it crash-safe (below).
//   - read-write open: every consistent bitmap gets all its data clusters allocated up
//     front, is flagged in_use (so QEMU never trusts a copy fleeced is changing) and is
//     listed in fleece's header extension, whose validity is tied to a fleece autoclear
//     bit: any other program that opens the image read-write clears that bit, so fleeced
//     then stops trusting the record and treats in_use bitmaps as inconsistent.
//   - writes: persist_marks() writes the changed bitmap bytes in place (the clusters are
//     already allocated) and syncs once per batch of concurrent callers, before the data
//     write they cover is issued.
//   - close: writes every bitmap exactly, clears in_use and drops the record.
// The same class serves a bitmaps-only container file for raw nodes (open_container):
// a qcow2 image with no data clusters whose virtual size equals the node's size.
// Threading: see BitmapStore. Methods take the image's metadata lock themselves when
// they change metadata; callers hold no lock.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/bitmap/bitmap_store.h"
#include "blockcore/io/blocking_pool.h"

namespace blockcore::qcow2 {

class Image;

// The fleece header extension (a type QEMU does not know, so it keeps it verbatim) and
// the autoclear bit that vouches for it. See qcow2_bitmap_store.cpp for the payload.
inline constexpr uint32_t kExtFleeceBitmaps = 0x666c6362;  // "flcb"
inline constexpr uint64_t kAutoclearFleeceBitmaps = 1ull << 63;

class Qcow2BitmapStore;
using Qcow2BitmapStorePtr = std::shared_ptr<Qcow2BitmapStore>;

// Opens the store of `image` (REQUIRES: image loaded, refcounts repaired if needed; the
// caller holds no lock; image outlives the store or the store is closed first) and
// appends the bitmaps it holds to `loaded`.
Task<Result<Qcow2BitmapStorePtr>> open_bitmap_store(Image& image,
                                                    std::vector<DirtyBitmapPtr>& loaded);

// Opens (create: creates when missing, as qcow2 v3 with 64 KiB clusters and virtual
// size `disk_size`) a bitmaps-only container file for a node of `disk_size` bytes;
// EINVAL when the container's virtual size differs or it holds guest data, with the
// path in the message. The store owns the container's file and image.
// Blocking: call on the control/start-up path (it runs its I/O on a private io_context).
Result<Qcow2BitmapStorePtr> open_bitmap_container(const std::string& path, uint64_t disk_size,
                                                  bool read_only, bool create, io::BlockingPool& pool,
                                                  std::vector<DirtyBitmapPtr>& loaded);

}  // namespace blockcore::qcow2
