// RequestHandler: executes one validated NBD request against the export's root node and
// builds its reply in the request's slot — simple or structured (READ as OFFSET_DATA /
// OFFSET_HOLE chunks for zero blocks, BLOCK_STATUS as one chunk per selected context, errors as
// ERROR chunks). FUA is passed to the node when it can honour it natively, otherwise emulated by a
// flush. Node errors are mapped to NBD errors by errno_map; handle() never throws. Threading:
// confined to the connection's strand; node calls resume on it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "server/nbd/buffer_pool.h"
#include "server/nbd/busy_connections.h"
#include "server/nbd/pipe_pool.h"
#include "server/nbd/handshake.h"
#include "server/nbd/reply_writer.h"

namespace server::nbd {

// Structured reads at least this long send all-zero blocks as OFFSET_HOLE chunks;
// shorter ones (and DF reads) go out as one OFFSET_DATA chunk. Zeroes are found by
// scanning the data read, not by block status: SEEK_HOLE costs O(file size) on tmpfs
// (6.5 ms per call on a fully allocated 1 GiB file), which would cut 1 MiB sequential
// reads to a tenth, while a scan stops at the first non-zero byte of each block.
inline constexpr uint32_t kSparseReadThreshold = 64u << 10;
// Reads at least this long go through a pipe when the session has a PipePool and the
// export's node can splice the range (a fully allocated buffered file: no holes that
// the scan above would find). Below it, a copy plus one batched sendmsg is cheaper than
// two splices.
inline constexpr uint32_t kPipeReadThreshold = 128u << 10;
// WRITE payloads at least this long (and at most PipePool::kCapacity) are read into a
// pipe when the export's node can write from one (Connection::read_write_payload).
inline constexpr uint32_t kPipeWriteThreshold = 128u << 10;
inline constexpr uint64_t kZeroBlock = 4096;  // hole detection granularity
// A read that would need more chunks than this is sent as one data chunk.
inline constexpr size_t kMaxReadChunks = 64;

// A run of a read reply: [offset, offset+length) relative to the request.
struct ReadRun {
  uint64_t offset;
  uint64_t length;
  bool hole;  // reads as zeroes
  bool operator==(const ReadRun&) const = default;
};
// Splits data read at absolute `offset` into alternating data/hole runs; holes are
// whole kZeroBlock-aligned blocks of zeroes.
std::vector<ReadRun> find_zero_runs(std::span<const std::byte> data, uint64_t offset);

// Whether a session moves large READ and WRITE data through pipes (server.zero-copy).
struct ZeroCopyPath {
  PipePool* pipes = nullptr;              // null: always copy (TLS sessions)
  const BusyConnections* busy = nullptr;  // null: splice whenever the node can
  bool local_peer = false;                // Unix socket or loopback address

  // Splicing saves the server about 60% of its CPU per byte read and a third per byte
  // written, but a client on the same host then copies the file pages cold from RAM
  // instead of warm from the CPU cache that the server's copy left them in, and a
  // spliced write is copied on the network thread instead of beside it. One busy local
  // connection, with a core to spare, is faster copied (fio, 1 MiB, one job: reads 3.2
  // GB/s copied, 2.0 spliced; writes 2.7 against 1.6); several are faster spliced (four
  // jobs: reads 4.9 against 2.8 GB/s, writes 3.8 against 2.7).
  bool use_pipe() const { return pipes && (!local_peer || !busy || busy->busy() > 1); }
};

struct TransferStats {
  uint64_t bytes_read = 0;     // data returned by READ
  uint64_t bytes_written = 0;  // data accepted by WRITE
};

class RequestHandler {
 public:
  RequestHandler(const NegotiatedSession& session, BufferPool& pool, ZeroCopyPath zero_copy);
  RequestHandler(const RequestHandler&) = delete;
  RequestHandler& operator=(const RequestHandler&) = delete;

  // Executes slot.req (already validated; a WRITE's payload is in slot.data or
  // slot.pipe) and leaves
  // the complete reply in the slot.
  blockcore::Task<void> handle(RequestSlot& slot);

  // Executes slot.req now, without suspending, when it is a READ or WRITE the export's
  // node can complete on this thread (BlockNode::read_now/write_now); then the reply is
  // in the slot and true is returned. False: nothing was done, use handle(). Saves the
  // coroutine frames and the spawn that dominate the CPU cost of a small request on a
  // memory-backed or cached file. Never throws.
  bool handle_now(RequestSlot& slot);

  // Builds the error reply for slot.req (nbd_error != 0).
  void reply_error(RequestSlot& slot, uint32_t nbd_error, std::string_view message);

  const TransferStats& stats() const { return stats_; }

 private:
  blockcore::Task<void> dispatch(RequestSlot& slot);
  blockcore::Task<void> handle_read(RequestSlot& slot);
  // The node calls of handle_now(); std::nullopt: not done now.
  std::optional<blockcore::Status> read_now(RequestSlot& slot);
  std::optional<blockcore::Status> write_now(RequestSlot& slot);
  // The reply to a READ whose data was read into slot.data with result s.
  void reply_read(RequestSlot& slot, const blockcore::Status& s);
  // Accounts a WRITE that ended with s (copied or spliced) and builds its reply.
  void reply_write(RequestSlot& slot, const blockcore::Status& s, bool spliced);
  // The reply for a request that raised instead of returning a status.
  void reply_failure(RequestSlot& slot, int err);
  // Reads slot.req's range into a pipe and builds the reply around it; false (nothing
  // done) when no pipe is available or the node cannot splice the range.
  blockcore::Task<bool> read_through_pipe(RequestSlot& slot);
  void build_read_chunks(RequestSlot& slot);
  blockcore::Task<void> handle_block_status(RequestSlot& slot);
  blockcore::Task<blockcore::Status> read_range(uint64_t off, std::span<std::byte> buf);
  blockcore::Task<blockcore::Status> write_range(uint64_t off, std::span<const std::byte> buf,
                                                 blockcore::IoFlags flags);
  // Flushes when the request asked for FUA that the node could not take natively.
  blockcore::Task<blockcore::Status> finish_fua(const RequestSlot& slot, blockcore::Status s);
  blockcore::IoFlags fua_flag(const RequestSlot& slot) const;

  void reply_ok(RequestSlot& slot);
  void reply_status(RequestSlot& slot, const blockcore::Status& s);
  // Appends a structured chunk header; returns its offset in meta (to patch flags).
  size_t append_chunk_header(RequestSlot& slot, uint16_t flags, uint16_t type, uint32_t length);

  const NegotiatedSession& session_;
  BufferPool& pool_;
  ZeroCopyPath zero_copy_;
  blockcore::BlockNode& root_;
  TransferStats stats_;
};

}  // namespace server::nbd
