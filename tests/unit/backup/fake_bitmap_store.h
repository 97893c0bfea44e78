// FakeStore: a BitmapStore that keeps copies of its bitmaps (content and enabled flag)
// in memory and fails every call with `fail_errno` while that is set; follows the
// BitmapStore contract (durable after create/write_bitmap, memory set after the store).
// Threading: test thread only.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "blockcore/bitmap/bitmap_store.h"

namespace fleece_test {

class FakeStore final : public blockcore::BitmapStore {
 public:
  bool writable_ = true;
  int fail_errno = 0;  // every call fails with it while set
  std::map<std::string, blockcore::HBitmap> stored;
  std::map<std::string, bool> stored_enabled;

  bool writable() const override { return writable_; }
  std::string describe() const override { return "fake store"; }
  blockcore::Task<blockcore::Status> create(const blockcore::DirtyBitmapPtr& b) override {
    if (fail_errno) co_return blockcore::Status::error(fail_errno, "fake create failed");
    stored[b->name()] = b->snapshot();
    stored_enabled[b->name()] = b->enabled();
    b->set_durable(true);
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> remove(const blockcore::DirtyBitmapPtr& b) override {
    if (fail_errno) co_return blockcore::Status::error(fail_errno, "fake remove failed");
    stored.erase(b->name());
    stored_enabled.erase(b->name());
    b->set_durable(false);
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> persist_marks(
      std::span<const blockcore::DirtyBitmapPtr> bitmaps, uint64_t off, uint64_t len) override {
    if (fail_errno) co_return blockcore::Status::error(fail_errno, "fake persist failed");
    for (const auto& b : bitmaps) {
      blockcore::DirtyBitmap copy(b->name(), b->disk_size(), b->granularity());
      copy.restore(stored[b->name()]);
      copy.mark(off, len);
      stored[b->name()] = copy.snapshot();
      b->mark(off, len);
    }
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> write_bitmap(
      const blockcore::DirtyBitmapPtr& b,
      std::function<void(blockcore::HBitmap&)> change) override {
    if (fail_errno) co_return blockcore::Status::error(fail_errno, "fake write failed");
    blockcore::HBitmap content = b->snapshot();
    if (change) change(content);
    stored[b->name()] = content;
    stored_enabled[b->name()] = b->enabled();
    b->restore(content);
    b->set_durable(true);
    co_return blockcore::Status::ok();
  }
  blockcore::Task<blockcore::Status> close() override { co_return blockcore::Status::ok(); }
};

}  // namespace fleece_test
