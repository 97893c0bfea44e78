// Buffered reading and counted writing on one connection's socket, shared by the
// handshake and the transmission phase (so bytes a client pipelines right after the
// handshake are never lost). Small reads are served from a 64 KiB buffer filled with
// read_some, large ones go straight into the caller's buffer. Expected socket errors
// (EOF, reset, cancellation) are returned as error_code values, never thrown.
// After start_tls() (NBD_OPT_STARTTLS) the same calls read and write through TLS; the
// plain path stays a direct socket call (one branch, no extra copy). A plain socket can
// also be fed from a pipe of file pages (write_from_pipe), which copies nothing, and
// drained into a pipe (read_into_pipe).
// Threading: confined to the connection's strand.
#pragma once

#include <asio/buffer.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <system_error>
#include <vector>

#include "blockcore/base/task.h"
#include "blockcore/io/pipe_buffer.h"

namespace server::net {
class TlsContext;
struct TlsIdentity;
}  // namespace server::net

namespace server::nbd {

using Socket = asio::generic::stream_protocol::socket;

class SocketIo {
 public:
  explicit SocketIo(Socket& socket, size_t buffer_size = 64 * 1024);
  ~SocketIo();
  SocketIo(const SocketIo&) = delete;
  SocketIo& operator=(const SocketIo&) = delete;

  Socket& socket() { return socket_; }

  // Copies dst.size() bytes out of the buffer if they are all there already.
  bool try_read_buffered(std::span<std::byte> dst);
  // Reads exactly dst.size() bytes (buffer first, then the socket).
  blockcore::Task<std::error_code> read_exact(std::span<std::byte> dst);
  // Moves the next n bytes of the stream into the empty `pipe`: what is buffered is
  // copied in, the rest spliced from the socket (by reference to its pages). When the
  // pipe runs out of slots first (a stream of small segments, e.g. TCP from a NIC),
  // sets *pipe_full and returns early; the caller reads the rest with read_exact().
  // REQUIRES: !tls().
  blockcore::Task<std::error_code> read_into_pipe(blockcore::io::PipeBuffer& pipe, size_t n,
                                                  bool* pipe_full);
  // Reads and drops n bytes.
  blockcore::Task<std::error_code> skip(uint64_t n);

  blockcore::Task<std::error_code> write_all(std::span<const std::byte> data);
  blockcore::Task<std::error_code> write_all(const std::vector<asio::const_buffer>& data);
  // Splices the next n bytes held in `pipe` into the socket (the pages go to the socket
  // by reference; the socket is switched to non-blocking mode for this).
  // REQUIRES: !tls(), pipe.held() >= n.
  blockcore::Task<std::error_code> write_from_pipe(blockcore::io::PipeBuffer& pipe, size_t n);

  // Runs the server side of a TLS handshake; afterwards every read and write is
  // encrypted. On success `who` says what the handshake proved about the client.
  // REQUIRES: nothing buffered (buffered() == 0), TLS not started yet.
  blockcore::Task<std::error_code> start_tls(net::TlsContext& ctx, net::TlsIdentity& who);
  bool tls() const { return tls_ != nullptr; }

  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }
  size_t buffered() const { return end_ - pos_; }

 private:
  struct TlsStream;

  size_t take_buffered(std::span<std::byte> dst);
  // The splice paths call the socket directly and must not block the thread.
  std::error_code make_non_blocking();

  Socket& socket_;
  std::unique_ptr<std::byte[]> buf_;
  size_t cap_;
  size_t pos_ = 0;  // next unread byte in buf_
  size_t end_ = 0;  // end of valid data in buf_
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  std::unique_ptr<TlsStream> tls_;  // set by start_tls()
};

}  // namespace server::nbd
