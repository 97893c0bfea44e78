// RequestSlot: one in-flight request and the reply built for it (headers in `meta`,
// bulk data in a pooled Buffer or a pipe of file pages, sent as a list of pieces
// without copying the data).
// Slots are preallocated per connection (max_in_flight of them) and reused, so the
// number of slots is both the in-flight limit and the memory bound.
// ReplyWriter: the only code that writes to the socket during transmission. Handlers
// enqueue finished slots; one writer coroutine gathers everything queued into a single
// vectored write (many small replies per syscall), so chunks of different replies never
// interleave. After a write error every queued reply is dropped.
// Threading: confined to the connection's strand.
#pragma once

#include <asio/buffer.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <system_error>
#include <vector>

#include "blockcore/base/task.h"
#include "blockcore/io/pipe_buffer.h"
#include "server/nbd/async_event.h"
#include "server/nbd/buffer_pool.h"
#include "server/nbd/socket_io.h"
#include "server/nbd/wire.h"

namespace server::nbd {

struct RequestSlot {
  enum class Source : uint8_t { kMeta, kData, kPipe };
  struct Piece {
    Source source;
    size_t offset;  // into meta or data (kPipe: unused, the pipe is read in order)
    size_t length;
  };

  RequestHeader req;
  Buffer data;                  // WRITE payload or READ data
  blockcore::io::PipeBuffer pipe;  // READ data spliced from a file (see PipePool)
  std::vector<std::byte> meta;  // reply headers and small payloads
  std::vector<Piece> pieces;    // what goes on the wire, in order

  // Drops the previous reply (keeps vector capacity).
  void clear_reply() {
    meta.clear();
    pieces.clear();
  }
  // Appends n bytes to meta as the next piece; returns where to write them.
  // The pointer is valid until the next append_meta.
  std::byte* append_meta(size_t n);
  // Appends [offset, offset+length) of `data` as the next piece.
  void append_data(size_t offset, size_t length);
  // Appends the next `length` bytes of `pipe` as the next piece.
  void append_pipe(size_t length);
  size_t reply_size() const;
};

class ReplyWriter {
 public:
  using SlotFn = std::function<void(RequestSlot*)>;

  // `done` is called for every slot once its reply was written or dropped;
  // `failed` once, on the first write error.
  ReplyWriter(SocketIo& io, const asio::any_io_executor& strand, SlotFn done,
              std::function<void(const std::error_code&)> failed);
  ReplyWriter(const ReplyWriter&) = delete;
  ReplyWriter& operator=(const ReplyWriter&) = delete;

  // Queues a slot whose reply is complete.
  void enqueue(RequestSlot* slot);
  // Writes until stop() was called and the queue is empty.
  blockcore::Task<void> run();
  // Lets run() finish once everything queued is written.
  void stop();
  // Gives back every slot queued or in the batch being written, without writing it;
  // later enqueues are given back at once. For when run() died.
  void drop_all();

  bool failed() const { return failed_; }

 private:
  // Writes the batch's pieces in order: memory pieces gathered into vectored writes,
  // each pipe piece spliced between them.
  blockcore::Task<std::error_code> write_batch();

  static constexpr size_t kMaxBatchSlots = 64;
  static constexpr size_t kMaxBatchBytes = 4u << 20;

  SocketIo& io_;
  SlotFn done_;
  std::function<void(const std::error_code&)> on_failed_;
  AsyncEvent wake_;
  std::deque<RequestSlot*> queue_;
  std::vector<RequestSlot*> batch_;
  std::vector<asio::const_buffer> iov_;
  bool stopping_ = false;
  bool failed_ = false;
  bool dropped_ = false;
};

}  // namespace server::nbd
