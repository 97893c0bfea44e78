// FleeceManager over a RAM live node and a real overlay folder: fleece-start leaves no
// visible file, takes the snapshot, rotates a bitmap (frozen copy on the view, the live
// one restarts empty and keeps recording); fleece-stop drops the frozen copy or, with
// rollback, merges it back; every refusal leaves nothing behind; two fleeces of one
// node live on their own; sweep_overlays removes only overlay files.
#include "backup/fleece_manager.h"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "backup/fleece_overlay.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace backup {
namespace {

using blockcore::DirtyBitmapPtr;
using blockcore::IoFlags;
using blockcore::Result;
using blockcore::Status;
using blockcore::Task;
using fleece_test::MemoryNode;
using fleece_test::run_task;
using fleece_test::TempDir;
using namespace std::chrono_literals;

constexpr uint64_t kG = 65536;
constexpr uint64_t kSize = 64 * kG;

std::vector<std::byte> bytes(size_t n, uint8_t v) {
  return std::vector<std::byte>(n, std::byte{v});
}

// The granules set in a bitmap's content.
std::set<uint64_t> granules(const blockcore::HBitmap& h) {
  std::set<uint64_t> out;
  for (uint64_t i = 0; i < h.size(); ++i) {
    if (h.get(i)) out.insert(i);
  }
  return out;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename());
  return out;
}

struct BrokenEvent {
  std::string id, node, reason;
};

class FleeceManagerTest : public ::testing::Test {
 protected:
  FleeceManagerTest()
      : manager_(pool_, [this](const std::string& id, const std::string& node,
                               const std::string& reason) {
          broken_.push_back({id, node, reason});
        }) {
    live_ = MemoryNode::create(kSize, "disk0");
    live_->fill(0, kSize, std::byte{1});
  }

  // Sessions left running hold their live node (through its filter) and would leak.
  ~FleeceManagerTest() override { run_task(manager_.stop_all()); }

  FleeceRequest request(const std::string& id, std::optional<std::string> bitmap = {}) {
    FleeceRequest r;
    r.id = id;
    r.live = live_;
    r.bitmap = std::move(bitmap);
    r.overlay_dir = dir_.path();
    return r;
  }
  FleecePtr start_ok(const FleeceRequest& r) {
    Result<FleecePtr> f = run_task(manager_.start(r));
    EXPECT_TRUE(f.is_ok()) << f.status().to_string();
    return f.is_ok() ? f.value() : nullptr;
  }
  DirtyBitmapPtr add_bitmap(const std::string& name) {
    Result<DirtyBitmapPtr> b = run_task(live_->bitmaps().create({.name = name}, kSize));
    EXPECT_TRUE(b.is_ok()) << b.status().to_string();
    return b.value();
  }
  void write(uint64_t off, uint64_t len, uint8_t v) {
    Status s = run_task(live_->write(off, bytes(len, v), IoFlags::kNone));
    ASSERT_TRUE(s.is_ok()) << s.to_string();
  }
  static std::vector<std::byte> read(blockcore::BlockNode& n, uint64_t off, uint64_t len) {
    std::vector<std::byte> out(len);
    Status s = run_task(n.read(off, out));
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return out;
  }

  TempDir dir_;
  blockcore::io::BlockingPool pool_{0};
  std::vector<BrokenEvent> broken_;
  FleeceManager manager_;
  std::shared_ptr<MemoryNode> live_;
};

TEST_F(FleeceManagerTest, StartLeavesNoVisibleOverlayAndExportsTheSnapshot) {
  FleecePtr f = start_ok(request("backup"));
  ASSERT_TRUE(f);
  EXPECT_TRUE(files_in(dir_.path()).empty());  // created and unlinked at once
  EXPECT_EQ(f->state(), "active");
  EXPECT_EQ(f->view->size(), kSize);
  EXPECT_TRUE(f->view->read_only() == false && f->view->info().can_trim);
  EXPECT_EQ(manager_.find("backup"), f);
  ASSERT_EQ(manager_.list().size(), 1u);
  EXPECT_NE(live_->write_interceptor(), nullptr);

  const uint64_t before = f->overlay_bytes();
  EXPECT_LT(before, kG);
  write(0, 4096, 2);
  write(10 * kG, 3 * kG, 3);
  // Old data copied in 4 KiB granules: 4 KiB for the first write, 3 * 64 KiB for the second.
  EXPECT_EQ(f->snapshot->copied_bytes(), 4096 + 3 * kG);
  EXPECT_GE(f->overlay_bytes(), before + 4096 + 3 * kG);
  EXPECT_EQ(read(*f->view, 0, kSize), bytes(kSize, 1));
  EXPECT_EQ(read(*live_, 0, 4096), bytes(4096, 2));
  // The view refuses writes.
  EXPECT_EQ(run_task(f->view->write(0, bytes(512, 9), IoFlags::kNone)).code(), EROFS);

  ASSERT_TRUE(run_task(manager_.stop("backup", false)).is_ok());
  EXPECT_EQ(manager_.find("backup"), nullptr);
  EXPECT_TRUE(manager_.list().empty());
  EXPECT_EQ(live_->write_interceptor(), nullptr);
  EXPECT_TRUE(files_in(dir_.path()).empty());
  EXPECT_EQ(run_task(manager_.stop("backup", false)).code(), ENOENT);
}

TEST_F(FleeceManagerTest, BitmapRotationAndStopWithoutRollbackDropsTheFrozenCopy) {
  DirtyBitmapPtr b = add_bitmap("B");
  write(0, 512, 2);
  write(3 * kG, 512, 2);
  FleecePtr f = start_ok(request("backup", "B"));
  ASSERT_TRUE(f);
  // The frozen copy on the view, named like the live one, holds what B had.
  DirtyBitmapPtr frozen = f->view->bitmaps().find("B");
  ASSERT_TRUE(frozen);
  EXPECT_EQ(frozen, f->frozen);
  EXPECT_EQ(granules(frozen->snapshot()), (std::set<uint64_t>{0, 3}));
  EXPECT_FALSE(frozen->enabled());
  EXPECT_EQ(frozen->granularity(), b->granularity());
  // The live B restarted empty and records.
  EXPECT_EQ(b->dirty_granules(), 0u);
  EXPECT_TRUE(b->enabled());
  write(5 * kG, 512, 4);
  EXPECT_EQ(granules(b->snapshot()), (std::set<uint64_t>{5}));
  EXPECT_EQ(granules(frozen->snapshot()), (std::set<uint64_t>{0, 3}));
  // What a store would write keeps the frozen bits until the backup ends.
  EXPECT_EQ(granules(b->stored_snapshot()), (std::set<uint64_t>{0, 3, 5}));

  ASSERT_TRUE(run_task(manager_.stop("backup", false)).is_ok());
  EXPECT_EQ(granules(b->snapshot()), (std::set<uint64_t>{5}));
  EXPECT_EQ(granules(b->stored_snapshot()), (std::set<uint64_t>{5}));
  EXPECT_TRUE(b->enabled());
  // B can be rotated again by the next backup.
  FleecePtr next = start_ok(request("next", "B"));
  ASSERT_TRUE(next);
  EXPECT_EQ(granules(next->frozen->snapshot()), (std::set<uint64_t>{5}));
  ASSERT_TRUE(run_task(manager_.stop("next", false)).is_ok());
}

TEST_F(FleeceManagerTest, StopWithRollbackMergesTheFrozenCopyBack) {
  DirtyBitmapPtr b = add_bitmap("B");
  write(0, 512, 2);
  write(3 * kG, 512, 2);
  FleecePtr f = start_ok(request("backup", "B"));
  ASSERT_TRUE(f);
  write(5 * kG, 512, 4);
  // B stays busy while the session may need to merge back into it: it cannot be
  // removed, cleared, disabled or merged into, but keeps recording.
  EXPECT_TRUE(b->busy());
  EXPECT_EQ(run_task(live_->bitmaps().remove("B")).code(), EBUSY);
  EXPECT_EQ(run_task(live_->bitmaps().clear("B", nullptr)).code(), EBUSY);
  EXPECT_EQ(run_task(live_->bitmaps().set_enabled("B", false, false)).code(), EBUSY);
  EXPECT_TRUE(b->enabled());
  ASSERT_TRUE(run_task(manager_.stop("backup", true)).is_ok());
  EXPECT_FALSE(b->busy());
  EXPECT_EQ(granules(b->snapshot()), (std::set<uint64_t>{0, 3, 5}));
  EXPECT_EQ(granules(b->stored_snapshot()), (std::set<uint64_t>{0, 3, 5}));
  // stop_all (daemon shutdown) rolls back too.
  FleecePtr g = start_ok(request("again", "B"));
  ASSERT_TRUE(g);
  EXPECT_EQ(b->dirty_granules(), 0u);
  write(7 * kG, 512, 4);
  run_task(manager_.stop_all());
  EXPECT_TRUE(manager_.list().empty());
  EXPECT_EQ(granules(b->snapshot()), (std::set<uint64_t>{0, 3, 5, 7}));
  EXPECT_EQ(live_->write_interceptor(), nullptr);
}

TEST_F(FleeceManagerTest, RefusalsLeaveNothingBehind) {
  DirtyBitmapPtr b = add_bitmap("B");
  DirtyBitmapPtr c = add_bitmap("C");
  write(2 * kG, 512, 2);
  FleecePtr first = start_ok(request("first", "B"));
  ASSERT_TRUE(first);
  write(4 * kG, 512, 2);  // B records it; C has granules 2 and 4
  const auto b_before = granules(b->snapshot());
  const auto c_before = granules(c->snapshot());

  auto refused = [&](FleeceRequest r, int code, const std::string& what) {
    SCOPED_TRACE(what);
    Result<FleecePtr> f = run_task(manager_.start(r));
    ASSERT_FALSE(f.is_ok());
    EXPECT_EQ(f.status().code(), code) << f.status().to_string();
    EXPECT_FALSE(f.status().message().empty());
    ASSERT_EQ(manager_.list().size(), 1u);
    EXPECT_EQ(manager_.list()[0], first);
    EXPECT_EQ(first->filter->snapshots(), 1u);
    EXPECT_EQ(granules(b->snapshot()), b_before);
    EXPECT_EQ(granules(c->snapshot()), c_before);
    EXPECT_TRUE(b->enabled() && c->enabled());
    EXPECT_TRUE(files_in(dir_.path()).empty());
  };
  refused(request("first"), EEXIST, "duplicate id");
  refused(request("second", "nope"), ENOENT, "unknown bitmap");
  refused(request("second", "B"), EBUSY, "bitmap frozen by another fleece");
  FleeceRequest r = request("second", "C");
  r.overlay_dir = dir_.file("missing");
  refused(r, ENOENT, "missing overlay folder");
  fleece_test::make_file(dir_.file("plain"), 10);
  r.overlay_dir = dir_.file("plain");
  {
    SCOPED_TRACE("overlay folder is a file");
    Result<FleecePtr> f = run_task(manager_.start(r));
    ASSERT_FALSE(f.is_ok());
    EXPECT_EQ(f.status().code(), ENOTDIR) << f.status().to_string();
    EXPECT_NE(f.status().message().find(dir_.file("plain")), std::string::npos);
    EXPECT_EQ(manager_.list().size(), 1u);
    EXPECT_EQ(granules(c->snapshot()), c_before);
  }
  std::filesystem::remove(dir_.file("plain"));
  r.overlay_dir = "";
  refused(r, EINVAL, "no overlay folder");
  r = request("", "C");
  refused(r, EINVAL, "no id");

  auto ro = std::make_shared<MemoryNode>("ro", [] {
    blockcore::NodeInfo info = MemoryNode::default_info(kSize);
    info.read_only = true;
    return info;
  }());
  r = request("second");
  r.live = ro;
  refused(r, EINVAL, "read-only live node");
  EXPECT_EQ(ro->write_interceptor(), nullptr);

  // The first fleece was never disturbed; after it, both bitmaps are free again.
  std::vector<std::byte> at_first = bytes(kSize, 1);
  std::fill_n(at_first.begin() + 2 * kG, 512, std::byte{2});
  EXPECT_EQ(read(*first->view, 0, kSize), at_first);
  ASSERT_TRUE(run_task(manager_.stop("first", false)).is_ok());
  EXPECT_EQ(live_->write_interceptor(), nullptr);
  FleecePtr second = start_ok(request("second", "B"));
  ASSERT_TRUE(second);
}

TEST_F(FleeceManagerTest, TwoFleecesOfOneNodeHaveTheirOwnLifetimes) {
  DirtyBitmapPtr b = add_bitmap("B");
  FleecePtr scan = start_ok(request("scan"));
  ASSERT_TRUE(scan);
  write(0, 2 * kG, 2);
  FleecePtr backup = start_ok(request("backup", "B"));
  ASSERT_TRUE(backup);
  EXPECT_EQ(scan->filter, backup->filter);
  EXPECT_NE(scan->overlay, backup->overlay);
  EXPECT_TRUE(files_in(dir_.path()).empty());
  write(kG, 2 * kG, 3);

  std::vector<std::byte> at_backup = bytes(kSize, 1);
  std::fill_n(at_backup.begin(), 2 * kG, std::byte{2});
  EXPECT_EQ(read(*scan->view, 0, kSize), bytes(kSize, 1));
  EXPECT_EQ(read(*backup->view, 0, kSize), at_backup);
  EXPECT_EQ(granules(backup->frozen->snapshot()), (std::set<uint64_t>{0, 1}));
  EXPECT_EQ(granules(b->snapshot()), (std::set<uint64_t>{1, 2}));

  // The scan ends first: the backup goes on, still copying.
  ASSERT_TRUE(run_task(manager_.stop("scan", false)).is_ok());
  EXPECT_NE(live_->write_interceptor(), nullptr);
  write(10 * kG, 512, 4);
  EXPECT_EQ(read(*backup->view, 0, kSize), at_backup);
  EXPECT_EQ(manager_.list().size(), 1u);
  ASSERT_TRUE(run_task(manager_.stop("backup", false)).is_ok());
  EXPECT_EQ(live_->write_interceptor(), nullptr);
}

TEST(FleeceCopyGranularity, APageUnlessTheGranuleMapsWouldPass8MiB) {
  constexpr uint64_t GiB = uint64_t{1} << 30;
  EXPECT_EQ(default_copy_granularity(64 * kG, 1), 4096u);
  EXPECT_EQ(default_copy_granularity(256 * GiB, 512), 4096u);
  EXPECT_EQ(default_copy_granularity(256 * GiB + 1, 1), 8192u);
  EXPECT_EQ(default_copy_granularity(1024 * GiB, 1), 16384u);
  EXPECT_EQ(default_copy_granularity(64 * kG, 65536), 65536u);  // the node's alignment
}

TEST_F(FleeceManagerTest, ABrokenSnapshotIsReportedOnceAndStaysListed) {
  FleeceRequest r = request("small");
  r.cbw.overlay_limit = 8192;
  FleecePtr f = start_ok(r);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->snapshot->options().granularity, 4096u);  // the default for a small disk
  write(0, 512, 2);
  write(5 * kG, 512, 2);
  EXPECT_TRUE(broken_.empty());
  write(9 * kG, 512, 2);  // a third granule passes the limit
  write(13 * kG, 512, 2);
  ASSERT_EQ(broken_.size(), 1u);
  EXPECT_EQ(broken_[0].id, "small");
  EXPECT_EQ(broken_[0].node, "disk0");
  EXPECT_NE(broken_[0].reason.find("limit"), std::string::npos);
  EXPECT_EQ(f->state(), "broken");
  EXPECT_EQ(manager_.list().size(), 1u);
  std::vector<std::byte> buf(512);
  EXPECT_EQ(run_task(f->view->read(0, buf)).code(), EIO);
  EXPECT_EQ(read(*live_, 5 * kG, 512), bytes(512, 2));  // live writes went on
  ASSERT_TRUE(run_task(manager_.stop("small", true)).is_ok());
}

// Two starts racing (a write in flight makes both wait for the snapshot point): the id
// and the bitmap are taken by exactly one of them.
TEST_F(FleeceManagerTest, ConcurrentStartsCannotShareAnIdOrABitmap) {
  add_bitmap("B");
  for (bool same_id : {true, false}) {
    SCOPED_TRACE(same_id ? "same id" : "same bitmap");
    live_->set_delay_hook([](MemoryNode::Op op, uint64_t, uint64_t) {
      return op == MemoryNode::Op::kWrite ? 30ms : 0ms;
    });
    asio::io_context& ctx = fleece_test::run_task_context();
    std::vector<Status> results;
    run_task([&]() -> Task<void> {
      asio::co_spawn(
          ctx,
          [&]() -> Task<void> {
            Status s = co_await live_->write(0, bytes(512, 5), IoFlags::kNone);
            EXPECT_TRUE(s.is_ok()) << s.to_string();
          },
          asio::detached);
      asio::steady_timer t(ctx, 5ms);
      co_await t.async_wait(asio::use_awaitable);  // the write is in flight
      int done = 0;
      for (const char* id : {"x", "y"}) {
        FleeceRequest r = request(same_id ? "x" : id, "B");
        asio::co_spawn(
            ctx,
            [&, r]() -> Task<void> {
              Result<FleecePtr> f = co_await manager_.start(r);
              results.push_back(f.status());
              ++done;
            },
            asio::detached);
      }
      while (done < 2) {
        asio::steady_timer w(ctx, 5ms);
        co_await w.async_wait(asio::use_awaitable);
      }
    }());
    ASSERT_EQ(results.size(), 2u);
    EXPECT_TRUE(results[0].is_ok()) << results[0].to_string();
    EXPECT_EQ(results[1].code(), same_id ? EEXIST : EBUSY) << results[1].to_string();
    ASSERT_EQ(manager_.list().size(), 1u);
    EXPECT_EQ(manager_.list()[0]->filter->snapshots(), 1u);
    live_->set_delay_hook({});
    run_task(manager_.stop_all());
    EXPECT_EQ(live_->write_interceptor(), nullptr);
  }
}

TEST(FleeceOverlay, SweepRemovesOnlyOverlayFiles) {
  TempDir dir;
  for (const char* name : {"fleece-a-123456.overlay", "fleece-b.overlay", "other.overlay",
                           "fleece-c.qcow2", "disk.img"}) {
    fleece_test::make_file(dir.file(name), 100);
  }
  std::filesystem::create_directory(dir.file("fleece-d.overlay"));
  EXPECT_EQ(sweep_overlays(dir.path()), 2u);
  std::set<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    left.insert(e.path().filename());
  }
  EXPECT_EQ(left, (std::set<std::string>{"other.overlay", "fleece-c.qcow2", "disk.img",
                                         "fleece-d.overlay"}));
  EXPECT_EQ(sweep_overlays(dir.file("missing")), 0u);
}

TEST(FleeceOverlay, CreateGivesASparseUnlinkedWritableFile) {
  TempDir dir;
  blockcore::io::BlockingPool pool(0);
  auto node = create_overlay(dir.path(), "t", 1 << 30, pool);
  ASSERT_TRUE(node.is_ok()) << node.status().to_string();
  EXPECT_EQ(node.value()->size(), 1u << 30);
  EXPECT_FALSE(node.value()->read_only());
  EXPECT_LT(node.value()->allocated_bytes(), 65536u);
  EXPECT_TRUE(files_in(dir.path()).empty());
  ASSERT_TRUE(run_task(node.value()->write(1 << 20, bytes(65536, 7), IoFlags::kNone)).is_ok());
  EXPECT_GE(node.value()->allocated_bytes(), 65536u);
}

}  // namespace
}  // namespace backup
