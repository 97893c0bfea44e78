// Open-time facts about a file the file driver serves: kind, size, alignment for
// O_DIRECT, whether it lives in memory (tmpfs), rotational, and which offload
// operations (punch hole, discard) it supports, probed without changing any data.
// Threading: probe_file() makes blocking syscalls; call it on the open path only.
#pragma once

#include <cstdint>
#include <string_view>

#include "blockcore/base/result.h"

namespace blockcore {

struct FileProperties {
  bool block_device = false;
  uint64_t size = 0;
  // tmpfs/ramfs: reads and writes copy memory and never wait for a device.
  bool memory_backed = false;
  bool rotational = false;
  // Offset/length and memory alignment O_DIRECT needs (1 when not direct).
  uint32_t direct_alignment = 1;
  uint32_t direct_mem_alignment = 1;
  // The file system's preferred I/O size (st_blksize, at least 512).
  uint32_t preferred_alignment = 4096;
  // Logical block size of a block device (BLKZEROOUT/BLKDISCARD granularity).
  uint32_t logical_block_size = 512;
  // Regular files: fallocate(PUNCH_HOLE) works (probed past EOF, changing nothing).
  bool can_punch_hole = false;
  // Block devices: the queue accepts discards.
  bool can_discard = false;
};

// Probes the file open on fd. `writable`: fd is open for writing (enables the punch
// hole probe and the read-only-device check). Errors: EINVAL for a file that is
// neither regular nor a block device, EACCES for a read-only block device opened
// writable, or the failing syscall's errno.
Result<FileProperties> probe_file(int fd, bool direct, bool writable, std::string_view filename);

}  // namespace blockcore
