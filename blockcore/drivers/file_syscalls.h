// Syscall loops of the file driver: full-length pread/pwrite (EINTR, short transfers,
// zeroes past EOF), non-blocking RWF_NOWAIT attempts, fallocate, fdatasync and the
// SEEK_DATA/SEEK_HOLE walk behind block_status. Pure functions of an fd, no state.
// Threading: any thread. The *_nowait functions never wait for the device and may run
// on a network thread; every other function may block and belongs on a BlockingPool
// thread (or inline where the file lives in memory, see FileNode).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/extent.h"

namespace blockcore::posix {

// How a non-blocking attempt ended.
enum class NowaitStop {
  kDone,         // the whole range was transferred
  kWouldBlock,   // the rest needs a blocking call (EAGAIN)
  kUnsupported,  // RWF_NOWAIT is not supported for this file (EOPNOTSUPP)
  kError,        // a real error; see err
};

struct NowaitResult {
  size_t done = 0;  // bytes transferred before stopping
  NowaitStop stop = NowaitStop::kDone;
  int err = 0;  // errno when stop == kError
};

// preadv2(RWF_NOWAIT) until buf is full or the page cache runs out. Bytes past EOF
// read as zeroes (and count as done).
NowaitResult pread_nowait(int fd, std::span<std::byte> buf, uint64_t off);
// pwritev2(RWF_NOWAIT) until buf is written or the kernel would block.
NowaitResult pwrite_nowait(int fd, std::span<const std::byte> buf, uint64_t off);

// Reads buf.size() bytes at off, retrying EINTR and short reads; bytes past EOF read
// as zeroes. `what` names the file in error messages.
Status pread_full(int fd, std::span<std::byte> buf, uint64_t off, std::string_view what);

// Writes all of buf at off with pwritev2 flags (0 or RWF_DSYNC), retrying EINTR and
// short writes. With RWF_DSYNC the kernel may answer EOPNOTSUPP/EINVAL on old kernels;
// that errno is returned unchanged so the caller can fall back.
Status pwrite_full(int fd, std::span<const std::byte> buf, uint64_t off, int rwf_flags,
                   std::string_view what);

// Writes len zero bytes at off from the shared zero buffer (aligned, so it also works
// for O_DIRECT when off and len are aligned).
Status write_zero_bytes(int fd, uint64_t off, uint64_t len, std::string_view what);

// fallocate(fd, mode, off, len) retrying EINTR. Returns 0 or the errno.
int fallocate_errno(int fd, int mode, uint64_t off, uint64_t len);

// ioctl(fd, request, {off, len}) for BLKZEROOUT/BLKDISCARD. Returns 0 or the errno.
int blkdev_range_ioctl_errno(int fd, unsigned long request, uint64_t off, uint64_t len);

// fdatasync retrying EINTR.
Status datasync(int fd, std::string_view what);

// True for the errnos that mean "this operation is not supported here".
bool is_unsupported_errno(int err);

// Walks SEEK_DATA/SEEK_HOLE from off and describes up to len bytes (at most
// max_extents extents): data has flags 0, holes kExtentHole|kExtentZero, depth 1.
// Offsets past the last data (ENXIO) are a hole; a file system without SEEK_DATA
// (EINVAL) reports everything as data. Hole boundaries are rounded inward to
// `align` (the rest counts as data) except at end_of_node.
Result<ExtentList> seek_extents(int fd, uint64_t off, uint64_t len, uint64_t end_of_node,
                                uint32_t align, size_t max_extents, std::string_view what);

}  // namespace blockcore::posix
