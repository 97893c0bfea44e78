#include "blockcore/drivers/file_node.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "blockcore/drivers/file_syscalls.h"
#include "blockcore/io/pipe_buffer.h"

namespace blockcore {
namespace {

constexpr size_t kBounceBufferSize = 1u << 20;
constexpr size_t kBounceBuffersCached = 8;
constexpr size_t kMaxExtentsPerCall = 1024;

// Closes an fd on scope exit unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string quoted(const std::string& s) { return "'" + s + "'"; }

int open_errno(const std::string& filename, int flags, int* fd) {
  do {
    *fd = ::open(filename.c_str(), flags);
  } while (*fd < 0 && errno == EINTR);
  return *fd < 0 ? errno : 0;
}

}  // namespace

Result<std::shared_ptr<FileNode>> FileNode::open(const NodeSpec& spec, io::BlockingPool& pool) {
  if (spec.driver != "file") {
    return Status::invalid("FileNode::open called for driver '" + spec.driver + "'");
  }
  const FileOptions& opts = spec.file;
  if (opts.filename.empty()) return Status::invalid("'file' driver needs a filename");

  const int access = spec.read_only ? O_RDONLY : O_RDWR;
  const int flags = access | O_CLOEXEC | (opts.direct ? O_DIRECT : 0);
  int raw_fd = -1;
  if (int err = open_errno(opts.filename, flags, &raw_fd); err != 0) {
    std::string what = "Could not open " + quoted(opts.filename);
    if (err == EINVAL && opts.direct) what += " with O_DIRECT (direct: true)";
    return Status::from_errno(err, what);
  }
  FdGuard fd(raw_fd);

  // Lock before anything else touches the file.
  Result<ImageLock> lock = ImageLock::acquire(fd.get(), opts.filename,
                                              file_node_lock_perms(spec.read_only), opts.locking);
  if (!lock.is_ok()) return lock.status();

  Result<FileProperties> props = probe_file(fd.get(), opts.direct, !spec.read_only, opts.filename);
  if (!props.is_ok()) return props.status();

  // O_DIRECT cannot reach the last partial block of an unaligned file; a buffered fd
  // serves that tail.
  int raw_tail_fd = -1;
  if (opts.direct && props->size % props->direct_alignment != 0) {
    if (int err = open_errno(opts.filename, access | O_CLOEXEC, &raw_tail_fd); err != 0) {
      return Status::from_errno(err, "Could not open " + quoted(opts.filename));
    }
  }
  FdGuard tail_fd(raw_tail_fd);

  std::shared_ptr<FileNode> node(new FileNode(spec, pool, fd.release(), tail_fd.release(),
                                              props.value(), std::move(lock.value())));
  return node;
}

FileNode::FileNode(const NodeSpec& spec, io::BlockingPool& pool, int fd, int tail_fd,
                   const FileProperties& props, ImageLock lock)
    : BlockNode(spec.node_name, "file"),
      filename_(spec.file.filename),
      pool_(pool),
      fd_(fd),
      tail_fd_(tail_fd),
      direct_(spec.file.direct),
      props_(props),
      inline_data_(props.memory_backed && !spec.file.direct),
      lock_(std::move(lock)),
      bounce_pool_(kBounceBufferSize,
                   std::max<size_t>(io::kDirectIoAlignment, props.direct_mem_alignment),
                   kBounceBuffersCached),
      write_lane_(pool.make_lane()),
      punch_hole_(props.can_punch_hole) {
  const bool rw = !spec.read_only;
  NodeInfo info;
  info.size = props.size;
  info.read_only = spec.read_only;
  info.can_flush = rw;
  info.can_fua = rw;
  info.can_trim = rw && (props.block_device ? props.can_discard : props.can_punch_hole);
  info.can_zero = rw && (props.block_device || props.can_punch_hole);
  // Block devices may zero by writing inside the kernel, so no fast-zero promise.
  info.can_fast_zero = rw && !props.block_device && props.can_punch_hole;
  info.can_cache = !direct_ && !props.memory_backed;
  info.can_multi_conn = true;
  info.can_truncate = rw && !props.block_device;
  info.rotational = props.rotational;
  info.request_alignment = direct_ ? props.direct_alignment : 1;
  info.preferred_alignment = std::max(props.preferred_alignment, info.request_alignment);
  set_info(info);
}

uint64_t FileNode::allocated_bytes() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

bool FileNode::fully_allocated() const {
  if (props_.block_device) return true;
  struct stat st;
  if (::fstat(fd_, &st) != 0) return false;
  return static_cast<uint64_t>(st.st_blocks) * 512 >= static_cast<uint64_t>(st.st_size);
}

FileNode::~FileNode() {
  lock_.release();  // needs fd_ open
  if (tail_fd_ >= 0) ::close(tail_fd_);
  ::close(fd_);
}

// ---- read / write ------------------------------------------------------------------

std::optional<Status> FileNode::do_read_now(uint64_t off, std::span<std::byte> buf) {
  if (!inline_size(buf.size())) return std::nullopt;
  if (inline_data_) return posix::pread_full(fd_, buf, off, filename_);
  if (direct_ || !nowait_read_.load(std::memory_order_relaxed)) return std::nullopt;
  const posix::NowaitResult r = posix::pread_nowait(fd_, buf, off);
  switch (r.stop) {
    case posix::NowaitStop::kDone:
      return Status::ok();
    case posix::NowaitStop::kError:
      return Status::from_errno(r.err, "pread " + filename_);
    case posix::NowaitStop::kUnsupported:
      nowait_read_.store(false, std::memory_order_relaxed);
      return std::nullopt;
    case posix::NowaitStop::kWouldBlock:
      return std::nullopt;  // do_read reads it all again on the pool
  }
  return std::nullopt;
}

std::optional<Status> FileNode::do_write_now(uint64_t off, std::span<const std::byte> buf,
                                             IoFlags flags) {
  // Only where nothing can block: a partial RWF_NOWAIT write could not be taken back.
  if (!inline_data_ || !inline_size(buf.size())) return std::nullopt;
  return write_blocking(off, buf, has_flag(flags, IoFlags::kFua));
}

Task<Status> FileNode::do_read(uint64_t off, std::span<std::byte> buf) {
  // A page-cache miss (even a partial one) reads the whole range on the pool.
  if (std::optional<Status> s = do_read_now(off, buf)) co_return std::move(*s);
  co_return co_await pool_.run([this, off, buf] { return read_blocking(off, buf); });
}

Task<Status> FileNode::do_read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe) {
  if (direct_ || !pipe.can_take(off, len) || !fully_allocated()) {
    co_return Status::not_supported(filename_ + ": not read into a pipe");
  }
  if (inline_data_ || pool_.threads() == 0) co_return pipe.fill_from_file(fd_, off, len, filename_);
  co_return co_await pool_.run(
      [this, off, len, &pipe] { return pipe.fill_from_file(fd_, off, len, filename_); });
}

Task<Status> FileNode::do_write_from_pipe(uint64_t off, uint64_t /*len*/, io::PipeBuffer& pipe,
                                          IoFlags flags) {
  const bool fua = has_flag(flags, IoFlags::kFua);
  // On a memory-backed file the copy into the page cache runs inline, whatever its
  // size: piping a payload is what a caller does when CPU is short, and then a hop to
  // the pool costs more than it overlaps (four fio jobs of 1 MiB writes: 3.8 GB/s
  // inline, 2.5 on the pool).
  if (inline_data_ || pool_.threads() == 0) co_return write_pipe_blocking(off, pipe, fua);
  auto job = [this, off, &pipe, fua] { return write_pipe_blocking(off, pipe, fua); };
  if (takes_turns(fua)) co_return co_await pool_.run(write_lane_, std::move(job));
  co_return co_await pool_.run(std::move(job));
}

Status FileNode::write_pipe_blocking(uint64_t off, io::PipeBuffer& pipe, bool fua) {
  if (fua) FLEECE_RETURN_IF_ERROR(check_earlier_flush());
  FLEECE_RETURN_IF_ERROR(pipe.drain_to_file(fd_, off, filename_));
  return fua ? flush_blocking() : Status::ok();
}

Task<Status> FileNode::do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) {
  if (std::optional<Status> s = do_write_now(off, buf, flags)) co_return std::move(*s);
  const bool fua = has_flag(flags, IoFlags::kFua);
  const bool small = inline_size(buf.size());
  if (!direct_ && !fua && small && nowait_write_.load(std::memory_order_relaxed)) {
    const posix::NowaitResult r = posix::pwrite_nowait(fd_, buf, off);
    switch (r.stop) {
      case posix::NowaitStop::kDone:
        co_return Status::ok();
      case posix::NowaitStop::kError:
        co_return Status::from_errno(r.err, "pwrite " + filename_);
      case posix::NowaitStop::kUnsupported:
        nowait_write_.store(false, std::memory_order_relaxed);
        break;
      case posix::NowaitStop::kWouldBlock:
        break;
    }
    buf = buf.subspan(r.done);
    off += r.done;
  }
  auto job = [this, off, buf, fua] { return write_blocking(off, buf, fua); };
  if (takes_turns(fua)) co_return co_await pool_.run(write_lane_, std::move(job));
  co_return co_await pool_.run(std::move(job));
}

Status FileNode::read_blocking(uint64_t off, std::span<std::byte> buf) {
  if (direct_) return direct_read(off, buf);
  return posix::pread_full(fd_, buf, off, filename_);
}

Status FileNode::write_blocking(uint64_t off, std::span<const std::byte> buf, bool fua) {
  if (!fua) return write_data(off, buf, 0);
  FLEECE_RETURN_IF_ERROR(check_earlier_flush());
  if (dsync_write_.load(std::memory_order_relaxed)) {
    Status s = write_data(off, buf, RWF_DSYNC);
    if (s.code() != EOPNOTSUPP && s.code() != EINVAL) {
      return s.code() == EIO ? sync_failed(s) : s;
    }
    dsync_write_.store(false, std::memory_order_relaxed);  // kernel without RWF_DSYNC
  }
  FLEECE_RETURN_IF_ERROR(write_data(off, buf, 0));
  return flush_blocking();
}

Status FileNode::write_data(uint64_t off, std::span<const std::byte> buf, int rwf_flags) {
  if (direct_) return direct_write(off, buf, rwf_flags);
  return posix::pwrite_full(fd_, buf, off, rwf_flags, filename_);
}

// O_DIRECT: the aligned body goes straight to the device (through a bounce buffer
// when the caller's memory is not aligned enough); an unaligned tail at the end of
// the file goes through the buffered tail fd.
Status FileNode::direct_read(uint64_t off, std::span<std::byte> buf) {
  const uint64_t align = info().request_alignment;
  const size_t body = static_cast<size_t>(buf.size() & ~(align - 1));
  if (body > 0) {
    if (io::is_aligned(buf.data(), props_.direct_mem_alignment)) {
      FLEECE_RETURN_IF_ERROR(posix::pread_full(fd_, buf.first(body), off, filename_));
    } else {
      io::AlignedBufferPool::Lease bounce = bounce_pool_.acquire();
      if (bounce.empty()) return Status::no_memory("bounce buffer for " + filename_);
      for (size_t done = 0; done < body;) {
        const size_t n = std::min(body - done, bounce.size());
        FLEECE_RETURN_IF_ERROR(
            posix::pread_full(fd_, bounce.span().first(n), off + done, filename_));
        std::memcpy(buf.data() + done, bounce.data(), n);
        done += n;
      }
    }
  }
  if (body < buf.size()) {
    if (tail_fd_ < 0) return Status::invalid(filename_ + ": unaligned O_DIRECT read");
    return posix::pread_full(tail_fd_, buf.subspan(body), off + body, filename_);
  }
  return Status::ok();
}

Status FileNode::direct_write(uint64_t off, std::span<const std::byte> buf, int rwf_flags) {
  const uint64_t align = info().request_alignment;
  const size_t body = static_cast<size_t>(buf.size() & ~(align - 1));
  if (body > 0) {
    if (io::is_aligned(buf.data(), props_.direct_mem_alignment)) {
      FLEECE_RETURN_IF_ERROR(posix::pwrite_full(fd_, buf.first(body), off, rwf_flags, filename_));
    } else {
      io::AlignedBufferPool::Lease bounce = bounce_pool_.acquire();
      if (bounce.empty()) return Status::no_memory("bounce buffer for " + filename_);
      for (size_t done = 0; done < body;) {
        const size_t n = std::min(body - done, bounce.size());
        std::memcpy(bounce.data(), buf.data() + done, n);
        FLEECE_RETURN_IF_ERROR(
            posix::pwrite_full(fd_, bounce.span().first(n), off + done, rwf_flags, filename_));
        done += n;
      }
    }
  }
  if (body < buf.size()) {
    if (tail_fd_ < 0) return Status::invalid(filename_ + ": unaligned O_DIRECT write");
    return posix::pwrite_full(tail_fd_, buf.subspan(body), off + body, rwf_flags, filename_);
  }
  return Status::ok();
}

// ---- flush / cache -----------------------------------------------------------------

Task<Status> FileNode::do_flush() {
  if (inline_data_) co_return flush_blocking();  // fdatasync on tmpfs does no I/O
  co_return co_await pool_.run([this] { return flush_blocking(); });
}

Status FileNode::flush_blocking() {
  if (int e = sticky_sync_error_.load(std::memory_order_relaxed); e != 0) {
    return Status::from_errno(
        e, "fdatasync " + filename_ + " (an earlier flush failed; written data may be lost)");
  }
  Status s = posix::datasync(fd_, filename_);
  return s.is_ok() ? s : sync_failed(s);
}

Status FileNode::check_earlier_flush() const {
  if (sticky_sync_error_.load(std::memory_order_relaxed) != 0) {
    return Status::from_errno(EIO, "an earlier flush of " + filename_ + " failed");
  }
  return Status::ok();
}

Status FileNode::sync_failed(const Status& s) {
  int expected = 0;
  sticky_sync_error_.compare_exchange_strong(expected, s.code() == 0 ? EIO : s.code());
  return s;
}

Task<Status> FileNode::do_cache(uint64_t off, uint64_t len) {
  co_return co_await pool_.run([this, off, len] {
    const int err =
        posix_fadvise(fd_, static_cast<off_t>(off), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
    return err == 0 ? Status::ok() : Status::from_errno(err, "posix_fadvise " + filename_);
  });
}

// ---- write zeroes / discard --------------------------------------------------------

Task<Status> FileNode::do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) {
  co_return co_await pool_.run([this, off, len, flags] { return zero_blocking(off, len, flags); });
}

Status FileNode::zero_blocking(uint64_t off, uint64_t len, IoFlags flags) {
  FLEECE_RETURN_IF_ERROR(props_.block_device ? zero_block_device(off, len, flags)
                                             : zero_regular(off, len, flags));
  if (has_flag(flags, IoFlags::kFua)) return flush_blocking();
  return Status::ok();
}

Status FileNode::zero_regular(uint64_t off, uint64_t len, IoFlags flags) {
  constexpr int kPunch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  const std::string what = "fallocate " + filename_;
  if (has_flag(flags, IoFlags::kMayTrim) && punch_hole_.load(std::memory_order_relaxed)) {
    const int err = posix::fallocate_errno(fd_, kPunch, off, len);
    if (err == 0) return Status::ok();
    if (!posix::is_unsupported_errno(err)) return Status::from_errno(err, what);
    punch_hole_.store(false, std::memory_order_relaxed);
  }
  if (zero_range_.load(std::memory_order_relaxed)) {
    const int err =
        posix::fallocate_errno(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
    if (err == 0) return Status::ok();
    if (!posix::is_unsupported_errno(err)) return Status::from_errno(err, what);
    zero_range_.store(false, std::memory_order_relaxed);  // e.g. tmpfs
  }
  if (punch_hole_.load(std::memory_order_relaxed)) {
    // Punch, then allocate again so the range stays provisioned (no kMayTrim). If the
    // allocation fails (ENOSPC) the range still reads as zeroes, which is what counts.
    const int err = posix::fallocate_errno(fd_, kPunch, off, len);
    if (err == 0) {
      (void)posix::fallocate_errno(fd_, FALLOC_FL_KEEP_SIZE, off, len);
      return Status::ok();
    }
    if (!posix::is_unsupported_errno(err)) return Status::from_errno(err, what);
    punch_hole_.store(false, std::memory_order_relaxed);
  }
  if (has_flag(flags, IoFlags::kFastZero)) {
    return Status::not_supported(filename_ + ": no fast way to write zeroes");
  }
  return zero_by_writing(off, len);
}

Status FileNode::zero_block_device(uint64_t off, uint64_t len, IoFlags flags) {
  // The kernel zeroes whole logical blocks; an unaligned head or tail is written.
  const uint64_t lbs = props_.logical_block_size;
  const uint64_t end = off + len;
  const uint64_t a = std::min((off + lbs - 1) & ~(lbs - 1), end);
  const uint64_t b = std::max(end & ~(lbs - 1), a);
  if (has_flag(flags, IoFlags::kFastZero) && (a != off || b != end)) {
    return Status::not_supported(filename_ + ": unaligned fast zero");
  }
  if (a > off) FLEECE_RETURN_IF_ERROR(zero_by_writing(off, a - off));
  if (b > a) {
    int err = EOPNOTSUPP;
    if (has_flag(flags, IoFlags::kMayTrim) || has_flag(flags, IoFlags::kFastZero)) {
      // Unmapping zeroout without fallback: fast or EOPNOTSUPP.
      err = posix::fallocate_errno(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, a, b - a);
    }
    if (posix::is_unsupported_errno(err) && !has_flag(flags, IoFlags::kFastZero)) {
      err = posix::fallocate_errno(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, a, b - a);
      if (posix::is_unsupported_errno(err)) {
        err = posix::blkdev_range_ioctl_errno(fd_, BLKZEROOUT, a, b - a);
      }
      if (posix::is_unsupported_errno(err)) err = zero_by_writing(a, b - a).code();
    }
    if (posix::is_unsupported_errno(err)) {
      return Status::not_supported(filename_ + ": no fast way to write zeroes");
    }
    if (err != 0) return Status::from_errno(err, "zero " + filename_);
  }
  if (end > b) FLEECE_RETURN_IF_ERROR(zero_by_writing(b, end - b));
  return Status::ok();
}

Status FileNode::zero_by_writing(uint64_t off, uint64_t len) {
  const std::span<const std::byte> zeroes = io::zero_buffer();
  while (len > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeroes.size()));
    FLEECE_RETURN_IF_ERROR(write_data(off, zeroes.first(n), 0));
    off += n;
    len -= n;
  }
  return Status::ok();
}

Task<Status> FileNode::do_discard(uint64_t off, uint64_t len, IoFlags flags) {
  FLEECE_CO_RETURN_IF_ERROR(
      co_await pool_.run([this, off, len] { return discard_blocking(off, len); }));
  if (has_flag(flags, IoFlags::kFua)) co_return co_await do_flush();
  co_return Status::ok();
}

Status FileNode::discard_blocking(uint64_t off, uint64_t len) {
  int err;
  if (props_.block_device) {
    const uint64_t lbs = props_.logical_block_size;
    const uint64_t a = (off + lbs - 1) & ~(lbs - 1);
    const uint64_t b = (off + len) & ~(lbs - 1);
    if (b <= a) return Status::ok();  // discard is a hint: partial blocks stay
    err = posix::blkdev_range_ioctl_errno(fd_, BLKDISCARD, a, b - a);
  } else {
    if (!punch_hole_.load(std::memory_order_relaxed)) return Status::ok();
    err = posix::fallocate_errno(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
    if (posix::is_unsupported_errno(err)) punch_hole_.store(false, std::memory_order_relaxed);
  }
  if (err == 0 || posix::is_unsupported_errno(err)) return Status::ok();
  return Status::from_errno(err, "discard " + filename_);
}

// ---- block status ------------------------------------------------------------------

Task<Result<ExtentList>> FileNode::do_block_status(uint64_t off, uint64_t len) {
  // No holes to find; SEEK_HOLE on a fully allocated tmpfs file walks every page to its
  // end (milliseconds for 1 GiB), fstat costs nothing.
  if (fully_allocated()) co_return ExtentList{Extent{len, 0, 1}};
  co_return co_await pool_.run([this, off, len]() -> Result<ExtentList> {
    return posix::seek_extents(fd_, off, len, size(), info().request_alignment, kMaxExtentsPerCall,
                               filename_);
  });
}

Task<Status> FileNode::do_truncate(uint64_t new_size) {
  // With O_DIRECT the tail fd (if any) sees the same inode; one ftruncate covers both.
  co_return co_await pool_.run([this, new_size] {
    if (::ftruncate(fd_, static_cast<off_t>(new_size)) != 0) {
      return Status::from_errno(errno, "ftruncate '" + filename_ + "'");
    }
    return Status::ok();
  });
}

}  // namespace blockcore
