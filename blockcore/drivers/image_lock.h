// ImageLock: image locking compatible with QEMU's byte-range scheme (file-posix.c), so
// fleeced, qemu-img, qemu-io and QEMU itself never write one image together. Each
// permission bit P (QEMU's BLK_PERM_*: consistent read, write, write unchanged, resize)
// has two lock bytes: kPermLockBase + P, shared-locked by whoever holds P, and
// kSharedLockBase + P, shared-locked by whoever refuses to share P. Acquiring first
// takes our bytes, then tests (F_OFD_GETLK) the opposite bytes of everyone else.
// Locks are Linux open-file-description (OFD) locks: they belong to the fd they were
// taken on, and closing that fd releases them.
// Threading: an ImageLock is a move-only value owned by one node; acquire() and
// release() make blocking fcntl calls and belong on the open/close path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/node_spec.h"

namespace blockcore {

// QEMU's permission bits, with QEMU's values (their bit index selects the lock byte).
inline constexpr uint64_t kPermConsistentRead = 1u << 0;
inline constexpr uint64_t kPermWrite = 1u << 1;
inline constexpr uint64_t kPermWriteUnchanged = 1u << 2;
inline constexpr uint64_t kPermResize = 1u << 3;
inline constexpr uint64_t kPermAll = 0xf;
inline constexpr int kPermCount = 4;

// Lock byte offsets (QEMU: RAW_LOCK_PERM_BASE / RAW_LOCK_SHARED_BASE; libvirt uses 0).
inline constexpr int kPermLockBase = 100;
inline constexpr int kSharedLockBase = 200;

// What a user of the image takes (perm) and lets others take at the same time (shared).
struct LockPerms {
  uint64_t perm = 0;
  uint64_t shared = kPermAll;
};

// The permissions a FileNode takes. Like a QEMU format driver on its file: it reads
// consistently, writes when writable, and never lets another process write or resize
// the image underneath it (so a plain `qemu-img info` is refused, `-U` is not).
LockPerms file_node_lock_perms(bool read_only);

// QEMU's name of one permission bit ("consistent read", "write", ...).
const char* perm_name(uint64_t perm_bit);

class ImageLock {
 public:
  ImageLock() = default;  // holds nothing
  ImageLock(ImageLock&& other) noexcept;
  ImageLock& operator=(ImageLock&& other) noexcept;
  ImageLock(const ImageLock&) = delete;
  ImageLock& operator=(const ImageLock&) = delete;
  ~ImageLock();  // releases the bytes (the fd must still be open)

  // Locks the image open on fd for `perms`. fd must stay open while the lock is held.
  // mode kOff: takes nothing. kAuto: takes nothing (quietly) where the file system
  // does not support OFD locks. kOn: such a file system is an error (ENOTSUP).
  // A conflict with another process fails with EAGAIN and a message in QEMU's words,
  // naming the file: `Failed to get "write" lock on 'disk.img': ...`.
  static Result<ImageLock> acquire(int fd, std::string_view filename, LockPerms perms,
                                   LockMode mode);

  // True when lock bytes are held.
  bool held() const { return fd_ >= 0; }
  const LockPerms& perms() const { return perms_; }

  // Unlocks every byte this lock took. Idempotent.
  void release();

  // True when fd's file system supports OFD locks (F_OFD_GETLK works on it).
  static bool ofd_locks_supported(int fd);

 private:
  ImageLock(int fd, LockPerms perms) : fd_(fd), perms_(perms) {}

  int fd_ = -1;
  LockPerms perms_;
};

}  // namespace blockcore
