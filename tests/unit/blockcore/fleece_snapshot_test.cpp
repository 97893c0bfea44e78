// The fleecing core: FleeceSnapshot + CopyBeforeWrite + SnapshotAccessNode over RAM nodes
// (and a sparse overlay file). A table of writes in the spirit of QEMU's image-fleecing
// iotest (overlapping, partial, adjacent, unaligned, zero and trim writes to the live
// node): the view keeps reading the bytes of the snapshot point, the live node the new
// ones, the view refuses writes. Then block status, two snapshots at once, copy-once,
// writes waiting for view reads, the error policies, overlay limit, cbw-timeout, trim
// through the view.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "blockcore/drivers/file_node.h"
#include "blockcore/filters/copy_before_write.h"
#include "blockcore/filters/fleece_snapshot.h"
#include "blockcore/filters/snapshot_access_node.h"
#include "blockcore/io/blocking_pool.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::MemoryNode;
using fleece_test::run_task;
using fleece_test::TempDir;
using namespace std::chrono_literals;
using Op = MemoryNode::Op;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kG = 64 * kKiB;  // granularity
constexpr uint64_t kSize = 4 * kMiB;

std::vector<std::byte> bytes(size_t n, uint8_t v) {
  return std::vector<std::byte>(n, std::byte{v});
}

Task<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// One fleecing snapshot of `live` with its filter and view, and what its broken handler saw.
struct Fleece {
  FleeceSnapshotPtr snap;
  std::shared_ptr<SnapshotAccessNode> view;
  std::shared_ptr<CopyBeforeWrite> filter;
  std::shared_ptr<int> broken_calls = std::make_shared<int>(0);
  std::shared_ptr<std::string> reason = std::make_shared<std::string>();
  // Removes the snapshot from the filter when the last copy of this Fleece goes (the
  // live node, its filter and the snapshot hold each other until then).
  std::shared_ptr<void> attached;

  static Fleece start(const BlockNodePtr& live, const BlockNodePtr& target, CbwOptions opts = {},
                      const std::string& id = "f0") {
    Fleece f;
    f.snap = std::make_shared<FleeceSnapshot>(
        id, live, target, opts,
        [calls = f.broken_calls, reason = f.reason](const std::string& r) {
          ++*calls;
          *reason = r;
        });
    f.view = std::make_shared<SnapshotAccessNode>("view-" + id, f.snap);
    f.filter = CopyBeforeWrite::attach(*live);
    f.filter->add(f.snap);
    f.attached = std::shared_ptr<void>(
        nullptr, [filter = f.filter, snap = f.snap](void*) { filter->remove(*snap); });
    return f;
  }
  void stop() { attached.reset(); }

  std::vector<std::byte> read_all() const {
    std::vector<std::byte> out(view->size());
    for (uint64_t off = 0; off < out.size(); off += kMiB) {
      const uint64_t n = std::min<uint64_t>(kMiB, out.size() - off);
      Status s = run_task(view->read(off, std::span(out).subspan(off, n)));
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    }
    return out;
  }
};

std::vector<std::byte> read_node(BlockNode& n, uint64_t off, uint64_t len) {
  std::vector<std::byte> out(len);
  Status s = run_task(n.read(off, out));
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return out;
}

// Where two byte vectors first differ, for messages.
std::string first_difference(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  if (a.size() != b.size()) return "sizes differ";
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return "first difference at byte " + std::to_string(i) + ": " +
             std::to_string(std::to_integer<int>(a[i])) + " vs " +
             std::to_string(std::to_integer<int>(b[i]));
    }
  }
  return "equal";
}

// ---- the table ----

enum class Kind { kWrite, kZero, kZeroMayTrim, kDiscard };
struct Step {
  Kind kind;
  uint8_t pattern;
  uint64_t off;
  uint64_t len;
  const char* what;
};

// Patterns written before the snapshot (QEMU's test, scaled to 4 MiB).
const Step kPatterns[] = {
    {Kind::kWrite, 0x5d, 0, kG, "pattern at 0"},
    {Kind::kWrite, 0xd5, 1 * kMiB, kG, "pattern at 1M"},
    {Kind::kWrite, 0xdc, 2 * kMiB, kG, "pattern at 2M"},
    {Kind::kWrite, 0xcd, kSize - kG, kG, "pattern at the last granule"},
};

// Writes after the snapshot.
const Step kOverwrites[] = {
    {Kind::kWrite, 0xab, 0, kG, "full overwrite"},
    {Kind::kWrite, 0xad, 1 * kMiB - 32 * kKiB, kG, "partial-left"},
    {Kind::kWrite, 0x1d, 2 * kMiB + 32 * kKiB, kG, "partial-right"},
    {Kind::kWrite, 0xea, kSize - 2 * kG, kG, "adjacent-left"},
    {Kind::kWrite, 0x77, 3 * kMiB + 100, 5000, "unaligned, inside one granule"},
    {Kind::kWrite, 0x78, 3 * kMiB + kG - 7, 300 * kKiB, "unaligned, across five granules"},
    {Kind::kWrite, 0x79, 3 * kMiB + 50, 10, "unaligned, already copied"},
    {Kind::kZero, 0, 1 * kMiB - 32 * kKiB, 32 * kKiB, "zero the left end of partial-left"},
    {Kind::kZeroMayTrim, 0, 2 * kMiB + kG, 32 * kKiB, "zero (may trim) right of partial-right"},
    {Kind::kZero, 0, kSize - 2 * kG, kG, "zero adjacent-left again"},
    {Kind::kDiscard, 0, 1 * kMiB, 3 * kG, "trim the 1M pattern and beyond"},
    {Kind::kDiscard, 0, kSize - kG + 4 * kKiB, kG - 4 * kKiB, "trim the end, unaligned start"},
    {Kind::kWrite, 0x42, 512 * kKiB, 1 * kMiB, "one large write over holes and data"},
};

// Applies a step to the node and to a model of it (discard as MemoryNode does it:
// whole 4 KiB blocks read as zeroes).
void apply(BlockNode& node, std::vector<std::byte>& model, const Step& st) {
  Status s;
  switch (st.kind) {
    case Kind::kWrite: {
      auto data = bytes(st.len, st.pattern);
      s = run_task(node.write(st.off, data, IoFlags::kNone));
      std::memset(model.data() + st.off, st.pattern, st.len);
      break;
    }
    case Kind::kZero:
    case Kind::kZeroMayTrim:
      s = run_task(node.write_zeroes(st.off, st.len,
                                     st.kind == Kind::kZero ? IoFlags::kNone : IoFlags::kMayTrim));
      std::memset(model.data() + st.off, 0, st.len);
      break;
    case Kind::kDiscard: {
      s = run_task(node.discard(st.off, st.len, IoFlags::kNone));
      const uint64_t b = MemoryNode::kBlock;
      const uint64_t first = (st.off + b - 1) / b * b;
      const uint64_t end =
          st.off + st.len == model.size() ? model.size() : (st.off + st.len) / b * b;
      if (first < end) std::memset(model.data() + first, 0, end - first);
      break;
    }
  }
  ASSERT_TRUE(s.is_ok()) << st.what << ": " << s.to_string();
}

class FleeceTable : public ::testing::TestWithParam<bool> {
 protected:
  // The target: a RAM node, or (param true) a sparse file like fleeced's overlays.
  BlockNodePtr make_target(uint64_t size) {
    if (!GetParam()) return MemoryNode::create(size, "target");
    const std::string path = dir_.file("overlay");
    fleece_test::make_file(path, size);
    NodeSpec spec;
    spec.node_name = "target";
    spec.driver = "file";
    spec.read_only = false;
    spec.file.filename = path;
    auto r = FileNode::open(spec, pool_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    file_target_ = r.value();
    return file_target_;
  }

  TempDir dir_;
  io::BlockingPool pool_{0};
  std::shared_ptr<FileNode> file_target_;
};

TEST_P(FleeceTable, ViewKeepsTheSnapshotWhileTheLiveNodeChanges) {
  auto live = MemoryNode::create(kSize, "live");
  std::vector<std::byte> model(kSize);
  for (const Step& st : kPatterns) apply(*live, model, st);
  const std::vector<std::byte> at_snapshot = model;

  Fleece f = Fleece::start(live, make_target(kSize));
  ASSERT_EQ(f.view->size(), kSize);
  EXPECT_EQ(f.read_all(), at_snapshot);

  for (const Step& st : kOverwrites) {
    SCOPED_TRACE(st.what);
    apply(*live, model, st);
    std::vector<std::byte> view = f.read_all();
    EXPECT_TRUE(view == at_snapshot) << first_difference(view, at_snapshot);
    std::vector<std::byte> now = read_node(*live, 0, kSize);
    EXPECT_TRUE(now == model) << first_difference(now, model);
  }
  EXPECT_FALSE(f.snap->broken());
  EXPECT_EQ(*f.broken_calls, 0);
  // Every granule some step touched was copied once; nothing else.
  EXPECT_GT(f.snap->copied_bytes(), 0u);
  EXPECT_LE(f.snap->copied_bytes(), kSize);
  if (file_target_) {
    // Zero granules are not written: the overlay holds at most the non-zero old data.
    EXPECT_LE(file_target_->allocated_bytes(), 4 * kG + 64 * kKiB);
  }

  // The view refuses writes; the live node is untouched by the attempts.
  auto data = bytes(4096, 0xee);
  EXPECT_EQ(run_task(f.view->write(0, data, IoFlags::kNone)).code(), EROFS);
  EXPECT_EQ(run_task(f.view->write_zeroes(0, 4096, IoFlags::kNone)).code(), EROFS);
  EXPECT_EQ(read_node(*live, 0, kSize), model);
  EXPECT_EQ(f.read_all(), at_snapshot);

  f.stop();
  EXPECT_EQ(live->write_interceptor(), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Targets, FleeceTable, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "SparseFile" : "Memory"; });

TEST(FleeceSnapshot, CopiesOnlyTouchedGranulesAndSkipsZeroes) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kG, std::byte{1});
  Fleece f = Fleece::start(live, target);
  // A 4 KiB write copies its whole granule (64 KiB of data), once.
  ASSERT_TRUE(run_task(live->write(4096, bytes(4096, 2), IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(live->write(8192, bytes(4096, 3), IoFlags::kNone)).is_ok());
  EXPECT_EQ(target->count(Op::kWrite), 1u);
  ASSERT_EQ(target->calls().size(), 1u);
  EXPECT_EQ(target->calls()[0].offset, 0u);
  EXPECT_EQ(target->calls()[0].length, kG);
  EXPECT_EQ(f.snap->copied_bytes(), kG);
  // A granule of zeroes is marked copied but nothing is written to the target.
  ASSERT_TRUE(run_task(live->write(5 * kG, bytes(10, 4), IoFlags::kNone)).is_ok());
  EXPECT_EQ(target->count(Op::kWrite), 1u);
  EXPECT_EQ(f.snap->copied_bytes(), 2 * kG);
  EXPECT_EQ(read_node(*f.view, 5 * kG, kG), bytes(kG, 0));
  // A write-zeroes over granules 8..9 copies both.
  ASSERT_TRUE(run_task(live->write_zeroes(8 * kG, 2 * kG, IoFlags::kNone)).is_ok());
  EXPECT_EQ(f.snap->copied_bytes(), 4 * kG);
}

TEST(FleeceSnapshot, BlockStatusOfTheViewDescribesTheSnapshot) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kG, std::byte{1});           // granule 0: data
  live->fill(3 * kG, 4096, std::byte{2});    // granule 3: one data block
  Fleece f = Fleece::start(live, target);
  // Granule 2 (a hole) is written on the live node, granule 0 (data) overwritten.
  ASSERT_TRUE(run_task(live->write(2 * kG, bytes(kG, 9), IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(live->write(0, bytes(100, 9), IoFlags::kNone)).is_ok());

  auto status = [&](uint64_t off, uint64_t len) {
    Result<ExtentList> r = run_task(f.view->block_status(off, len));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : ExtentList{};
  };
  // Granule 0 is data (from the overlay, old data the snapshot owns).
  ExtentList e = status(0, kG);
  ASSERT_FALSE(e.empty());
  EXPECT_EQ(e[0].flags & kExtentZero, 0u);
  EXPECT_EQ(e[0].depth, 1u);
  // Granule 2 was a hole at the snapshot point: still reads as zeroes in the view even
  // though the live node holds data there now.
  e = status(2 * kG, kG);
  ASSERT_FALSE(e.empty());
  EXPECT_NE(e[0].flags & kExtentZero, 0u);
  EXPECT_EQ(e[0].length, kG);
  // Granule 3 (not copied) comes from the live node: data, then a hole.
  e = status(3 * kG, kG);
  ASSERT_GE(e.size(), 2u);
  EXPECT_EQ(e[0].length, 4096u);
  EXPECT_EQ(e[0].flags, 0u);
  EXPECT_NE(e[1].flags & kExtentZero, 0u);

  // Walking the whole view: every extent said to be zero reads as zeroes in the view.
  const std::vector<std::byte> view = f.read_all();
  uint64_t pos = 0;
  while (pos < kSize) {
    ExtentList list = status(pos, kSize - pos);
    ASSERT_FALSE(list.empty());
    for (const Extent& x : list) {
      if (x.flags & kExtentZero) {
        for (uint64_t i = pos; i < pos + x.length; ++i) {
          ASSERT_EQ(view[i], std::byte{0}) << "byte " << i << " reported zero";
        }
      }
      pos += x.length;
    }
  }
  EXPECT_EQ(pos, kSize);
}

TEST(FleeceSnapshot, ASecondSnapshotSeesNewerDataWhileTheFirstKeepsTheOld) {
  auto live = MemoryNode::create(kSize, "live");
  live->fill(0, kSize, std::byte{1});
  Fleece a = Fleece::start(live, MemoryNode::create(kSize, "ta"), {}, "a");
  ASSERT_TRUE(run_task(live->write(0, bytes(3 * kG, 2), IoFlags::kNone)).is_ok());
  Fleece b = Fleece::start(live, MemoryNode::create(kSize, "tb"), {}, "b");
  EXPECT_EQ(a.filter, b.filter);  // one filter per live node
  EXPECT_EQ(a.filter->snapshots(), 2u);
  ASSERT_TRUE(run_task(live->write(kG, bytes(3 * kG, 3), IoFlags::kNone)).is_ok());

  std::vector<std::byte> want_a(kSize, std::byte{1});
  std::vector<std::byte> want_b(kSize, std::byte{1});
  std::memset(want_b.data(), 2, 3 * kG);
  std::vector<std::byte> want_live = want_b;
  std::memset(want_live.data() + kG, 3, 3 * kG);
  EXPECT_EQ(a.read_all(), want_a);
  EXPECT_EQ(b.read_all(), want_b);
  EXPECT_EQ(read_node(*live, 0, kSize), want_live);

  // Each ends on its own: the other keeps working, the last one uninstalls the filter.
  a.stop();
  EXPECT_NE(live->write_interceptor(), nullptr);
  ASSERT_TRUE(run_task(live->write(5 * kG, bytes(kG, 4), IoFlags::kNone)).is_ok());
  EXPECT_EQ(b.read_all(), want_b);
  b.stop();
  EXPECT_EQ(live->write_interceptor(), nullptr);
}

// Runs `n` threads on ctx until it runs out of work.
void run_threads(asio::io_context& ctx, int n) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&] { ctx.run(); });
  for (auto& t : threads) t.join();
}

TEST(FleeceSnapshot, RacingWritersCopyAGranuleOnce) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kSize, std::byte{1});
  // A slow target keeps the copy in flight while the others arrive.
  target->set_delay_hook([](Op op, uint64_t, uint64_t) { return op == Op::kWrite ? 20ms : 0ms; });
  Fleece f = Fleece::start(live, target);
  asio::io_context ctx;
  int failures = 0;
  std::mutex mu;
  for (int i = 0; i < 16; ++i) {
    // Writers over granules 0..1 (various pieces), all racing for the same two copies.
    const uint64_t off = (i % 4) * 30 * kKiB;  // [off, off + 38 KiB) inside granules 0..1
    asio::co_spawn(
        ctx,
        [&, off, i]() -> Task<void> {
          auto data = bytes(38 * kKiB, static_cast<uint8_t>(10 + i));
          Status s = co_await live->write(off, data, IoFlags::kNone);
          if (!s.is_ok()) {
            std::lock_guard g(mu);
            ++failures;
          }
        },
        asio::detached);
  }
  run_threads(ctx, 4);
  EXPECT_EQ(failures, 0);
  // Copies of one run may be split by the racing lock order, but each byte of the two
  // granules is written to the target exactly once.
  uint64_t written = 0;
  for (const auto& c : target->calls()) {
    if (c.op == Op::kWrite) written += c.length;
  }
  EXPECT_EQ(written, 2 * kG);
  EXPECT_EQ(f.snap->copied_bytes(), 2 * kG);
  EXPECT_EQ(f.read_all(), std::vector<std::byte>(kSize, std::byte{1}));
}

TEST(FleeceSnapshot, AWriteWaitsForAViewReadInFlightOnItsRange) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kSize, std::byte{1});
  Fleece f = Fleece::start(live, target);
  // The first read of granule 0 from the live node (the view's) takes 50 ms.
  auto reads = std::make_shared<std::atomic<int>>(0);
  live->set_delay_hook([reads](Op op, uint64_t off, uint64_t) {
    return op == Op::kRead && off == 0 && reads->fetch_add(1) == 0 ? 50ms : 0ms;
  });
  std::vector<std::string> events;
  std::vector<std::byte> seen(kG);
  asio::io_context ctx;
  asio::co_spawn(
      ctx,
      [&]() -> Task<void> {
        Status s = co_await f.view->read(0, seen);
        EXPECT_TRUE(s.is_ok()) << s.to_string();
        events.push_back("view read done");
      },
      asio::detached);
  asio::co_spawn(
      ctx,
      [&]() -> Task<void> {
        co_await sleep_for(5ms);  // the view read is in flight
        auto data = bytes(4096, 7);
        Status s = co_await live->write(0, data, IoFlags::kNone);
        EXPECT_TRUE(s.is_ok()) << s.to_string();
        events.push_back("live write done");
      },
      asio::detached);
  // A write elsewhere does not wait for that read.
  asio::co_spawn(
      ctx,
      [&]() -> Task<void> {
        co_await sleep_for(10ms);
        auto data = bytes(4096, 8);
        Status s = co_await live->write(5 * kG, data, IoFlags::kNone);
        EXPECT_TRUE(s.is_ok()) << s.to_string();
        events.push_back("other write done");
      },
      asio::detached);
  ctx.run();
  EXPECT_EQ(events, (std::vector<std::string>{"other write done", "view read done",
                                              "live write done"}));
  EXPECT_EQ(seen, bytes(kG, 1));
  EXPECT_EQ(read_node(*f.view, 0, kG), bytes(kG, 1));
  EXPECT_EQ(read_node(*live, 0, 4096), bytes(4096, 7));
}

// ---- error policies ----

TEST(FleeceSnapshot, BreakSnapshotLetsTheLiveWriteGoOnAndFailsTheView) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kSize, std::byte{1});
  target->set_fail_hook([](Op op, uint64_t, uint64_t) { return op == Op::kWrite ? EIO : 0; });
  Fleece f = Fleece::start(live, target);
  ASSERT_TRUE(run_task(live->write(0, bytes(4096, 2), IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(live->write(kG, bytes(4096, 3), IoFlags::kNone)).is_ok());
  EXPECT_EQ(read_node(*live, 0, 4096), bytes(4096, 2));
  EXPECT_EQ(read_node(*live, kG, 4096), bytes(4096, 3));
  EXPECT_TRUE(f.snap->broken());
  EXPECT_EQ(*f.broken_calls, 1);
  EXPECT_NE(f.reason->find("overlay"), std::string::npos) << *f.reason;
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(run_task(f.view->read(0, buf)).code(), EIO);
  EXPECT_EQ(run_task(f.view->read(3 * kG, buf)).code(), EIO);  // untouched ranges too
  EXPECT_EQ(run_task(f.view->block_status(0, kG)).status().code(), EIO);
  // A broken snapshot copies nothing more.
  const size_t tries = target->count(Op::kWrite);
  ASSERT_TRUE(run_task(live->write(2 * kG, bytes(4096, 4), IoFlags::kNone)).is_ok());
  EXPECT_EQ(target->count(Op::kWrite), tries);
  EXPECT_EQ(*f.broken_calls, 1);
}

TEST(FleeceSnapshot, RacingCopyFailuresBreakTheSnapshotOnce) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kSize, std::byte{1});
  target->set_delay_hook([](Op, uint64_t, uint64_t) { return 5ms; });
  target->set_fail_hook([](Op op, uint64_t, uint64_t) { return op == Op::kWrite ? EIO : 0; });
  Fleece f = Fleece::start(live, target);
  asio::io_context ctx;
  std::atomic<int> failures{0};
  for (int i = 0; i < 16; ++i) {
    asio::co_spawn(
        ctx,
        [&, i]() -> Task<void> {
          auto data = bytes(4096, 2);
          Status s = co_await live->write(static_cast<uint64_t>(i) * kG, data, IoFlags::kNone);
          if (!s.is_ok()) ++failures;
        },
        asio::detached);
  }
  run_threads(ctx, 4);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(f.snap->broken());
  EXPECT_EQ(*f.broken_calls, 1);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(live->contents(static_cast<uint64_t>(i) * kG, 4096), bytes(4096, 2));
  }
}

TEST(FleeceSnapshot, BreakGuestWriteFailsTheLiveWriteAndKeepsTheView) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kSize, std::byte{1});
  auto failing = std::make_shared<std::atomic<bool>>(true);
  target->set_fail_hook([failing](Op op, uint64_t, uint64_t) {
    return op == Op::kWrite && failing->load() ? EIO : 0;
  });
  Fleece f = Fleece::start(live, target, {.break_guest_write = true});
  EXPECT_EQ(run_task(live->write(0, bytes(4096, 2), IoFlags::kNone)).code(), EIO);
  EXPECT_EQ(run_task(live->write_zeroes(kG, 4096, IoFlags::kNone)).code(), EIO);
  EXPECT_EQ(run_task(live->discard(2 * kG, kG, IoFlags::kNone)).code(), EIO);
  EXPECT_EQ(live->contents(0, kSize), std::vector<std::byte>(kSize, std::byte{1}));
  EXPECT_FALSE(f.snap->broken());
  EXPECT_EQ(*f.broken_calls, 0);
  EXPECT_EQ(f.read_all(), std::vector<std::byte>(kSize, std::byte{1}));
  // Once the target works again the same write succeeds and the view still holds.
  failing->store(false);
  ASSERT_TRUE(run_task(live->write(0, bytes(4096, 2), IoFlags::kNone)).is_ok());
  EXPECT_EQ(read_node(*live, 0, 4096), bytes(4096, 2));
  EXPECT_EQ(f.read_all(), std::vector<std::byte>(kSize, std::byte{1}));
}

TEST(FleeceSnapshot, OverlayLimitBreaksTheSnapshotOrTheWritePerPolicy) {
  for (bool guest : {false, true}) {
    SCOPED_TRACE(guest ? "break-guest-write" : "break-snapshot");
    auto live = MemoryNode::create(kSize, "live");
    auto target = MemoryNode::create(kSize, "target");
    live->fill(0, kSize, std::byte{1});
    Fleece f = Fleece::start(live, target, {.break_guest_write = guest, .overlay_limit = 2 * kG});
    ASSERT_TRUE(run_task(live->write(0, bytes(2 * kG, 2), IoFlags::kNone)).is_ok());
    EXPECT_EQ(f.snap->copied_bytes(), 2 * kG);
    Status s = run_task(live->write(5 * kG, bytes(100, 3), IoFlags::kNone));
    if (guest) {
      EXPECT_EQ(s.code(), ENOSPC);
      EXPECT_EQ(live->contents(5 * kG, 100), bytes(100, 1));
      EXPECT_FALSE(f.snap->broken());
      EXPECT_EQ(f.read_all(), std::vector<std::byte>(kSize, std::byte{1}));
      // Already copied granules still take writes.
      EXPECT_TRUE(run_task(live->write(kG, bytes(100, 4), IoFlags::kNone)).is_ok());
    } else {
      EXPECT_TRUE(s.is_ok()) << s.to_string();
      EXPECT_EQ(live->contents(5 * kG, 100), bytes(100, 3));
      EXPECT_TRUE(f.snap->broken());
      EXPECT_EQ(*f.broken_calls, 1);
      EXPECT_NE(f.reason->find("limit"), std::string::npos) << *f.reason;
      std::vector<std::byte> buf(100);
      EXPECT_EQ(run_task(f.view->read(0, buf)).code(), EIO);
    }
    EXPECT_LE(f.snap->copied_bytes(), 2 * kG);
  }
}

TEST(FleeceSnapshot, CbwTimeoutBoundsACopyUnderBothPolicies) {
  for (bool guest : {false, true}) {
    SCOPED_TRACE(guest ? "break-guest-write" : "break-snapshot");
    auto live = MemoryNode::create(kSize, "live");
    auto target = MemoryNode::create(kSize, "target");
    live->fill(0, kSize, std::byte{1});
    target->set_delay_hook(
        [](Op op, uint64_t, uint64_t) { return op == Op::kWrite ? 300ms : 0ms; });
    Fleece f = Fleece::start(live, target, {.break_guest_write = guest, .timeout = 30ms});
    Status s;
    std::chrono::steady_clock::duration took{};
    std::vector<std::byte> view_after(kG);
    Status view_status;
    // The copy that outlives the write owns a reference to the snapshot while it runs,
    // and gives back exactly that one.
    const long refs = f.snap.use_count();
    run_task([&]() -> Task<void> {
      const auto t0 = std::chrono::steady_clock::now();
      s = co_await live->write(0, bytes(4096, 2), IoFlags::kNone);
      took = std::chrono::steady_clock::now() - t0;
      co_await sleep_for(400ms);  // the copy that timed out finishes meanwhile
      view_status = co_await f.view->read(0, view_after);
    }());
    EXPECT_LT(took, 250ms);
    EXPECT_EQ(f.snap.use_count(), refs);
    if (guest) {
      EXPECT_EQ(s.code(), ETIMEDOUT) << s.to_string();
      EXPECT_EQ(live->contents(0, 4096), bytes(4096, 1));
      EXPECT_FALSE(f.snap->broken());
      ASSERT_TRUE(view_status.is_ok()) << view_status.to_string();
      EXPECT_EQ(view_after, bytes(kG, 1));
      // The copy finished in the background: a retry needs no new copy.
      const size_t copies = target->count(Op::kWrite);
      ASSERT_TRUE(run_task(live->write(0, bytes(4096, 2), IoFlags::kNone)).is_ok());
      EXPECT_EQ(target->count(Op::kWrite), copies);
      EXPECT_EQ(read_node(*f.view, 0, kG), bytes(kG, 1));
    } else {
      EXPECT_TRUE(s.is_ok()) << s.to_string();
      EXPECT_EQ(live->contents(0, 4096), bytes(4096, 2));
      EXPECT_TRUE(f.snap->broken());
      EXPECT_EQ(*f.broken_calls, 1);
      EXPECT_NE(f.reason->find("cbw-timeout"), std::string::npos) << *f.reason;
      EXPECT_EQ(view_status.code(), EIO);
    }
  }
}

// ---- trim through the view ----

TEST(FleeceSnapshot, TrimThroughTheViewReleasesWholeGranules) {
  auto live = MemoryNode::create(kSize, "live");
  auto target = MemoryNode::create(kSize, "target");
  live->fill(0, kSize, std::byte{1});
  Fleece f = Fleece::start(live, target);
  ASSERT_TRUE(run_task(live->write(0, bytes(2 * kG, 2), IoFlags::kNone)).is_ok());
  EXPECT_EQ(f.snap->copied_bytes(), 2 * kG);

  // A trim that covers no whole granule releases nothing.
  ASSERT_TRUE(run_task(f.view->discard(100, kG, IoFlags::kNone)).is_ok());
  EXPECT_EQ(target->count(Op::kDiscard), 0u);
  EXPECT_EQ(read_node(*f.view, 0, 2 * kG), bytes(2 * kG, 1));

  // [kG/2, 4 kG + 10) covers granules 1..3: granule 1 (copied) and 2..3 (not yet).
  ASSERT_TRUE(run_task(f.view->discard(kG / 2, 3 * kG + kG / 2 + 10, IoFlags::kNone)).is_ok());
  ASSERT_EQ(target->count(Op::kDiscard), 1u);
  for (const auto& c : target->calls()) {
    if (c.op != Op::kDiscard) continue;
    EXPECT_EQ(c.offset, kG);
    EXPECT_EQ(c.length, 3 * kG);
  }
  EXPECT_EQ(f.snap->copied_bytes(), kG);  // granule 0 only
  std::vector<std::byte> buf(100);
  EXPECT_EQ(run_task(f.view->read(kG, buf)).code(), EIO);
  EXPECT_EQ(run_task(f.view->read(3 * kG + 50, buf)).code(), EIO);
  EXPECT_EQ(run_task(f.view->read(kG - 50, buf)).code(), EIO);  // straddles into granule 1
  EXPECT_EQ(read_node(*f.view, 0, kG), bytes(kG, 1));
  EXPECT_EQ(read_node(*f.view, 4 * kG, kG), bytes(kG, 1));
  EXPECT_FALSE(f.snap->broken());
  // Block status: granule 0 is data, the released granules a hole of their own.
  Result<ExtentList> e = run_task(f.view->block_status(0, 5 * kG));
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  ASSERT_FALSE(e.value().empty());
  EXPECT_EQ(e.value()[0].flags, 0u);
  EXPECT_EQ(e.value()[0].length, kG);
  e = run_task(f.view->block_status(kG, 4 * kG));
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_EQ(e.value()[0].length, 3 * kG);
  EXPECT_EQ(e.value()[0].flags, kExtentHole | kExtentZero);

  // No copies happen there any more: live writes to granules 2..3 read and write nothing.
  const size_t target_writes = target->count(Op::kWrite);
  const size_t live_reads = live->count(Op::kRead);
  ASSERT_TRUE(run_task(live->write(2 * kG, bytes(2 * kG, 5), IoFlags::kNone)).is_ok());
  EXPECT_EQ(target->count(Op::kWrite), target_writes);
  EXPECT_EQ(live->count(Op::kRead), live_reads);
  // Elsewhere copying goes on.
  ASSERT_TRUE(run_task(live->write(6 * kG, bytes(10, 5), IoFlags::kNone)).is_ok());
  EXPECT_EQ(target->count(Op::kWrite), target_writes + 1);
  EXPECT_EQ(read_node(*f.view, 6 * kG, kG), bytes(kG, 1));
}

TEST(FleeceSnapshot, AnUnalignedDiskEndIsCopiedAndReleasedAsAPartialGranule) {
  const uint64_t size = kMiB + 4096;  // the last granule holds 4 KiB
  auto live = MemoryNode::create(size, "live");
  auto target = MemoryNode::create(size, "target");
  live->fill(0, size, std::byte{1});
  Fleece f = Fleece::start(live, target);
  ASSERT_TRUE(run_task(live->write(size - 100, bytes(100, 2), IoFlags::kNone)).is_ok());
  EXPECT_EQ(f.snap->copied_bytes(), 4096u);
  EXPECT_EQ(read_node(*f.view, kMiB, 4096), bytes(4096, 1));
  EXPECT_EQ(read_node(*f.view, 0, size), std::vector<std::byte>(size, std::byte{1}));
  // A trim up to the end releases the tail granule.
  ASSERT_TRUE(run_task(f.view->discard(kMiB, 4096, IoFlags::kNone)).is_ok());
  EXPECT_EQ(f.snap->copied_bytes(), 0u);
  std::vector<std::byte> buf(10);
  EXPECT_EQ(run_task(f.view->read(size - 10, buf)).code(), EIO);
}

// ---- randomized concurrency ----

// Several writers on a multi-threaded context write random ranges (some write-zeroes)
// while a reader pulls the whole view in random pieces, again and again: every pass
// equals the disk at the snapshot point.
void stress(uint32_t seed, uint64_t granularity) {
  SCOPED_TRACE("seed " + std::to_string(seed) + ", granularity " + std::to_string(granularity));
  constexpr uint64_t size = 2 * kMiB;
  auto live = MemoryNode::create(size, "live");
  auto target = MemoryNode::create(size, "target");
  std::vector<std::byte> at_snapshot(size);
  {
    std::mt19937 rng(seed);
    for (uint64_t i = 0; i < size; i += 512) {
      const uint8_t v = (rng() % 4 == 0) ? 0 : static_cast<uint8_t>(rng());
      std::memset(at_snapshot.data() + i, v, 512);
    }
    ASSERT_TRUE(run_task(live->write(0, at_snapshot, IoFlags::kNone)).is_ok());
  }
  // Some I/O finishes late so that requests interleave across threads.
  live->set_delay_hook([](Op op, uint64_t off, uint64_t) {
    return op == Op::kRead && (off / 4096) % 7 == 3 ? 1ms : 0ms;
  });
  target->set_delay_hook([](Op op, uint64_t off, uint64_t) {
    return op == Op::kWrite && (off / 4096) % 5 == 1 ? 1ms : 0ms;
  });
  Fleece f = Fleece::start(live, target, {.granularity = granularity});
  asio::io_context ctx;
  std::atomic<int> writers_left{4};
  std::atomic<int> errors{0};
  std::atomic<int> passes{0};
  for (int w = 0; w < 4; ++w) {
    asio::co_spawn(
        ctx,
        [&, w]() -> Task<void> {
          std::mt19937 rng(seed * 31 + w);
          for (int i = 0; i < 100; ++i) {
            const uint64_t off = rng() % size;
            const uint64_t len = 1 + rng() % std::min<uint64_t>(size - off, 3 * granularity);
            Status s;
            if (rng() % 5 == 0) {
              s = co_await live->write_zeroes(off, len, IoFlags::kNone);
            } else {
              std::vector<std::byte> data(len, std::byte{static_cast<uint8_t>(rng())});
              s = co_await live->write(off, data, IoFlags::kNone);
            }
            if (!s.is_ok()) ++errors;
          }
          --writers_left;
        },
        asio::detached);
  }
  asio::co_spawn(
      ctx,
      [&]() -> Task<void> {
        std::mt19937 rng(seed * 7);
        do {
          std::vector<std::byte> view(size);
          for (uint64_t off = 0; off < size;) {
            const uint64_t n = std::min<uint64_t>(size - off, 1 + rng() % (256 * kKiB));
            Status s = co_await f.view->read(off, std::span(view).subspan(off, n));
            if (!s.is_ok()) ++errors;
            off += n;
          }
          EXPECT_TRUE(view == at_snapshot) << first_difference(view, at_snapshot);
          ++passes;
        } while (writers_left.load() > 0);
      },
      asio::detached);
  run_threads(ctx, 3);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GE(passes.load(), 1);
  EXPECT_FALSE(f.snap->broken());
  EXPECT_EQ(f.read_all(), at_snapshot);
}

TEST(FleeceSnapshotStress, ViewEqualsTheSnapshotPointUnderConcurrentWrites) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) stress(seed, kG);
  for (uint32_t seed : {5u, 6u}) stress(seed, 4096);
}

}  // namespace
}  // namespace blockcore
