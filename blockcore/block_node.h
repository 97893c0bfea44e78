// BlockNode: the one interface every driver and filter of the block graph implements.
// Public methods validate each request centrally (range, alignment, size limits,
// read-only, capabilities), count it in flight, and call the protected do_* hooks, so
// node code only ever sees clean requests (nbdkit's backend layer, QEMU's block/io.c).
// Threading: every public method may be called concurrently from any executor thread;
// implementations synchronize their own state and never block the calling thread on
// disk I/O (they await a BlockingPool instead). info() is fixed after construction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/base/write_gate.h"
#include "blockcore/bitmap/node_bitmaps.h"
#include "blockcore/extent.h"
#include "blockcore/stats/io_stats.h"
#include "blockcore/write_interceptor.h"

namespace blockcore {

namespace io {
class PipeBuffer;
}  // namespace io

enum class IoFlags : uint32_t {
  kNone = 0,
  kFua = 1,       // the data is durable when the call completes
  kMayTrim = 2,   // write_zeroes may deallocate instead of writing zeroes
  kFastZero = 4,  // write_zeroes must fail with ENOTSUP rather than be slow
};
constexpr IoFlags operator|(IoFlags a, IoFlags b) {
  return static_cast<IoFlags>(static_cast<uint32_t>(a) | static_cast<uint32_t>(b));
}
constexpr bool has_flag(IoFlags set, IoFlags f) {
  return (static_cast<uint32_t>(set) & static_cast<uint32_t>(f)) != 0;
}

// Capabilities and limits of a node, computed once when it is opened.
struct NodeInfo {
  uint64_t size = 0;           // at open; size() is current (truncate() may change it)
  bool read_only = true;
  bool can_flush = true;       // flush() does something (false: always succeeds at once)
  bool can_fua = true;         // FUA honoured natively (else emulated by a flush)
  bool can_trim = false;       // discard() may release storage
  bool can_zero = false;       // write_zeroes() is efficient (not a plain write of zeroes)
  bool can_fast_zero = false;  // write_zeroes(kFastZero) can succeed
  bool can_cache = true;       // cache() prefetches
  bool can_multi_conn = true;  // consistent across connections, flush covers all
  bool can_truncate = false;   // truncate() can change the size (a regular file)
  // Offset N of this node is offset N of its `file` child (raw without a window, pure
  // filters), so dirty bitmaps of the child describe this node too.
  bool file_offsets_match = false;
  bool rotational = false;
  uint32_t request_alignment = 1;     // minimum I/O granularity in bytes (power of 2)
  uint32_t preferred_alignment = 4096;
  uint32_t max_transfer = 32u << 20;  // largest read/write in one call

  // Marks the node read-only and drops the capabilities only a writer has (flush, FUA,
  // trim, zeroing): what a node over a child takes when it or its child is read-only.
  void drop_write_capabilities() {
    read_only = true;
    can_flush = false;
    can_fua = false;
    can_trim = false;
    can_zero = false;
    can_fast_zero = false;
  }
};

enum class ChildRole { kFile, kBacking, kTarget, kDataFile };
const char* child_role_name(ChildRole role);

struct ChildEdge {
  ChildRole role;
  std::shared_ptr<class BlockNode> node;
};

class BlockNode {
 public:
  BlockNode(std::string name, std::string driver);
  virtual ~BlockNode();
  BlockNode(const BlockNode&) = delete;
  BlockNode& operator=(const BlockNode&) = delete;

  const std::string& name() const { return name_; }
  const std::string& driver() const { return driver_; }
  const NodeInfo& info() const { return info_; }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  bool read_only() const { return info_.read_only; }
  const std::vector<ChildEdge>& children() const { return children_; }
  // Human-readable description of what the node opens (file name...), for queries.
  virtual std::string describe() const { return {}; }

  // Reads buf.size() bytes at off. EINVAL past the end or misaligned.
  Task<Status> read(uint64_t off, std::span<std::byte> buf);
  // Reads [off, off+len) into an empty pipe without copying the data (file pages are
  // spliced in by reference; see PipeBuffer for what that means for later writes).
  // ENOTSUP, with the pipe left empty and nothing counted, when this node cannot
  // (the default) or the range has holes that read() callers could report as such:
  // the caller then uses read(). Only nodes whose reads return the current data
  // beneath them implement it, never a point-in-time view.
  Task<Status> read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe);
  // Whether write_from_pipe() can take a payload (so a caller may read one into a pipe).
  virtual bool can_write_from_pipe() const { return false; }
  // Writes the len bytes `pipe` holds at off, like write() (bitmaps, write gate,
  // interceptor, FUA), splicing them into the file. REQUIRES: can_write_from_pipe(),
  // pipe.held() == len. On failure the pipe may still hold part of the payload.
  Task<Status> write_from_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe, IoFlags flags);
  // Writes buf at off. EROFS on a read-only node, ENOSPC past the end.
  Task<Status> write(uint64_t off, std::span<const std::byte> buf, IoFlags flags);
  // The same read and write done now, on the calling thread, when the node can do it
  // without waiting for anything: a memory-backed file or a page-cache hit, with the
  // write gate open, no write interceptor and only in-memory dirty bitmaps. Validated,
  // counted, marked and timed exactly like read() and write(), which a caller with a
  // request to serve would otherwise await (and pay a coroutine frame per node).
  // std::nullopt when the node cannot: nothing was read, written, marked or counted, and
  // the caller uses read() or write().
  std::optional<Status> read_now(uint64_t off, std::span<std::byte> buf);
  std::optional<Status> write_now(uint64_t off, std::span<const std::byte> buf, IoFlags flags);
  // Makes [off, off+len) read as zeroes; kMayTrim allows deallocation, kFastZero
  // demands ENOTSUP unless it is cheap.
  Task<Status> write_zeroes(uint64_t off, uint64_t len, IoFlags flags);
  // Hints that [off, off+len) is unused; contents become unspecified.
  Task<Status> discard(uint64_t off, uint64_t len, IoFlags flags);
  // Makes every completed write durable.
  Task<Status> flush();
  // Prefetches [off, off+len) into a cache; a no-op where there is none.
  Task<Status> cache(uint64_t off, uint64_t len);
  // Describes [off, off+len) as contiguous extents starting at off; may cover less
  // than len (never more than len), never nothing unless an error is returned.
  Task<Result<ExtentList>> block_status(uint64_t off, uint64_t len);

  // Changes the size to new_size (growing reads as zeroes). For format drivers that
  // grow their image file; ENOTSUP unless info().can_truncate, EROFS when read-only.
  // Callers serialize truncate() against their own writes past the old end.
  Task<Status> truncate(uint64_t new_size);

  // Requests currently executing in this node (for quiesce and diagnostics).
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  // What the public methods above have executed (query-blockstats, metrics).
  const IoStats& io_stats() const { return io_stats_; }

  // The node's dirty bitmaps; write, write_zeroes and discard mark the enabled ones
  // (NodeBitmaps::before_write) before the driver's hook runs, and once more after it
  // (a clear that landed meanwhile must not hide the write); write_now marks them once,
  // after its hook (it runs only while they all live in memory).
  NodeBitmaps& bitmaps() { return bitmaps_; }
  const NodeBitmaps& bitmaps() const { return bitmaps_; }

  // Holds new write-like requests back and returns once none is in flight; they go on
  // when the returned guard is destroyed (a snapshot point: fleece-start).
  Task<WriteGate::Closed> pause_writes() { return write_gate_.close(); }
  // The hook every write-like request awaits after bitmap marking and before the driver
  // (copy-before-write); nullptr removes it. Thread-safe.
  void set_write_interceptor(std::shared_ptr<WriteInterceptor> interceptor);
  std::shared_ptr<WriteInterceptor> write_interceptor() const;

 protected:
  // Called once by the driver's open path before the node is used.
  void set_info(const NodeInfo& info) {
    info_ = info;
    size_.store(info.size, std::memory_order_release);
  }
  void add_child(ChildRole role, std::shared_ptr<BlockNode> child);

  // Hooks: requests are in range, aligned to request_alignment (except at an unaligned
  // end of node), no longer than max_transfer for read/write, and write-like calls
  // only reach a writable node.
  virtual Task<Status> do_read(uint64_t off, std::span<std::byte> buf) = 0;
  virtual Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) = 0;
  // Default: std::nullopt. Same request rules as do_read/do_write; must return
  // std::nullopt before doing anything that do_read/do_write would then do again.
  virtual std::optional<Status> do_read_now(uint64_t off, std::span<std::byte> buf);
  virtual std::optional<Status> do_write_now(uint64_t off, std::span<const std::byte> buf,
                                             IoFlags flags);
  // Default: ENOTSUP. Same request rules as do_read; the pipe is empty.
  virtual Task<Status> do_read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe);
  // Default: ENOTSUP (never called unless can_write_from_pipe()).
  virtual Task<Status> do_write_from_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe,
                                          IoFlags flags);
  virtual Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) = 0;
  virtual Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags flags) = 0;
  virtual Task<Status> do_flush() = 0;
  virtual Task<Status> do_cache(uint64_t off, uint64_t len) = 0;
  virtual Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) = 0;
  virtual Task<Status> do_truncate(uint64_t new_size);

 private:
  Status check_range(uint64_t off, uint64_t len, int past_end_error) const;
  Status check_writable() const;
  // check_writable (when `write`) and check_range; a refusal counts as an invalid `op`.
  Status check_request(IoOp op, bool write, uint64_t off, uint64_t len, int past_end_error);
  // check_request, and no longer than max_transfer (read and write and their pipe forms).
  Status check_transfer(IoOp op, bool write, uint64_t off, uint64_t len, int past_end_error);
  // What every write-like request does around its driver call: the write gate, dirty
  // bitmaps before and after, the write interceptor. `run` calls the driver's hook.
  // Timed and counted as `op`.
  template <class Run>
  Task<Status> run_write_like(IoOp op, uint64_t off, uint64_t len, Run run);

  std::string name_;
  std::string driver_;
  NodeInfo info_;
  std::atomic<uint64_t> size_{0};
  std::vector<ChildEdge> children_;
  std::atomic<uint64_t> in_flight_{0};
  IoStats io_stats_;
  NodeBitmaps bitmaps_;
  WriteGate write_gate_;
  std::atomic<bool> has_interceptor_{false};
  mutable std::mutex interceptor_mu_;
  std::shared_ptr<WriteInterceptor> interceptor_;  // GUARDED_BY(interceptor_mu_)
};

using BlockNodePtr = std::shared_ptr<BlockNode>;

// The node at the bottom of `node`'s chain of `file` children — the protocol node that
// holds its image (node itself when it has no `file` child).
const BlockNode& protocol_node(const BlockNode& node);

}  // namespace blockcore
