// Test fixtures for the bitmap actions: RAM nodes found by name, a FakeStore per node
// when asked, a snapshot of every bitmap's state to compare before/after, and actions
// that write to a node or fail on purpose.
// Threading: test thread only.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backup/bitmap_actions.h"
#include "backup/transaction.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"
#include "unit/backup/fake_bitmap_store.h"

namespace backup {

inline constexpr uint64_t kG = 65536;
inline constexpr uint64_t kSize = 64 * kG;

using fleece_test::FakeStore;

// Everything a user can observe of one bitmap.
struct BitmapState {
  blockcore::HBitmap content;
  uint64_t granularity = 0;
  bool enabled = false, persistent = false, inconsistent = false, busy = false;
  bool operator==(const BitmapState&) const = default;
};

inline std::map<std::string, BitmapState> states_of(const blockcore::BlockNode& node) {
  std::map<std::string, BitmapState> out;
  for (const auto& b : node.bitmaps().list()) {
    out[b->name()] = {b->snapshot(),   b->granularity(),  b->enabled(),
                      b->persistent(), b->inconsistent(), b->busy()};
  }
  return out;
}

// A prepare() that runs `body` (e.g. a write to a node) and then fails.
class FailingAction final : public TransactionAction {
 public:
  using Body = std::function<blockcore::Task<void>()>;
  explicit FailingAction(Body body = {}) : body_(std::move(body)) {}
  std::string type() const override { return "test-fail"; }
  blockcore::Task<blockcore::Status> prepare() override {
    if (body_) co_await body_();
    co_return blockcore::Status::invalid("the test action fails");
  }

 private:
  Body body_;
};

// A write of `len` bytes at `off` that must succeed.
inline blockcore::Task<void> write_async(blockcore::BlockNode& node, uint64_t off,
                                         uint64_t len = 512) {
  std::vector<std::byte> data(len, std::byte{0x5a});
  blockcore::Status s = co_await node.write(off, data, blockcore::IoFlags::kNone);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
}

class BitmapActionsTest : public ::testing::Test {
 protected:
  BitmapActionsTest() {
    disk0_ = fleece_test::MemoryNode::create(kSize, "disk0");
    disk1_ = fleece_test::MemoryNode::create(kSize, "disk1");
    small_ = fleece_test::MemoryNode::create(kSize / 2, "small");
    lookup_ = [this](const std::string& name) -> blockcore::BlockNodePtr {
      if (name == "disk0") return disk0_;
      if (name == "disk1") return disk1_;
      if (name == "small") return small_;
      return nullptr;
    };
  }

  // Runs the actions as one transaction.
  blockcore::Status run(std::vector<TransactionActionPtr> actions) {
    Transaction t(std::move(actions));
    return fleece_test::run_task(t.run());
  }
  blockcore::Status run1(TransactionActionPtr action) {
    std::vector<TransactionActionPtr> v;
    v.push_back(std::move(action));
    return run(std::move(v));
  }

  void write(fleece_test::MemoryNode& node, uint64_t off, uint64_t len = 512) {
    std::vector<std::byte> data(len, std::byte{0x5a});
    ASSERT_TRUE(fleece_test::run_task(node.write(off, data, blockcore::IoFlags::kNone)).is_ok());
  }

  blockcore::DirtyBitmapPtr add(fleece_test::MemoryNode& node, const std::string& name,
                                bool persistent = false, bool disabled = false,
                                uint64_t granularity = kG) {
    BitmapAddParams p{node.name(), name, granularity, persistent, disabled};
    blockcore::Status s = run1(make_bitmap_add(lookup_, p));
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return node.bitmaps().find(name);
  }

  std::shared_ptr<FakeStore> attach_store(fleece_test::MemoryNode& node) {
    auto store = std::make_shared<FakeStore>();
    node.bitmaps().attach_store(store, {});
    return store;
  }

  std::shared_ptr<fleece_test::MemoryNode> disk0_, disk1_, small_;
  NodeLookup lookup_;
};

}  // namespace backup
