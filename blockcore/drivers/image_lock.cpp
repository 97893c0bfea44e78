#include "blockcore/drivers/image_lock.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace blockcore {
namespace {

// Sets (F_RDLCK) or clears (F_UNLCK) an OFD lock on one byte. Returns 0 or an errno.
int set_byte_lock(int fd, int byte, short type) {
  struct flock fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  fl.l_pid = 0;  // required for OFD locks
  while (fcntl(fd, F_OFD_SETLK, &fl) == -1) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

// Tests whether an exclusive lock on one byte could be placed, i.e. whether any other
// open file description holds a lock on it. Returns 0 (free), EAGAIN (held) or an errno.
int test_byte_lock(int fd, int byte) {
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  fl.l_pid = 0;
  while (fcntl(fd, F_OFD_GETLK, &fl) == -1) {
    if (errno != EINTR) return errno;
  }
  return fl.l_type == F_UNLCK ? 0 : EAGAIN;
}

bool is_unsupported_lock_errno(int err) {
  return err == EINVAL || err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS;
}

std::string quoted(std::string_view filename) {
  std::string s = "'";
  s += filename;
  s += "'";
  return s;
}

// Bytes this lock takes: our permissions and the permissions we refuse to share.
bool takes_perm_byte(const LockPerms& p, int i) { return (p.perm >> i) & 1; }
bool takes_shared_byte(const LockPerms& p, int i) { return !((p.shared >> i) & 1); }

void unlock_bytes(int fd, const LockPerms& p) {
  for (int i = 0; i < kPermCount; ++i) {
    if (takes_perm_byte(p, i)) (void)set_byte_lock(fd, kPermLockBase + i, F_UNLCK);
    if (takes_shared_byte(p, i)) (void)set_byte_lock(fd, kSharedLockBase + i, F_UNLCK);
  }
}

// The error for a lock byte another process holds, in QEMU's words plus the file name.
Status conflict_error(int err, bool shared, uint64_t bit, std::string_view filename) {
  std::string m = "Failed to get ";
  if (shared) m += "shared ";
  m += "\"";
  m += perm_name(bit);
  m += "\" lock on " + quoted(filename);
  if (err == EAGAIN || err == EACCES) {
    m += ": is another process using the image?";
    return Status::error(EAGAIN, std::move(m));
  }
  return Status::from_errno(err, m);
}

}  // namespace

LockPerms file_node_lock_perms(bool read_only) {
  LockPerms p;
  p.perm = kPermConsistentRead | (read_only ? 0 : kPermWrite);
  p.shared = kPermAll & ~(kPermWrite | kPermResize);
  return p;
}

const char* perm_name(uint64_t perm_bit) {
  switch (perm_bit) {
    case kPermConsistentRead:
      return "consistent read";
    case kPermWrite:
      return "write";
    case kPermWriteUnchanged:
      return "write unchanged";
    case kPermResize:
      return "resize";
  }
  return "unknown";
}

ImageLock::ImageLock(ImageLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), perms_(other.perms_) {}

ImageLock& ImageLock::operator=(ImageLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    perms_ = other.perms_;
  }
  return *this;
}

ImageLock::~ImageLock() { release(); }

void ImageLock::release() {
  if (fd_ < 0) return;
  unlock_bytes(fd_, perms_);
  fd_ = -1;
}

bool ImageLock::ofd_locks_supported(int fd) {
  return !is_unsupported_lock_errno(test_byte_lock(fd, kPermLockBase));
}

Result<ImageLock> ImageLock::acquire(int fd, std::string_view filename, LockPerms perms,
                                     LockMode mode) {
  if (mode == LockMode::kOff) return ImageLock();
  if (int err = test_byte_lock(fd, kPermLockBase); is_unsupported_lock_errno(err)) {
    if (mode == LockMode::kAuto) {
      spdlog::debug("{}: OFD locks unsupported ({}); image locking skipped", filename,
                    Status::from_errno(err, "F_OFD_GETLK").to_string());
      return ImageLock();
    }
    return Status::error(
        ENOTSUP, "locking is on but " + quoted(filename) +
                     " does not support OFD locks (F_OFD_GETLK: " + std::strerror(err) + ")");
  }

  // The ImageLock owns the bytes from here on, so every failure path unlocks them.
  ImageLock lock(fd, perms);

  // Step 1: take our own bytes (shared locks never conflict with QEMU's shared locks;
  // they fail only against an exclusive lock some other tool took).
  for (int i = 0; i < kPermCount; ++i) {
    for (int base : {kPermLockBase, kSharedLockBase}) {
      const bool take =
          base == kPermLockBase ? takes_perm_byte(perms, i) : takes_shared_byte(perms, i);
      if (!take) continue;
      if (int err = set_byte_lock(fd, base + i, F_RDLCK); err != 0) {
        std::string m =
            "Failed to lock byte " + std::to_string(base + i) + " of " + quoted(filename);
        if (err == EAGAIN || err == EACCES) {
          return Status::error(EAGAIN, m + ": is another process using the image?");
        }
        return Status::from_errno(err, m);
      }
    }
  }

  // Step 2: nobody else may refuse to share what we take...
  for (int i = 0; i < kPermCount; ++i) {
    if (!takes_perm_byte(perms, i)) continue;
    if (int err = test_byte_lock(fd, kSharedLockBase + i); err != 0) {
      return conflict_error(err, /*shared=*/false, uint64_t{1} << i, filename);
    }
  }
  // ...and nobody else may hold what we refuse to share.
  for (int i = 0; i < kPermCount; ++i) {
    if (!takes_shared_byte(perms, i)) continue;
    if (int err = test_byte_lock(fd, kPermLockBase + i); err != 0) {
      return conflict_error(err, /*shared=*/true, uint64_t{1} << i, filename);
    }
  }
  return lock;
}

}  // namespace blockcore
