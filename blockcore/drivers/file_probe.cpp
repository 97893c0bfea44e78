#include "blockcore/drivers/file_probe.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <string>

#include "blockcore/drivers/file_syscalls.h"

namespace blockcore {
namespace {

std::string quoted(std::string_view filename) { return "'" + std::string(filename) + "'"; }

// Reads one integer from a sysfs file of the queue of device `dev`; partitions have
// no queue/ of their own, so their parent disk's is tried too.
bool read_queue_attr(dev_t dev, const char* attr, uint64_t* value) {
  const std::string base =
      "/sys/dev/block/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  for (const char* rel : {"/queue/", "/../queue/"}) {
    std::ifstream in(base + rel + attr);
    if (in >> *value) return true;
  }
  return false;
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Offset and memory alignment for O_DIRECT on a regular file: statx(STATX_DIOALIGN)
// where the kernel knows it, else 4096, which every device accepts.
void probe_direct_alignment_regular(int fd, FileProperties* p) {
  p->direct_alignment = 4096;
  p->direct_mem_alignment = 4096;
#ifdef STATX_DIOALIGN
  struct statx sx = {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
      is_power_of_two(sx.stx_dio_offset_align) && is_power_of_two(sx.stx_dio_mem_align)) {
    p->direct_alignment = sx.stx_dio_offset_align;
    p->direct_mem_alignment = sx.stx_dio_mem_align;
  }
#endif
}

}  // namespace

Result<FileProperties> probe_file(int fd, bool direct, bool writable, std::string_view filename) {
  FileProperties p;
  struct stat st = {};
  if (fstat(fd, &st) != 0) return Status::from_errno(errno, "fstat " + quoted(filename));

  if (S_ISBLK(st.st_mode)) {
    p.block_device = true;
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
      return Status::from_errno(errno, "BLKGETSIZE64 " + quoted(filename));
    }
    p.size = size;
    int ro = 0;
    if (writable && ioctl(fd, BLKROGET, &ro) == 0 && ro) {
      return Status::error(EACCES, "The device " + quoted(filename) + " is not writable");
    }
    int ssz = 0;
    if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0 && is_power_of_two(ssz)) {
      p.logical_block_size = static_cast<uint32_t>(ssz);
    }
    p.direct_alignment = p.logical_block_size;
    p.direct_mem_alignment = p.logical_block_size;
    uint64_t v = 0;
    p.rotational = read_queue_attr(st.st_rdev, "rotational", &v) && v != 0;
    p.can_discard = read_queue_attr(st.st_rdev, "discard_max_bytes", &v) ? v != 0 : true;
  } else if (S_ISREG(st.st_mode)) {
    p.size = static_cast<uint64_t>(st.st_size);
    struct statfs sfs = {};
    if (fstatfs(fd, &sfs) == 0) {
      p.memory_backed = sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC;
    }
    probe_direct_alignment_regular(fd, &p);
    uint64_t v = 0;
    p.rotational = !p.memory_backed && read_queue_attr(st.st_dev, "rotational", &v) && v != 0;
    if (writable) {
      // Punching a hole past EOF with KEEP_SIZE changes nothing but tells whether the
      // file system supports it.
      const uint64_t past_eof = ((p.size + 65535) & ~uint64_t{65535}) + 65536;
      const int err =
          posix::fallocate_errno(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, past_eof, 65536);
      p.can_punch_hole = err == 0;
    }
  } else {
    return Status::invalid("'file' driver requires " + quoted(filename) +
                           " to be a regular file or a block device");
  }

  if (st.st_blksize >= 512 && is_power_of_two(static_cast<uint64_t>(st.st_blksize))) {
    p.preferred_alignment = static_cast<uint32_t>(std::min<blksize_t>(st.st_blksize, 1 << 20));
  }
  if (!direct) {
    p.direct_alignment = 1;
    p.direct_mem_alignment = 1;
  }
  return p;
}

}  // namespace blockcore
