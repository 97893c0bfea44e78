// FileNode: the `file` protocol driver — a regular file or a block device served with
// pread/pwrite, fdatasync, fallocate (zero range, punch hole), BLKZEROOUT/BLKDISCARD,
// SEEK_DATA/SEEK_HOLE, optional O_DIRECT with aligned bounce buffers, and QEMU-
// compatible image locking (image_lock.h).
// Threading: all methods may run concurrently on any executor. Reads and writes up to
// inline_io_limit() bytes first try the syscall inline with RWF_NOWAIT (served from the
// page cache, never waiting for the device) and fall back to the BlockingPool only when
// the kernel would block; such transfers on tmpfs/ramfs are done inline (memory copies,
// no device to wait for), and read_now/write_now do the same without a coroutine.
// Larger transfers go to the pool, so their copies run beside the network thread. read_to_pipe splices page references (no copy): inline on
// memory-backed files, on the pool otherwise; write_from_pipe copies pages in and
// follows the rules of a write. fdatasync, fallocate, lseek, fadvise and O_DIRECT I/O always run
// on the pool. The only mutable state is a handful of atomics.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/drivers/file_probe.h"
#include "blockcore/drivers/image_lock.h"
#include "blockcore/io/aligned_buffer.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/node_spec.h"

namespace blockcore {

class FileNode final : public BlockNode {
 public:
  // Opens spec.file.filename (spec.driver must be "file") read-only or read-write per
  // spec.read_only, takes the image lock per spec.file.locking, and probes the file.
  // Blocking: call on the control/start-up path. `pool` must outlive the node.
  // Errors: ENOENT/EACCES/... from open(2) ("Could not open 'f': ..."), EINVAL for an
  // unsupported file type or bad options, EAGAIN when another process holds a
  // conflicting lock ("Failed to get \"write\" lock on 'f': ...").
  static Result<std::shared_ptr<FileNode>> open(const NodeSpec& spec, io::BlockingPool& pool);

  ~FileNode() override;

  std::string describe() const override { return filename_; }
  const std::string& filename() const { return filename_; }
  bool direct() const { return direct_; }
  bool is_block_device() const { return props_.block_device; }
  bool memory_backed() const { return props_.memory_backed; }
  // True when QEMU-compatible lock bytes are held on the image.
  bool locked() const { return lock_.held(); }
  // Bytes of storage the file takes (st_blocks * 512; a sparse file counts only what it
  // holds). 0 when fstat fails.
  uint64_t allocated_bytes() const;
  // Buffered and writable: a payload in a pipe is spliced into the page cache.
  bool can_write_from_pipe() const override { return !direct_ && !read_only(); }
  // True when the file cannot hold a hole: a block device, or a regular file whose
  // storage covers its size (one fstat; a file with a hole but extra metadata blocks may
  // pass, which only costs a hole reported as data).
  bool fully_allocated() const;

  // Largest read/write tried inline on the calling thread (default kInlineIoLimit);
  // 0 sends everything to the pool. A tuning knob for benchmarks and the runtime.
  static constexpr size_t kInlineIoLimit = 64 * 1024;
  size_t inline_io_limit() const { return inline_io_limit_.load(std::memory_order_relaxed); }
  void set_inline_io_limit(size_t bytes) {
    inline_io_limit_.store(bytes, std::memory_order_relaxed);
  }

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override;
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) override;
  // Up to inline_io_limit() bytes: a memory-backed file reads and writes now; any other
  // buffered file reads now what the page cache holds (RWF_NOWAIT) and writes later.
  std::optional<Status> do_read_now(uint64_t off, std::span<std::byte> buf) override;
  std::optional<Status> do_write_now(uint64_t off, std::span<const std::byte> buf,
                                     IoFlags flags) override;
  // Splices file pages into the pipe when the file is buffered and fully allocated
  // (else ENOTSUP: O_DIRECT bypasses the page cache, and holes are worth reporting).
  Task<Status> do_read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe) override;
  Task<Status> do_write_from_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe,
                                  IoFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_flush() override;
  Task<Status> do_cache(uint64_t off, uint64_t len) override;
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override;
  Task<Status> do_truncate(uint64_t new_size) override;

 private:
  FileNode(const NodeSpec& spec, io::BlockingPool& pool, int fd, int tail_fd,
           const FileProperties& props, ImageLock lock);

  // Whether a transfer of n bytes is tried on the calling thread (inline_io_limit()).
  bool inline_size(size_t n) const { return n <= inline_io_limit() || pool_.threads() == 0; }
  // Whether a write runs on write_lane_ rather than on any pool thread.
  bool takes_turns(bool fua) const { return !direct_ && !fua && !props_.block_device; }
  // Blocking bodies, run on the pool (or inline for memory-backed files).
  Status read_blocking(uint64_t off, std::span<std::byte> buf);
  Status write_blocking(uint64_t off, std::span<const std::byte> buf, bool fua);
  Status write_data(uint64_t off, std::span<const std::byte> buf, int rwf_flags);
  Status write_pipe_blocking(uint64_t off, io::PipeBuffer& pipe, bool fua);
  Status direct_read(uint64_t off, std::span<std::byte> buf);
  Status direct_write(uint64_t off, std::span<const std::byte> buf, int rwf_flags);
  Status zero_blocking(uint64_t off, uint64_t len, IoFlags flags);
  Status zero_regular(uint64_t off, uint64_t len, IoFlags flags);
  Status zero_block_device(uint64_t off, uint64_t len, IoFlags flags);
  Status zero_by_writing(uint64_t off, uint64_t len);
  Status discard_blocking(uint64_t off, uint64_t len);
  Status flush_blocking();
  Status sync_failed(const Status& s);  // records a sticky flush error, returns s
  // EIO once a flush failed: a FUA write cannot be promised durable after that.
  Status check_earlier_flush() const;

  const std::string filename_;
  io::BlockingPool& pool_;
  const int fd_;
  // Direct mode on a file whose size is not aligned: a buffered fd for the tail.
  const int tail_fd_;
  const bool direct_;
  const FileProperties props_;
  // Read and write inline (memory-backed file, buffered): no RWF_NOWAIT needed.
  const bool inline_data_;
  ImageLock lock_;
  io::AlignedBufferPool bounce_pool_;
  // Buffered writes of a regular file take turns on the pool: the kernel serializes
  // them on the inode lock anyway (O_DIRECT, FUA and block-device writes do not take
  // turns: they can overlap).
  io::BlockingPool::Lane write_lane_;

  std::atomic<size_t> inline_io_limit_{kInlineIoLimit};
  // What the file turned out to support; cleared on the first EOPNOTSUPP.
  std::atomic<bool> nowait_read_{true};
  std::atomic<bool> nowait_write_{true};
  std::atomic<bool> dsync_write_{true};
  std::atomic<bool> punch_hole_;
  std::atomic<bool> zero_range_{true};
  // errno of a failed fdatasync: the kernel may have dropped the dirty pages, so no
  // later flush may claim success (QEMU's page_cache_inconsistent).
  std::atomic<int> sticky_sync_error_{0};
};

}  // namespace blockcore
