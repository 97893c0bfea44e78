#include "server/nbd/socket_io.h"

#include <algorithm>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <cstring>

#include "server/nbd/use_tuple.h"

namespace server::nbd {
namespace {

// Asio's transfer_all() caps every read/write syscall at 64 KiB, so a 1 MiB reply took
// 16 sendmsg calls (and a 1 MiB WRITE payload 16 recvmsg calls) and as many epoll
// wake-ups. Let one syscall move all it can, in both directions.
struct TransferAllUnbounded {
  size_t operator()(const std::error_code& ec, size_t) const { return ec ? 0 : size_t{1} << 30; }
};

}  // namespace

SocketIo::SocketIo(Socket& socket, size_t buffer_size)
    : socket_(socket), buf_(new std::byte[buffer_size]), cap_(buffer_size) {}

size_t SocketIo::take_buffered(std::span<std::byte> dst) {
  const size_t n = std::min(dst.size(), end_ - pos_);
  if (n) {
    std::memcpy(dst.data(), buf_.get() + pos_, n);
    pos_ += n;
    if (pos_ == end_) pos_ = end_ = 0;
  }
  return n;
}

bool SocketIo::try_read_buffered(std::span<std::byte> dst) {
  if (end_ - pos_ < dst.size()) return false;
  take_buffered(dst);
  return true;
}

blockcore::Task<std::error_code> SocketIo::read_exact(std::span<std::byte> dst) {
  size_t done = take_buffered(dst);
  while (done < dst.size()) {
    const size_t want = dst.size() - done;
    if (want >= cap_ / 2) {
      // Large remainder: read it directly, no copy.
      auto [ec, n] = co_await asio::async_read(socket_, asio::buffer(dst.data() + done, want),
                                               TransferAllUnbounded(), kUseTuple);
      bytes_in_ += n;
      if (ec) co_return ec;
      done += n;
      break;
    }
    // Small remainder: refill the buffer (this also picks up pipelined requests).
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buf_.get(), cap_), kUseTuple);
    bytes_in_ += n;
    if (ec) co_return ec;
    pos_ = 0;
    end_ = n;
    done += take_buffered(dst.subspan(done));
  }
  co_return std::error_code{};
}

blockcore::Task<std::error_code> SocketIo::skip(uint64_t n) {
  const size_t from_buffer = static_cast<size_t>(std::min<uint64_t>(n, end_ - pos_));
  pos_ += from_buffer;
  if (pos_ == end_) pos_ = end_ = 0;
  n -= from_buffer;
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, cap_));
    auto [ec, got] = co_await socket_.async_read_some(asio::buffer(buf_.get(), chunk), kUseTuple);
    bytes_in_ += got;
    if (ec) co_return ec;
    n -= got;
  }
  co_return std::error_code{};
}

blockcore::Task<std::error_code> SocketIo::write_all(std::span<const std::byte> data) {
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(data.data(), data.size()),
                                            TransferAllUnbounded(), kUseTuple);
  bytes_out_ += n;
  co_return ec;
}

blockcore::Task<std::error_code> SocketIo::write_all(const std::vector<asio::const_buffer>& data) {
  auto [ec, n] = co_await asio::async_write(socket_, data, TransferAllUnbounded(), kUseTuple);
  bytes_out_ += n;
  co_return ec;
}

}  // namespace server::nbd
