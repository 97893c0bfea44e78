// PipeBuffer: a kernel pipe used as a data buffer that holds file pages by reference.
// A read that splices file pages into a pipe, and a writer that splices the pipe into a
// socket, move a reply from the page cache to the network without the two copies a
// pread into memory and a send from it cost (on this machine class about a third of
// the CPU per MiB: 130 µs against 360 µs). The other way, a WRITE payload spliced from
// the socket into a pipe and from the pipe into the file is copied once, not twice.
//
// The pipe holds references to the file's page-cache pages, not copies: a write to the
// same range before the pipe is drained shows through. That is fine for a read that is
// concurrent with the write anyway, and wrong for a point-in-time view, which is why
// only nodes that serve current data implement BlockNode::read_to_pipe.
// Threading: a PipeBuffer is a move-only value used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"

namespace blockcore::io {

class PipeBuffer {
 public:
  // A pipe stores one page (or part of one) per slot: a range that starts mid-page
  // needs one slot more than its length suggests.
  static constexpr size_t kPage = 4096;

  // A pipe that can hold at least `capacity` bytes (rounded up by the kernel to a power
  // of two pages). Fails with the errno of pipe2/F_SETPIPE_SZ, e.g. EPERM above
  // /proc/sys/fs/pipe-max-size or past the user's pipe-user-pages-soft budget.
  static Result<PipeBuffer> create(size_t capacity);

  PipeBuffer() = default;
  ~PipeBuffer();
  PipeBuffer(PipeBuffer&& o) noexcept;
  PipeBuffer& operator=(PipeBuffer&& o) noexcept;
  PipeBuffer(const PipeBuffer&) = delete;
  PipeBuffer& operator=(const PipeBuffer&) = delete;

  explicit operator bool() const { return read_fd_ >= 0; }
  size_t capacity() const { return capacity_; }
  // Bytes in the pipe, not yet consumed.
  size_t held() const { return held_; }

  // True if the pipe is empty and has slots for every page [off, off+len) touches.
  bool can_take(uint64_t off, size_t len) const;

  // Splices len bytes of fd at off into the pipe (blocking on the file if it must; a
  // regular file's end reads as zeroes, like pread_full). `what` names the file in
  // errors. REQUIRES: can_take(off, len).
  Status fill_from_file(int fd, uint64_t off, size_t len, std::string_view what);

  // Splices everything the pipe holds into fd at off (a WRITE's payload). On an error
  // the pipe keeps what was not written.
  Status drain_to_file(int fd, uint64_t off, std::string_view what);
  // Copies up to dst.size() held bytes into memory (consuming them); returns how many.
  size_t read_into(std::span<std::byte> dst);

  // For a producer or consumer working on the fds directly: what it added or took.
  int read_fd() const { return read_fd_; }
  int write_fd() const { return write_fd_; }
  void produced(size_t n) { held_ += n; }
  void consumed(size_t n) { held_ -= n; }

 private:
  PipeBuffer(int read_fd, int write_fd, size_t capacity)
      : read_fd_(read_fd), write_fd_(write_fd), capacity_(capacity) {}
  Status fill_zeroes(size_t len);
  void close();

  int read_fd_ = -1;
  int write_fd_ = -1;
  size_t capacity_ = 0;
  size_t held_ = 0;
};

}  // namespace blockcore::io
