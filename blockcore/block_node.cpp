#include "blockcore/block_node.h"

#include <cassert>
#include <cerrno>
#include <string>
#include <utility>

#include "blockcore/io/pipe_buffer.h"

namespace blockcore {
namespace {

// Counts one request in flight for the lifetime of a hook call.
class InFlightGuard {
 public:
  explicit InFlightGuard(std::atomic<uint64_t>& c) : c_(c) { c_.fetch_add(1, std::memory_order_relaxed); }
  ~InFlightGuard() { c_.fetch_sub(1, std::memory_order_relaxed); }
  InFlightGuard(const InFlightGuard&) = delete;
  InFlightGuard& operator=(const InFlightGuard&) = delete;

 private:
  std::atomic<uint64_t>& c_;
};

}  // namespace

const char* child_role_name(ChildRole role) {
  switch (role) {
    case ChildRole::kFile: return "file";
    case ChildRole::kBacking: return "backing";
    case ChildRole::kTarget: return "target";
    case ChildRole::kDataFile: return "data-file";
  }
  return "?";
}

BlockNode::BlockNode(std::string name, std::string driver)
    : name_(std::move(name)), driver_(std::move(driver)), bitmaps_(name_) {}

BlockNode::~BlockNode() = default;

void BlockNode::add_child(ChildRole role, std::shared_ptr<BlockNode> child) {
  children_.push_back(ChildEdge{role, std::move(child)});
}

Status BlockNode::check_range(uint64_t off, uint64_t len, int past_end_error) const {
  const uint64_t size = this->size();
  if (off > size || len > size - off) {
    return Status::error(past_end_error, name_ + ": request [" + std::to_string(off) + ", +" +
                                             std::to_string(len) + ") is past the end (" +
                                             std::to_string(size) + " bytes)");
  }
  const uint64_t align = info_.request_alignment;
  if (align > 1) {
    const uint64_t end = off + len;
    if (off % align != 0 || (end % align != 0 && end != size)) {
      return Status::invalid(name_ + ": request not aligned to " + std::to_string(align));
    }
  }
  return Status::ok();
}

Status BlockNode::check_writable() const {
  if (info_.read_only) return Status::read_only(name_ + ": node is read-only");
  return Status::ok();
}

Status BlockNode::check_request(IoOp op, bool write, uint64_t off, uint64_t len,
                                int past_end_error) {
  Status s = write ? check_writable() : Status::ok();
  if (s.is_ok()) s = check_range(off, len, past_end_error);
  if (!s.is_ok()) io_stats_.record_invalid(op);
  return s;
}

Status BlockNode::check_transfer(IoOp op, bool write, uint64_t off, uint64_t len,
                                 int past_end_error) {
  FLEECE_RETURN_IF_ERROR(check_request(op, write, off, len, past_end_error));
  if (len > info_.max_transfer) {
    io_stats_.record_invalid(op);
    return Status::invalid(name_ + ": " + io_op_name(op) + " too large");
  }
  return Status::ok();
}

Task<Status> BlockNode::read(uint64_t off, std::span<std::byte> buf) {
  FLEECE_CO_RETURN_IF_ERROR(check_transfer(IoOp::kRead, false, off, buf.size(), EINVAL));
  if (buf.empty()) co_return Status::ok();
  InFlightGuard g(in_flight_);
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  Status s = co_await do_read(off, buf);
  io_stats_.record(IoOp::kRead, start, buf.size(), s.is_ok());
  co_return s;
}

std::optional<Status> BlockNode::read_now(uint64_t off, std::span<std::byte> buf) {
  if (Status s = check_transfer(IoOp::kRead, false, off, buf.size(), EINVAL); !s.is_ok()) {
    return s;
  }
  if (buf.empty()) return Status::ok();
  InFlightGuard g(in_flight_);
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  std::optional<Status> s = do_read_now(off, buf);
  if (s) io_stats_.record(IoOp::kRead, start, buf.size(), s->is_ok());
  return s;
}

std::optional<Status> BlockNode::write_now(uint64_t off, std::span<const std::byte> buf,
                                           IoFlags flags) {
  if (Status s = check_transfer(IoOp::kWrite, true, off, buf.size(), ENOSPC); !s.is_ok()) {
    return s;
  }
  if (buf.empty()) return Status::ok();
  // What run_write_like() would wait for: a closed gate, a durable bitmap to update,
  // an interceptor (copy-before-write). The pass is taken first, as there: whoever
  // closes the gate to install an interceptor waits for this write to leave.
  if (!write_gate_.try_enter()) return std::nullopt;
  WriteGate::Pass pass(&write_gate_);
  if (has_interceptor_.load(std::memory_order_acquire)) return std::nullopt;
  if (!bitmaps_.marks_in_memory()) return std::nullopt;
  InFlightGuard g(in_flight_);
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  std::optional<Status> s = do_write_now(off, buf, flags);
  if (!s) return s;
  // In-memory marks are lost in a crash anyway, so one mark after the write (the gate
  // pass still held, failed writes included) records it as surely as the marks before
  // and after in run_write_like(); a bitmap cleared meanwhile still shows it.
  if (bitmaps_.tracking()) {
    [[maybe_unused]] const bool marked = bitmaps_.try_mark(off, buf.size());
    assert(marked && "in-memory bitmaps are marked without waiting");
  }
  io_stats_.record(IoOp::kWrite, start, buf.size(), s->is_ok());
  return s;
}

std::optional<Status> BlockNode::do_read_now(uint64_t, std::span<std::byte>) {
  return std::nullopt;
}

std::optional<Status> BlockNode::do_write_now(uint64_t, std::span<const std::byte>, IoFlags) {
  return std::nullopt;
}

Task<Status> BlockNode::read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe) {
  if (pipe.held() != 0) co_return Status::invalid(name_ + ": read_to_pipe needs an empty pipe");
  FLEECE_CO_RETURN_IF_ERROR(check_transfer(IoOp::kRead, false, off, len, EINVAL));
  if (len == 0) co_return Status::ok();
  InFlightGuard g(in_flight_);
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  Status s = co_await do_read_to_pipe(off, len, pipe);
  if (s.code() == ENOTSUP && pipe.held() == 0) co_return s;  // not a read: the caller reads
  io_stats_.record(IoOp::kRead, start, len, s.is_ok());
  co_return s;
}

Task<Status> BlockNode::write_from_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe,
                                        IoFlags flags) {
  if (!can_write_from_pipe() || pipe.held() != len) {
    co_return Status::invalid(name_ + ": write_from_pipe needs a node that can take it and "
                              "a pipe holding the payload");
  }
  FLEECE_CO_RETURN_IF_ERROR(check_transfer(IoOp::kWrite, true, off, len, ENOSPC));
  if (len == 0) co_return Status::ok();
  co_return co_await run_write_like(IoOp::kWrite, off, len,
                                    [&] { return do_write_from_pipe(off, len, pipe, flags); });
}

Task<Status> BlockNode::do_write_from_pipe(uint64_t, uint64_t, io::PipeBuffer&, IoFlags) {
  co_return Status::not_supported(name_ + ": " + driver_ + " cannot write from a pipe");
}

Task<Status> BlockNode::do_read_to_pipe(uint64_t, uint64_t, io::PipeBuffer&) {
  co_return Status::not_supported(name_ + ": " + driver_ + " cannot read into a pipe");
}

template <class Run>
Task<Status> BlockNode::run_write_like(IoOp op, uint64_t off, uint64_t len, Run run) {
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  if (!write_gate_.try_enter()) co_await write_gate_.enter();
  WriteGate::Pass pass(&write_gate_);
  InFlightGuard g(in_flight_);
  Status s = Status::ok();
  if (bitmaps_.tracking() && !bitmaps_.try_mark(off, len)) {
    s = co_await bitmaps_.before_write(off, len);
  }
  if (s.is_ok() && has_interceptor_.load(std::memory_order_acquire)) {
    if (std::shared_ptr<WriteInterceptor> i = write_interceptor()) {
      s = co_await i->before_write(off, len);
    }
  }
  if (s.is_ok()) {
    s = co_await run();
    // Marked again: a bitmap cleared while the request ran must still show it.
    if (bitmaps_.tracking() && !bitmaps_.try_mark(off, len)) {
      Status marked = co_await bitmaps_.before_write(off, len);
      if (s.is_ok()) s = std::move(marked);
    }
  }
  io_stats_.record(op, start, len, s.is_ok());
  co_return s;
}

Task<Status> BlockNode::write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) {
  FLEECE_CO_RETURN_IF_ERROR(check_transfer(IoOp::kWrite, true, off, buf.size(), ENOSPC));
  if (buf.empty()) co_return Status::ok();
  co_return co_await run_write_like(IoOp::kWrite, off, buf.size(),
                                    [&] { return do_write(off, buf, flags); });
}

Task<Status> BlockNode::write_zeroes(uint64_t off, uint64_t len, IoFlags flags) {
  FLEECE_CO_RETURN_IF_ERROR(check_request(IoOp::kWriteZeroes, true, off, len, ENOSPC));
  if (has_flag(flags, IoFlags::kFastZero) && !info_.can_fast_zero) {
    // Not an error of the node: the caller asked whether zeroing is cheap.
    co_return Status::not_supported(name_ + ": fast zero not supported");
  }
  if (len == 0) co_return Status::ok();
  co_return co_await run_write_like(IoOp::kWriteZeroes, off, len,
                                    [&] { return do_write_zeroes(off, len, flags); });
}

Task<Status> BlockNode::discard(uint64_t off, uint64_t len, IoFlags flags) {
  FLEECE_CO_RETURN_IF_ERROR(check_request(IoOp::kDiscard, true, off, len, EINVAL));
  if (len == 0) co_return Status::ok();
  // Marked even when the node ignores the hint: the contents became unspecified.
  co_return co_await run_write_like(IoOp::kDiscard, off, len, [&]() -> Task<Status> {
    if (!info_.can_trim) co_return Status::ok();  // discard is only a hint
    co_return co_await do_discard(off, len, flags);
  });
}

void BlockNode::set_write_interceptor(std::shared_ptr<WriteInterceptor> interceptor) {
  std::lock_guard g(interceptor_mu_);
  has_interceptor_.store(interceptor != nullptr, std::memory_order_release);
  interceptor_ = std::move(interceptor);
}

std::shared_ptr<WriteInterceptor> BlockNode::write_interceptor() const {
  std::lock_guard g(interceptor_mu_);
  return interceptor_;
}

Task<Status> BlockNode::flush() {
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  Status s = Status::ok();
  if (info_.can_flush) {
    InFlightGuard g(in_flight_);
    s = co_await do_flush();
  }
  io_stats_.record(IoOp::kFlush, start, 0, s.is_ok());
  co_return s;
}

Task<Status> BlockNode::cache(uint64_t off, uint64_t len) {
  FLEECE_CO_RETURN_IF_ERROR(check_request(IoOp::kCache, false, off, len, EINVAL));
  if (len == 0 || !info_.can_cache) co_return Status::ok();
  InFlightGuard g(in_flight_);
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  Status s = co_await do_cache(off, len);
  io_stats_.record(IoOp::kCache, start, len, s.is_ok());
  co_return s;
}

Task<Result<ExtentList>> BlockNode::block_status(uint64_t off, uint64_t len) {
  if (Status s = check_request(IoOp::kBlockStatus, false, off, len, EINVAL); !s.is_ok()) {
    co_return s;
  }
  if (len == 0) {
    io_stats_.record_invalid(IoOp::kBlockStatus);
    co_return Status::invalid(name_ + ": block status of an empty range");
  }
  InFlightGuard g(in_flight_);
  const IoStats::Clock::time_point start = IoStats::Clock::now();
  Result<ExtentList> r = co_await do_block_status(off, len);
  uint64_t total = 0;
  if (r.is_ok()) {
    // Enforce the contract for callers: non-empty, contiguous, within len.
    ExtentList& list = r.value();
    ExtentList clean;
    for (const Extent& e : list) {
      if (total >= len) break;
      Extent c = e;
      if (c.length > len - total) c.length = len - total;
      total += c.length;
      append_extent(clean, c);
    }
    if (clean.empty()) {
      io_stats_.record(IoOp::kBlockStatus, start, 0, false);
      co_return Status::io_error(name_ + ": driver returned no extents");
    }
    list = std::move(clean);
  }
  // Bytes: the length the answer describes.
  io_stats_.record(IoOp::kBlockStatus, start, total, r.is_ok());
  co_return r;
}

Task<Status> BlockNode::truncate(uint64_t new_size) {
  FLEECE_CO_RETURN_IF_ERROR(check_writable());
  if (!info_.can_truncate) co_return Status::not_supported(name_ + ": cannot change its size");
  if (new_size == size()) co_return Status::ok();
  InFlightGuard g(in_flight_);
  Status s = co_await do_truncate(new_size);
  if (s.is_ok()) size_.store(new_size, std::memory_order_release);
  co_return s;
}

Task<Status> BlockNode::do_truncate(uint64_t) {
  co_return Status::not_supported(name_ + ": cannot change its size");
}

const BlockNode& protocol_node(const BlockNode& node) {
  const BlockNode* n = &node;
  // A chain of format nodes is short; the bound only guards against a cycle.
  for (int depth = 0; depth < 64; ++depth) {
    const BlockNode* next = nullptr;
    for (const ChildEdge& edge : n->children()) {
      if (edge.role == ChildRole::kFile) next = edge.node.get();
    }
    if (next == nullptr) break;
    n = next;
  }
  return *n;
}

}  // namespace blockcore
