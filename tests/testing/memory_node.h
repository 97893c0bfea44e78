// MemoryNode: a RAM-backed BlockNode for tests. Tracks allocation per 4 KiB block (so
// block_status reports data and holes), records every call with its flags, and offers
// fault injection (an errno per call) and delays (to make requests finish out of order).
// Threading: thread-safe like every BlockNode; configure hooks before sharing the node.
#pragma once

#include <algorithm>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blockcore/block_node.h"

namespace fleece_test {

class MemoryNode : public blockcore::BlockNode {
 public:
  enum class Op { kRead, kWrite, kWriteZeroes, kDiscard, kFlush, kCache, kBlockStatus };
  struct Call {
    Op op;
    uint64_t offset;
    uint64_t length;
    blockcore::IoFlags flags;
  };
  // Returns an errno to fail the call with, or 0.
  using FailHook = std::function<int(Op, uint64_t off, uint64_t len)>;
  using DelayHook = std::function<std::chrono::milliseconds(Op, uint64_t off, uint64_t len)>;

  static constexpr uint64_t kBlock = 4096;

  // A writable node with trim, efficient zeroing and fast zero.
  static blockcore::NodeInfo default_info(uint64_t size) {
    blockcore::NodeInfo info;
    info.size = size;
    info.read_only = false;
    info.can_trim = true;
    info.can_zero = true;
    info.can_fast_zero = true;
    return info;
  }

  static std::shared_ptr<MemoryNode> create(uint64_t size, std::string name = "mem0") {
    return std::make_shared<MemoryNode>(std::move(name), default_info(size));
  }

  MemoryNode(std::string name, blockcore::NodeInfo info)
      : BlockNode(std::move(name), "memory"),
        data_(info.size),
        allocated_((info.size + kBlock - 1) / kBlock, false) {
    set_info(info);
  }

  void set_fail_hook(FailHook h) { fail_ = std::move(h); }
  void set_delay_hook(DelayHook h) { delay_ = std::move(h); }

  // Test access (no validation, no hooks, not recorded).
  void fill(uint64_t off, uint64_t len, std::byte value) {
    std::lock_guard lock(mu_);
    std::memset(data_.data() + off, std::to_integer<int>(value), len);
    mark(off, len, true);
  }
  std::vector<std::byte> contents(uint64_t off, uint64_t len) const {
    std::lock_guard lock(mu_);
    return std::vector<std::byte>(data_.begin() + off, data_.begin() + off + len);
  }
  bool allocated(uint64_t off) const {
    std::lock_guard lock(mu_);
    return allocated_[off / kBlock];
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  size_t count(Op op) const {
    std::lock_guard lock(mu_);
    return std::count_if(calls_.begin(), calls_.end(), [&](const Call& c) { return c.op == op; });
  }

 protected:
  blockcore::Task<blockcore::Status> do_read(uint64_t off, std::span<std::byte> buf) override {
    if (int e = co_await enter(Op::kRead, off, buf.size())) co_return fail(e, "read");
    std::lock_guard lock(mu_);
    std::memcpy(buf.data(), data_.data() + off, buf.size());
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_write(uint64_t off, std::span<const std::byte> buf,
                                              blockcore::IoFlags flags) override {
    if (int e = co_await enter(Op::kWrite, off, buf.size(), flags)) co_return fail(e, "write");
    std::lock_guard lock(mu_);
    std::memcpy(data_.data() + off, buf.data(), buf.size());
    mark(off, buf.size(), true);
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_write_zeroes(uint64_t off, uint64_t len,
                                                     blockcore::IoFlags flags) override {
    if (int e = co_await enter(Op::kWriteZeroes, off, len, flags)) co_return fail(e, "zero");
    std::lock_guard lock(mu_);
    std::memset(data_.data() + off, 0, len);
    if (blockcore::has_flag(flags, blockcore::IoFlags::kMayTrim)) {
      unmap_whole_blocks(off, len);
    } else {
      mark(off, len, true);
    }
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_discard(uint64_t off, uint64_t len,
                                                blockcore::IoFlags flags) override {
    if (int e = co_await enter(Op::kDiscard, off, len, flags)) co_return fail(e, "discard");
    std::lock_guard lock(mu_);
    unmap_whole_blocks(off, len);
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_flush() override {
    if (int e = co_await enter(Op::kFlush, 0, 0)) co_return fail(e, "flush");
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> do_cache(uint64_t off, uint64_t len) override {
    if (int e = co_await enter(Op::kCache, off, len)) co_return fail(e, "cache");
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Result<blockcore::ExtentList>> do_block_status(uint64_t off,
                                                                            uint64_t len) override {
    if (int e = co_await enter(Op::kBlockStatus, off, len)) co_return fail(e, "block status");
    std::lock_guard lock(mu_);
    blockcore::ExtentList out;
    uint64_t pos = off;
    const uint64_t end = off + len;
    while (pos < end) {
      const uint64_t block_end = std::min(end, (pos / kBlock + 1) * kBlock);
      const bool a = allocated_[pos / kBlock];
      blockcore::append_extent(
          out, blockcore::Extent{block_end - pos,
                                 a ? 0u : (blockcore::kExtentHole | blockcore::kExtentZero), 1});
      pos = block_end;
    }
    co_return out;
  }

 private:
  static blockcore::Status fail(int err, const char* what) {
    return blockcore::Status::from_errno(err, std::string("memory node ") + what);
  }

  // Records the call, applies the delay hook, and returns the injected errno (or 0).
  blockcore::Task<int> enter(Op op, uint64_t off, uint64_t len,
                             blockcore::IoFlags flags = blockcore::IoFlags::kNone) {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(Call{op, off, len, flags});
    }
    if (delay_) {
      auto d = delay_(op, off, len);
      if (d.count() > 0) {
        asio::steady_timer t(co_await asio::this_coro::executor, d);
        co_await t.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      }
    }
    co_return fail_ ? fail_(op, off, len) : 0;
  }

  // REQUIRES: mu_ held.
  void mark(uint64_t off, uint64_t len, bool value) {
    if (len == 0) return;
    for (uint64_t b = off / kBlock; b <= (off + len - 1) / kBlock; ++b) allocated_[b] = value;
  }
  // Deallocates (and zeroes) the blocks entirely inside [off, off+len).
  // REQUIRES: mu_ held.
  void unmap_whole_blocks(uint64_t off, uint64_t len) {
    const uint64_t first = (off + kBlock - 1) / kBlock;
    const uint64_t end = off + len == size() ? allocated_.size() : (off + len) / kBlock;
    for (uint64_t b = first; b < end; ++b) {
      allocated_[b] = false;
      const uint64_t start = b * kBlock;
      std::memset(data_.data() + start, 0, std::min(kBlock, size() - start));
    }
  }

  mutable std::mutex mu_;
  std::vector<std::byte> data_;  // GUARDED_BY(mu_)
  std::vector<bool> allocated_;  // GUARDED_BY(mu_)
  std::vector<Call> calls_;      // GUARDED_BY(mu_)
  FailHook fail_;
  DelayHook delay_;
};

}  // namespace fleece_test
