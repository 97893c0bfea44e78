#include "blockcore/drivers/file_syscalls.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "blockcore/io/aligned_buffer.h"

namespace blockcore::posix {
namespace {

std::string ctx(std::string_view op, std::string_view what) {
  std::string s(op);
  s += " ";
  s += what;
  return s;
}

// Classifies the errno of a failed RWF_NOWAIT call into r; false means "retry" (EINTR).
bool stop_on_nowait_errno(NowaitResult& r) {
  if (errno == EINTR) return false;
  if (errno == EAGAIN) {
    r.stop = NowaitStop::kWouldBlock;
  } else if (errno == EOPNOTSUPP || errno == EINVAL) {
    // EINVAL: kernels without RWF_NOWAIT reject the unknown flag.
    r.stop = NowaitStop::kUnsupported;
  } else {
    r.stop = NowaitStop::kError;
    r.err = errno;
  }
  return true;
}

}  // namespace

bool is_unsupported_errno(int err) {
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == ENOTTY;
}

NowaitResult pread_nowait(int fd, std::span<std::byte> buf, uint64_t off) {
  NowaitResult r;
  while (r.done < buf.size()) {
    struct iovec iov = {buf.data() + r.done, buf.size() - r.done};
    const ssize_t n = preadv2(fd, &iov, 1, static_cast<off_t>(off + r.done), RWF_NOWAIT);
    if (n > 0) {
      r.done += static_cast<size_t>(n);
    } else if (n == 0) {  // EOF: the rest reads as zeroes
      std::memset(buf.data() + r.done, 0, buf.size() - r.done);
      r.done = buf.size();
    } else if (stop_on_nowait_errno(r)) {
      return r;
    }
  }
  return r;
}

NowaitResult pwrite_nowait(int fd, std::span<const std::byte> buf, uint64_t off) {
  NowaitResult r;
  while (r.done < buf.size()) {
    struct iovec iov = {const_cast<std::byte*>(buf.data() + r.done), buf.size() - r.done};
    const ssize_t n = pwritev2(fd, &iov, 1, static_cast<off_t>(off + r.done), RWF_NOWAIT);
    if (n > 0) {
      r.done += static_cast<size_t>(n);
    } else if (n == 0) {
      r.stop = NowaitStop::kWouldBlock;
      return r;
    } else if (stop_on_nowait_errno(r)) {
      return r;
    }
  }
  return r;
}

Status pread_full(int fd, std::span<std::byte> buf, uint64_t off, std::string_view what) {
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n =
        pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {  // EOF of a regular file: zeroes, like a sparse tail
      std::memset(buf.data() + done, 0, buf.size() - done);
      return Status::ok();
    } else if (errno != EINTR) {
      return Status::from_errno(errno, ctx("pread", what));
    }
  }
  return Status::ok();
}

Status pwrite_full(int fd, std::span<const std::byte> buf, uint64_t off, int rwf_flags,
                   std::string_view what) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n;
    if (rwf_flags == 0) {
      n = pwrite(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(off + done));
    } else {
      struct iovec iov = {const_cast<std::byte*>(buf.data() + done), buf.size() - done};
      n = pwritev2(fd, &iov, 1, static_cast<off_t>(off + done), rwf_flags);
    }
    if (n > 0) {
      done += static_cast<size_t>(n);
    } else if (n == 0) {
      return Status::from_errno(ENOSPC, ctx("pwrite", what));
    } else if (errno != EINTR) {
      return Status::from_errno(errno, ctx("pwrite", what));
    }
  }
  return Status::ok();
}

Status write_zero_bytes(int fd, uint64_t off, uint64_t len, std::string_view what) {
  const std::span<const std::byte> zeroes = io::zero_buffer();
  while (len > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeroes.size()));
    FLEECE_RETURN_IF_ERROR(pwrite_full(fd, zeroes.first(n), off, 0, what));
    off += n;
    len -= n;
  }
  return Status::ok();
}

int fallocate_errno(int fd, int mode, uint64_t off, uint64_t len) {
  while (fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len)) == -1) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

int blkdev_range_ioctl_errno(int fd, unsigned long request, uint64_t off, uint64_t len) {
  uint64_t range[2] = {off, len};
  while (ioctl(fd, request, range) == -1) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

Status datasync(int fd, std::string_view what) {
  while (fdatasync(fd) == -1) {
    if (errno != EINTR) return Status::from_errno(errno, ctx("fdatasync", what));
  }
  return Status::ok();
}

Result<ExtentList> seek_extents(int fd, uint64_t off, uint64_t len, uint64_t end_of_node,
                                uint32_t align, size_t max_extents, std::string_view what) {
  ExtentList list;
  const uint64_t end = off + len;
  const uint64_t mask = align > 1 ? align - 1 : 0;
  uint64_t pos = off;
  while (pos < end && list.size() < max_extents) {
    uint64_t data_start;
    const off_t d = lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (d >= 0) {
      data_start = static_cast<uint64_t>(d);
    } else if (errno == ENXIO) {  // no data at or after pos
      data_start = end_of_node;
    } else if (errno == EINVAL || is_unsupported_errno(errno)) {
      append_extent(list, Extent{end - pos, 0, 1});  // no SEEK_DATA: all data
      break;
    } else {
      return Status::from_errno(errno, ctx("lseek(SEEK_DATA)", what));
    }

    if (data_start > pos) {
      // [pos, data_start) is a hole; round its end down to the alignment unless it is
      // the end of the node (its start is aligned: it is pos or a rounded hole start).
      uint64_t hole_end = std::min(data_start, end_of_node);
      if (hole_end != end_of_node) hole_end &= ~mask;
      if (hole_end > pos) {
        append_extent(list, Extent{std::min(hole_end, end) - pos, kExtentHole | kExtentZero, 1});
        pos = std::min(hole_end, end);
        continue;
      }
      // The hole is smaller than one aligned block: count that block as data.
    }

    const off_t h = lseek(fd, static_cast<off_t>(pos), SEEK_HOLE);
    uint64_t data_end;
    if (h >= 0) {
      data_end = static_cast<uint64_t>(h);
    } else if (errno == ENXIO) {  // pos is at or past EOF (the file shrank): a hole
      append_extent(list, Extent{end - pos, kExtentHole | kExtentZero, 1});
      break;
    } else if (errno == EINVAL || is_unsupported_errno(errno)) {
      data_end = end;
    } else {
      return Status::from_errno(errno, ctx("lseek(SEEK_HOLE)", what));
    }
    // Round the data end up to the alignment (a partial block is data) and past pos.
    if (data_end < end_of_node) data_end = (data_end + mask) & ~mask;
    if (data_end <= pos) data_end = pos + mask + 1;  // pos is in a sub-block hole
    data_end = std::min(data_end, end);
    if (data_end > pos) {
      append_extent(list, Extent{data_end - pos, 0, 1});
      pos = data_end;
    }
  }
  return list;
}

}  // namespace blockcore::posix
