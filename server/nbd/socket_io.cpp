#include "server/nbd/socket_io.h"

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <asio/read.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/write.hpp>
#include <cstring>
#include <tuple>

#include "server/net/tls_context.h"
#include "server/nbd/use_tuple.h"

namespace server::nbd {
namespace {

// Asio's transfer_all() caps every read/write syscall at 64 KiB, so a 1 MiB reply took
// 16 sendmsg calls (and a 1 MiB WRITE payload 16 recvmsg calls) and as many epoll
// wake-ups. Let one syscall move all it can, in both directions.
struct TransferAllUnbounded {
  size_t operator()(const std::error_code& ec, size_t) const { return ec ? 0 : size_t{1} << 30; }
};

// Below this total, a gather write over TLS is copied into one buffer first: the TLS
// stream writes one buffer per record, so a reply header and its payload would
// otherwise cost a record and a syscall each.
constexpr size_t kTlsCoalesceLimit = 64 * 1024;

}  // namespace

struct SocketIo::TlsStream {
  TlsStream(Socket& socket, asio::ssl::context& ctx) : stream(socket, ctx) {}
  asio::ssl::stream<Socket&> stream;
  std::string psk_identity;  // filled by the PSK callback during the handshake
  std::vector<std::byte> scratch;
};

SocketIo::SocketIo(Socket& socket, size_t buffer_size)
    : socket_(socket), buf_(new std::byte[buffer_size]), cap_(buffer_size) {}

SocketIo::~SocketIo() = default;

blockcore::Task<std::error_code> SocketIo::start_tls(net::TlsContext& ctx, net::TlsIdentity& who) {
  tls_ = std::make_unique<TlsStream>(socket_, ctx.ssl());
  net::TlsContext::set_psk_identity_slot(tls_->stream.native_handle(), &tls_->psk_identity);
  auto [ec] = co_await tls_->stream.async_handshake(asio::ssl::stream_base::server, kUseTuple);
  if (ec) co_return ec;
  who = net::tls_identity(tls_->stream.native_handle(), ctx.verify_peer(), tls_->psk_identity);
  co_return std::error_code{};
}

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
      const auto target = asio::buffer(dst.data() + done, want);
      std::error_code ec;
      size_t n = 0;
      if (tls_) {
        std::tie(ec, n) = co_await asio::async_read(tls_->stream, target,
                                                    TransferAllUnbounded(), kUseTuple);
      } else {
        std::tie(ec, n) =
            co_await asio::async_read(socket_, target, TransferAllUnbounded(), kUseTuple);
      }
      bytes_in_ += n;
      if (ec) co_return ec;
      done += n;
      break;
    }
    // Small remainder: refill the buffer (this also picks up pipelined requests).
    std::error_code ec;
    size_t n = 0;
    if (tls_) {
      std::tie(ec, n) =
          co_await tls_->stream.async_read_some(asio::buffer(buf_.get(), cap_), kUseTuple);
    } else {
      std::tie(ec, n) = co_await socket_.async_read_some(asio::buffer(buf_.get(), cap_), kUseTuple);
    }
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
    std::error_code ec;
    size_t got = 0;
    if (tls_) {
      std::tie(ec, got) =
          co_await tls_->stream.async_read_some(asio::buffer(buf_.get(), chunk), kUseTuple);
    } else {
      std::tie(ec, got) =
          co_await socket_.async_read_some(asio::buffer(buf_.get(), chunk), kUseTuple);
    }
    bytes_in_ += got;
    if (ec) co_return ec;
    n -= got;
  }
  co_return std::error_code{};
}

blockcore::Task<std::error_code> SocketIo::write_all(std::span<const std::byte> data) {
  const auto source = asio::buffer(data.data(), data.size());
  std::error_code ec;
  size_t n = 0;
  if (tls_) {
    std::tie(ec, n) =
        co_await asio::async_write(tls_->stream, source, TransferAllUnbounded(), kUseTuple);
  } else {
    std::tie(ec, n) =
        co_await asio::async_write(socket_, source, TransferAllUnbounded(), kUseTuple);
  }
  bytes_out_ += n;
  co_return ec;
}

blockcore::Task<std::error_code> SocketIo::write_all(const std::vector<asio::const_buffer>& data) {
  std::error_code ec;
  size_t n = 0;
  if (!tls_) {
    std::tie(ec, n) = co_await asio::async_write(socket_, data, TransferAllUnbounded(), kUseTuple);
  } else if (data.size() > 1 && asio::buffer_size(data) <= kTlsCoalesceLimit) {
    std::vector<std::byte>& one = tls_->scratch;
    one.resize(asio::buffer_size(data));
    asio::buffer_copy(asio::buffer(one), data);
    std::tie(ec, n) = co_await asio::async_write(tls_->stream, asio::buffer(one),
                                                 TransferAllUnbounded(), kUseTuple);
  } else {
    std::tie(ec, n) =
        co_await asio::async_write(tls_->stream, data, TransferAllUnbounded(), kUseTuple);
  }
  bytes_out_ += n;
  co_return ec;
}

std::error_code SocketIo::make_non_blocking() {
  std::error_code ec;
  if (!socket_.native_non_blocking()) socket_.native_non_blocking(true, ec);
  return ec;
}

blockcore::Task<std::error_code> SocketIo::read_into_pipe(blockcore::io::PipeBuffer& pipe,
                                                         size_t n, bool* pipe_full) {
  *pipe_full = false;
  if (tls_) co_return std::make_error_code(std::errc::invalid_argument);
  size_t done = 0;
  while (pos_ < end_ && done < n) {
    const ssize_t w = ::write(pipe.write_fd(), buf_.get() + pos_, std::min(end_ - pos_, n - done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      *pipe_full = true;
      co_return std::error_code{};
    }
    if (w < 0) co_return std::error_code(errno, std::system_category());
    pos_ += static_cast<size_t>(w);
    done += static_cast<size_t>(w);
    pipe.produced(static_cast<size_t>(w));
  }
  if (pos_ == end_) pos_ = end_ = 0;
  std::error_code ec = make_non_blocking();
  if (ec) co_return ec;
  const int fd = socket_.native_handle();
  bool data_waiting = false;  // the socket was readable when the last splice was tried
  while (done < n) {
    const ssize_t got =
        ::splice(fd, nullptr, pipe.write_fd(), nullptr, n - done, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (got > 0) {
      done += static_cast<size_t>(got);
      pipe.produced(static_cast<size_t>(got));
      bytes_in_ += static_cast<uint64_t>(got);
      data_waiting = false;
      continue;
    }
    if (got == 0) co_return asio::error::eof;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) co_return std::error_code(errno, std::system_category());
    // Nothing to read yet, or no room left in the pipe. Only this coroutine reads the
    // socket, so data seen waiting before a splice that still found nothing to do
    // means the pipe is full.
    if (data_waiting) {
      *pipe_full = true;
      co_return std::error_code{};
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) {
      data_waiting = true;
      continue;
    }
    std::tie(ec) = co_await socket_.async_wait(asio::socket_base::wait_read, kUseTuple);
    if (ec) co_return ec;
  }
  co_return std::error_code{};
}

blockcore::Task<std::error_code> SocketIo::write_from_pipe(blockcore::io::PipeBuffer& pipe,
                                                          size_t n) {
  if (tls_ || pipe.held() < n) co_return std::make_error_code(std::errc::invalid_argument);
  std::error_code ec = make_non_blocking();
  if (ec) co_return ec;
  while (n > 0) {
    const ssize_t done = ::splice(pipe.read_fd(), nullptr, socket_.native_handle(), nullptr, n,
                                  SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (done > 0) {
      pipe.consumed(static_cast<size_t>(done));
      bytes_out_ += static_cast<uint64_t>(done);
      n -= static_cast<size_t>(done);
      continue;
    }
    if (done == 0) co_return std::make_error_code(std::errc::broken_pipe);
    if (errno == EINTR) continue;
    if (errno != EAGAIN) co_return std::error_code(errno, std::system_category());
    // The socket is full (the pipe holds n bytes): wait until it takes more.
    std::tie(ec) = co_await socket_.async_wait(asio::socket_base::wait_write, kUseTuple);
    if (ec) co_return ec;
  }
  co_return std::error_code{};
}

}  // namespace server::nbd
