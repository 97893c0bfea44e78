#include "blockcore/filters/fleece_snapshot.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "blockcore/base/with_timeout.h"
#include "blockcore/io/aligned_buffer.h"

namespace blockcore {
namespace {

// Largest piece of a copy run read and written in one request.
constexpr uint64_t kCopyChunk = 1u << 20;

bool all_zero(std::span<const std::byte> b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; });
}

}  // namespace

FleeceSnapshot::FleeceSnapshot(std::string id, BlockNodePtr live, BlockNodePtr target,
                               CbwOptions opts, BrokenHandler on_broken)
    : id_(std::move(id)),
      live_(std::move(live)),
      target_(std::move(target)),
      opts_(opts),
      size_(live_->size()),
      on_broken_(std::move(on_broken)),
      copied_((size_ + opts.granularity - 1) / opts.granularity),
      released_(copied_.size()) {}

std::string FleeceSnapshot::broken_reason() const {
  std::lock_guard g(mu_);
  return reason_;
}

Status FleeceSnapshot::broken_status() const {
  return Status::io_error("fleece '" + id_ + "' is broken: " + broken_reason());
}

uint64_t FleeceSnapshot::copied_bytes() const {
  std::lock_guard g(mu_);
  uint64_t bytes = (copied_.count() - released_.count()) * opts_.granularity;
  const uint64_t n = copied_.size();
  if (n != 0 && copied_.get(n - 1) && !released_.get(n - 1)) {
    bytes -= n * opts_.granularity - size_;
  }
  return bytes;
}

void FleeceSnapshot::break_snapshot(const std::string& reason) {
  {
    std::lock_guard g(mu_);
    if (broken_.load(std::memory_order_acquire)) return;
    reason_ = reason;
    broken_.store(true, std::memory_order_release);
  }
  spdlog::warn("fleece '{}' of node '{}' is broken: {}", id_, live_->name(), reason);
  if (on_broken_) on_broken_(reason);
}

Task<Status> FleeceSnapshot::before_live_write(uint64_t off, uint64_t len) {
  if (broken() || len == 0 || off >= size_) co_return Status::ok();
  len = std::min(len, size_ - off);
  const uint64_t first = first_granule(off);
  const uint64_t end = end_granule(off, len);
  {
    std::lock_guard g(mu_);
    if (copied_.all_set(first, end - first)) co_return Status::ok();
  }
  Status s;
  if (opts_.timeout.count() > 0) {
    // The copy runs on its own; the live write waits for it at most `timeout`.
    // A named variable, not a temporary in the co_await expression: gcc 12 destroys such
    // a temporary twice, which released `self` once too often (use after free).
    auto copy = [self = shared_from_this(), first, end]() -> Task<Status> {
      RangeLock::Guard lock = co_await self->locks_.lock(first, end, RangeLock::Mode::kExclusive);
      co_return co_await self->copy_granules(first, end);
    };
    s = co_await with_timeout(std::move(copy), opts_.timeout);
    if (s.code() == ETIMEDOUT) {
      s = Status::error(ETIMEDOUT, "copy-before-write took longer than cbw-timeout (" +
                                       std::to_string(opts_.timeout.count()) + " ms)");
    }
  } else {
    RangeLock::Guard lock = co_await locks_.lock(first, end, RangeLock::Mode::kExclusive);
    s = co_await copy_granules(first, end);
  }
  if (s.is_ok()) co_return s;
  if (opts_.break_guest_write) {
    co_return s.with_context("fleece '" + id_ + "': copy-before-write failed");
  }
  break_snapshot(s.message());
  co_return Status::ok();
}

Task<Status> FleeceSnapshot::copy_granules(uint64_t first, uint64_t end) {
  // Another writer may have copied some of the range while this one waited.
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  uint64_t bytes = 0;
  {
    std::lock_guard g(mu_);
    for (uint64_t pos = copied_.next_clear(first, end); pos < end;) {
      const uint64_t run_end = copied_.next_set(pos, end);
      runs.emplace_back(pos, run_end);
      bytes += (run_end - pos) * opts_.granularity;
      pos = copied_.next_clear(run_end, end);
    }
  }
  if (runs.empty() || broken()) co_return Status::ok();
  if (opts_.overlay_limit != 0 && copied_bytes() + bytes > opts_.overlay_limit) {
    co_return Status::no_space("the fleecing overlay reached its limit of " +
                               std::to_string(opts_.overlay_limit) + " bytes");
  }
  for (const auto& [run_first, run_end] : runs) {
    FLEECE_CO_RETURN_IF_ERROR(co_await copy_run(run_first, run_end));
  }
  co_return Status::ok();
}

Task<Status> FleeceSnapshot::copy_run(uint64_t first, uint64_t end) {
  const uint64_t begin_off = first * opts_.granularity;
  const uint64_t end_off = std::min(size_, end * opts_.granularity);
  io::AlignedBuffer buf = io::AlignedBuffer::allocate(std::min(kCopyChunk, end_off - begin_off));
  if (buf.empty()) co_return Status::no_memory("no memory for a copy-before-write buffer");
  for (uint64_t pos = begin_off; pos < end_off;) {
    const uint64_t n = std::min<uint64_t>(buf.size(), end_off - pos);
    std::span<std::byte> chunk = buf.span().first(n);
    Status s = co_await live_->read(pos, chunk);
    if (!s.is_ok()) co_return s.with_context("reading old data of '" + live_->name() + "'");
    // The target is sparse and fresh: granules of zeroes need no write. The others are
    // written in runs of adjacent non-zero granules.
    uint64_t run_start = n;  // n: no run open
    for (uint64_t p = 0;;) {
      const uint64_t q = std::min<uint64_t>(n, p + opts_.granularity);
      const bool data = p < n && !all_zero(chunk.subspan(p, q - p));
      if (data && run_start == n) run_start = p;
      if (!data && run_start != n) {
        s = co_await target_->write(pos + run_start, chunk.subspan(run_start, p - run_start),
                                    IoFlags::kNone);
        if (!s.is_ok()) co_return s.with_context("writing the fleecing overlay");
        run_start = n;
      }
      if (p == n) break;
      p = q;
    }
    pos += n;
  }
  std::lock_guard g(mu_);
  copied_.set(first, end - first);
  co_return Status::ok();
}

Task<Status> FleeceSnapshot::read(uint64_t off, std::span<std::byte> buf) {
  if (broken()) co_return broken_status();
  if (buf.empty()) co_return Status::ok();
  const uint64_t first = first_granule(off);
  const uint64_t end = end_granule(off, buf.size());
  RangeLock::Guard lock = co_await locks_.lock(first, end, RangeLock::Mode::kShared);
  uint64_t pos = off;
  const uint64_t stop = off + buf.size();
  while (pos < stop) {
    const uint64_t g = first_granule(pos);
    bool copied, released;
    uint64_t run_end_granule;
    {
      std::lock_guard l(mu_);
      copied = copied_.get(g);
      released = released_.get(g);
      run_end_granule = copied ? copied_.next_clear(g + 1, end) : copied_.next_set(g + 1, end);
      // Released granules are marked copied too: a copied run stops at the first one.
      run_end_granule =
          released ? g + 1 : std::min(run_end_granule, released_.next_set(g + 1, end));
    }
    if (released) {
      co_return Status::io_error("fleece '" + id_ + "': [" + std::to_string(pos) +
                                 ", ...) was discarded through the snapshot");
    }
    const uint64_t run_stop = std::min(stop, run_end_granule * opts_.granularity);
    std::span<std::byte> part = buf.subspan(pos - off, run_stop - pos);
    BlockNode& from = copied ? *target_ : *live_;
    FLEECE_CO_RETURN_IF_ERROR(co_await from.read(pos, part));
    pos = run_stop;
  }
  // A copy failure may have broken the view while it was read.
  if (broken()) co_return broken_status();
  co_return Status::ok();
}

Task<Result<ExtentList>> FleeceSnapshot::block_status(uint64_t off, uint64_t len) {
  if (broken()) co_return broken_status();
  const uint64_t first = first_granule(off);
  const uint64_t end = end_granule(off, len);
  RangeLock::Guard lock = co_await locks_.lock(first, end, RangeLock::Mode::kShared);
  bool copied, released;
  uint64_t run_end_granule;
  {
    std::lock_guard l(mu_);
    const uint64_t g = first;
    copied = copied_.get(g);
    released = released_.get(g);
    run_end_granule = copied ? copied_.next_clear(g + 1, end) : copied_.next_set(g + 1, end);
    run_end_granule = released ? released_.next_clear(g + 1, end)
                               : std::min(run_end_granule, released_.next_set(g + 1, end));
  }
  const uint64_t run_len = std::min(off + len, run_end_granule * opts_.granularity) - off;
  if (released) co_return ExtentList{Extent{run_len, kExtentHole | kExtentZero, 0}};
  Result<ExtentList> r = co_await (copied ? target_ : live_)->block_status(off, run_len);
  if (!r.is_ok()) co_return r;
  if (copied) {
    // Old data kept in the overlay belongs to the snapshot itself.
    for (Extent& e : r.value()) e.depth = (e.flags & kExtentHole) ? 0 : 1;
  }
  co_return r;
}

Task<Status> FleeceSnapshot::discard(uint64_t off, uint64_t len) {
  // Only whole granules are released.
  const uint64_t first = (off + opts_.granularity - 1) / opts_.granularity;
  const uint64_t end = std::min(copied_.size(), (off + len) / opts_.granularity +
                                                    ((off + len) == size_ ? 1 : 0));
  if (first >= end) co_return Status::ok();
  RangeLock::Guard lock = co_await locks_.lock(first, end, RangeLock::Mode::kExclusive);
  {
    std::lock_guard l(mu_);
    copied_.set(first, end - first);
    released_.set(first, end - first);
  }
  const uint64_t begin_off = first * opts_.granularity;
  const uint64_t end_off = std::min(size_, end * opts_.granularity);
  // Releasing space is a hint: a target that cannot punch holes just keeps it.
  Status s = co_await target_->discard(begin_off, end_off - begin_off, IoFlags::kMayTrim);
  if (!s.is_ok()) spdlog::debug("fleece '{}': releasing overlay space: {}", id_, s.to_string());
  co_return Status::ok();
}

}  // namespace blockcore
