#include "blockcore/io/pipe_buffer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>

#include "blockcore/io/aligned_buffer.h"

namespace blockcore::io {

Result<PipeBuffer> PipeBuffer::create(size_t capacity) {
  int fds[2];
  // Non-blocking both ends: a full pipe is an error to report, never a thread stuck
  // on a pipe only it could drain.
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Status::from_errno(errno, "pipe2");
  }
  PipeBuffer pipe(fds[0], fds[1], 0);
  const int size = ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(capacity));
  if (size < 0) return Status::from_errno(errno, "F_SETPIPE_SZ " + std::to_string(capacity));
  pipe.capacity_ = static_cast<size_t>(size);
  return pipe;
}

PipeBuffer::~PipeBuffer() { close(); }

PipeBuffer::PipeBuffer(PipeBuffer&& o) noexcept
    : read_fd_(std::exchange(o.read_fd_, -1)),
      write_fd_(std::exchange(o.write_fd_, -1)),
      capacity_(std::exchange(o.capacity_, 0)),
      held_(std::exchange(o.held_, 0)) {}

PipeBuffer& PipeBuffer::operator=(PipeBuffer&& o) noexcept {
  if (this != &o) {
    close();
    read_fd_ = std::exchange(o.read_fd_, -1);
    write_fd_ = std::exchange(o.write_fd_, -1);
    capacity_ = std::exchange(o.capacity_, 0);
    held_ = std::exchange(o.held_, 0);
  }
  return *this;
}

void PipeBuffer::close() {
  if (read_fd_ >= 0) ::close(read_fd_);
  if (write_fd_ >= 0) ::close(write_fd_);
  read_fd_ = write_fd_ = -1;
  capacity_ = held_ = 0;
}

bool PipeBuffer::can_take(uint64_t off, size_t len) const {
  if (held_ != 0 || len == 0) return false;
  const uint64_t first = off / kPage;
  const uint64_t last = (off + len - 1) / kPage;
  return (last - first + 1) * kPage <= capacity_;
}

Status PipeBuffer::fill_from_file(int fd, uint64_t off, size_t len, std::string_view what) {
  size_t done = 0;
  while (done < len) {
    loff_t pos = static_cast<loff_t>(off + done);
    const ssize_t n = ::splice(fd, &pos, write_fd_, nullptr, len - done, SPLICE_F_MOVE);
    if (n > 0) {
      done += static_cast<size_t>(n);
      held_ += static_cast<size_t>(n);
    } else if (n == 0) {  // end of a regular file: zeroes, like a sparse tail
      return fill_zeroes(len - done);
    } else if (errno != EINTR) {
      // EAGAIN: the pipe is full, which can_take() rules out; report it, never wait.
      return Status::from_errno(errno, "splice from " + std::string(what));
    }
  }
  return Status::ok();
}

Status PipeBuffer::drain_to_file(int fd, uint64_t off, std::string_view what) {
  while (held_ > 0) {
    loff_t pos = static_cast<loff_t>(off);
    const ssize_t n = ::splice(read_fd_, nullptr, fd, &pos, held_, SPLICE_F_MOVE);
    if (n > 0) {
      held_ -= static_cast<size_t>(n);
      off += static_cast<uint64_t>(n);
    } else if (n == 0) {
      return Status::io_error("splice into " + std::string(what) + ": the pipe ran dry");
    } else if (errno != EINTR) {
      return Status::from_errno(errno, "splice into " + std::string(what));
    }
  }
  return Status::ok();
}

size_t PipeBuffer::read_into(std::span<std::byte> dst) {
  size_t done = 0;
  while (done < dst.size() && held_ > 0) {
    const ssize_t n = ::read(read_fd_, dst.data() + done, std::min(dst.size() - done, held_));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
    held_ -= static_cast<size_t>(n);
  }
  return done;
}

Status PipeBuffer::fill_zeroes(size_t len) {
  const std::span<const std::byte> zeroes = zero_buffer();
  while (len > 0) {
    const ssize_t n = ::write(write_fd_, zeroes.data(), std::min(len, zeroes.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "write zeroes into a pipe");
    }
    len -= static_cast<size_t>(n);
    held_ += static_cast<size_t>(n);
  }
  return Status::ok();
}

}  // namespace blockcore::io
