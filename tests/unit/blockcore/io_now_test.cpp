// BlockNode::read_now / write_now, the synchronous fast path: on a memory-backed file
// (tmpfs) reads and writes up to inline_io_limit() complete on the calling thread and
// are counted, marked and validated exactly like read() and write(); a buffered file on
// a disk filesystem reads what the page cache holds and never writes now. Whenever the
// answer is std::nullopt (a larger transfer, a closed write gate, a write interceptor, a
// bitmap store, a node without the hooks) nothing may have been read, written, marked
// or counted, and the Task read()/write() then does the work. Validation errors are a
// Status, never std::nullopt. RawNode forwards both through its window.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blockcore/block_node.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/drivers/raw_node.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::MemoryNode;
using fleece_test::read_file;
using fleece_test::run_task;
using fleece_test::TempDir;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kG = 64 * kKiB;  // the default bitmap granularity

NodeSpec file_spec(const std::string& path, bool read_only = false) {
  NodeSpec spec;
  spec.node_name = "f0";
  spec.driver = "file";
  spec.read_only = read_only;
  spec.file.filename = path;
  return spec;
}

std::vector<std::byte> bytes(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((seed + i * 7 + (i >> 8)) & 0xff);
  return v;
}

IoOpSnapshot op_stats(const BlockNode& n, IoOp op) { return n.io_stats().snapshot().op(op); }

// Nothing at all recorded for op: no ok, failed or invalid request, no bytes.
void expect_nothing_counted(const BlockNode& n, IoOp op) {
  const IoOpSnapshot s = op_stats(n, op);
  EXPECT_EQ(s.ok, 0u) << io_op_name(op);
  EXPECT_EQ(s.failed, 0u) << io_op_name(op);
  EXPECT_EQ(s.invalid, 0u) << io_op_name(op);
  EXPECT_EQ(s.bytes, 0u) << io_op_name(op);
}

// pause_writes() run to completion: the gate stays closed until the result dies.
// (WriteGate::Closed cannot be move-assigned, which run_task's result would need.)
std::unique_ptr<WriteGate::Closed> pause(BlockNode& n) {
  std::unique_ptr<WriteGate::Closed> held;
  run_task([](BlockNode& node, std::unique_ptr<WriteGate::Closed>& out) -> Task<void> {
    out = std::make_unique<WriteGate::Closed>(co_await node.pause_writes());
  }(n, held));
  return held;
}

class CountingInterceptor final : public WriteInterceptor {
 public:
  int calls = 0;
  Task<Status> before_write(uint64_t, uint64_t) override {
    ++calls;
    co_return Status::ok();
  }
};

// A filesystem-parameterless fixture: a BlockingPool with 2 threads (the daemon's kind:
// transfers over inline_io_limit() go to it), a tmpfs dir and a /tmp dir.
class IoNowTest : public ::testing::Test {
 protected:
  IoNowTest() : shm_("/dev/shm"), tmp_("/tmp"), pool_(2) {}

  std::shared_ptr<FileNode> open_file(const std::string& path, bool read_only = false) {
    Result<std::shared_ptr<FileNode>> r = FileNode::open(file_spec(path, read_only), pool_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : nullptr;
  }
  // A filled file of `size` bytes on tmpfs, opened; asserts it is memory-backed.
  std::shared_ptr<FileNode> shm_node(const std::string& name, uint64_t size,
                                     bool read_only = false) {
    const std::string path = shm_.file(name);
    make_file(path, size, true);
    auto n = open_file(path, read_only);
    if (n) {
      EXPECT_TRUE(n->memory_backed()) << path;
    }
    return n;
  }

  TempDir shm_;
  TempDir tmp_;
  io::BlockingPool pool_;  // outlives every node of a test (locals die first)
};

// ---- memory-backed file: everything small completes now -----------------------------

TEST_F(IoNowTest, ShmSmallWritesAndReadsCompleteNowAndAreCountedOnce) {
  const std::string path = shm_.file("img");
  make_file(path, 4 * kMiB, true);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->memory_backed());
  ASSERT_EQ(n->inline_io_limit(), FileNode::kInlineIoLimit);

  struct Case {
    uint64_t off;
    size_t len;
  };
  // 4 KiB aligned, a small unaligned range, one straddling a page, the very end, one
  // byte, and exactly the inline limit.
  const std::vector<Case> cases = {{8192, 4096},       {12345, 777},        {4096 * 3 - 5, 10},
                                   {4 * kMiB - 333, 333}, {1, 1},           {kMiB, 64 * kKiB}};
  uint64_t count = 0;
  uint64_t wbytes = 0;
  uint8_t seed = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE("at " + std::to_string(c.off) + " +" + std::to_string(c.len));
    const std::vector<std::byte> data = bytes(c.len, seed++);
    std::optional<Status> w = n->write_now(c.off, data, IoFlags::kNone);
    ASSERT_TRUE(w.has_value()) << "a small write on tmpfs must complete now";
    ASSERT_TRUE(w->is_ok()) << w->to_string();
    EXPECT_EQ(n->in_flight(), 0u);
    // Another process sees the bytes at once (they are in the file, not in a cache of ours).
    EXPECT_EQ(read_file(path, c.off, c.len), data);
    ++count;
    wbytes += c.len;
    EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, count);
    EXPECT_EQ(op_stats(*n, IoOp::kWrite).bytes, wbytes);

    std::vector<std::byte> got(c.len, std::byte{0xEE});
    std::optional<Status> r = n->read_now(c.off, got);
    ASSERT_TRUE(r.has_value()) << "a small read on tmpfs must complete now";
    ASSERT_TRUE(r->is_ok()) << r->to_string();
    EXPECT_EQ(got, data);
    EXPECT_EQ(got, read_file(path, c.off, c.len));
    EXPECT_EQ(op_stats(*n, IoOp::kRead).ok, count);
    EXPECT_EQ(op_stats(*n, IoOp::kRead).bytes, wbytes);
    EXPECT_EQ(n->in_flight(), 0u);
  }
  // Nothing else was touched: a neighbour of the first write still holds the pattern.
  std::vector<std::byte> before(16);
  for (size_t i = 0; i < before.size(); ++i) before[i] = fleece_test::pattern_byte(8192 - 16 + i);
  EXPECT_EQ(read_file(path, 8192 - 16, 16), before);
  // Nothing failed or was refused, and no other kind of request was recorded.
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).failed, 0u);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).invalid, 0u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).failed, 0u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).invalid, 0u);
  expect_nothing_counted(*n, IoOp::kFlush);
}

TEST_F(IoNowTest, ShmFuaWriteCompletesNow) {
  auto n = shm_node("img", kMiB);
  ASSERT_TRUE(n);
  const std::vector<std::byte> data = bytes(4096, 9);
  std::optional<Status> w = n->write_now(4096, data, IoFlags::kFua);
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->is_ok()) << w->to_string();
  EXPECT_EQ(read_file(shm_.file("img"), 4096, 4096), data);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);
  EXPECT_EQ(n->in_flight(), 0u);
}

TEST_F(IoNowTest, ShmFileShrunkUnderTheNodeReadsZeroesNow) {
  const std::string path = shm_.file("img");
  make_file(path, kMiB, true);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  ASSERT_EQ(::truncate(path.c_str(), 512 * kKiB + 100), 0);  // someone shrinks it under us
  std::vector<std::byte> got(4096, std::byte{0xEE});
  std::optional<Status> r = n->read_now(512 * kKiB, got);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->is_ok()) << r->to_string();
  std::vector<std::byte> want = read_file(path, 512 * kKiB, 100);
  want.resize(4096, std::byte{0});
  EXPECT_EQ(got, want);
}

TEST_F(IoNowTest, EmptyTransfersSucceedWithoutCounting) {
  auto n = shm_node("img", kMiB);
  ASSERT_TRUE(n);
  std::span<std::byte> none;
  std::optional<Status> r = n->read_now(100, none);
  std::optional<Status> w = n->write_now(100, std::span<const std::byte>(), IoFlags::kNone);
  ASSERT_TRUE(r.has_value() && w.has_value());
  EXPECT_TRUE(r->is_ok());
  EXPECT_TRUE(w->is_ok());
  expect_nothing_counted(*n, IoOp::kRead);
  expect_nothing_counted(*n, IoOp::kWrite);
}

// ---- larger than inline_io_limit(): left to the Task path ---------------------------

TEST_F(IoNowTest, ShmTransfersOverTheInlineLimitAreLeftToThePool) {
  const std::string path = shm_.file("img");
  make_file(path, 4 * kMiB, true);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  ASSERT_EQ(pool_.threads(), 2u);
  const std::vector<std::byte> before = read_file(path, kMiB, 128 * kKiB);

  for (size_t len : {size_t{64 * kKiB + 1}, size_t{128 * kKiB}}) {
    SCOPED_TRACE(len);
    const std::vector<std::byte> data = bytes(len, 3);
    EXPECT_FALSE(n->write_now(kMiB, data, IoFlags::kNone).has_value());
    EXPECT_EQ(read_file(path, kMiB, 128 * kKiB), before) << "nothing may have been written";
    std::vector<std::byte> got(len, std::byte{0xEE});
    EXPECT_FALSE(n->read_now(kMiB, got).has_value());
    EXPECT_EQ(got, std::vector<std::byte>(len, std::byte{0xEE})) << "nothing may have been read";
  }
  expect_nothing_counted(*n, IoOp::kRead);
  expect_nothing_counted(*n, IoOp::kWrite);
  EXPECT_EQ(n->in_flight(), 0u);

  // The Task path does the same transfer.
  const std::vector<std::byte> data = bytes(128 * kKiB, 4);
  ASSERT_TRUE(run_task(n->write(kMiB, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(read_file(path, kMiB, data.size()), data);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);

  // A lowered limit applies too: 0 sends everything to the pool.
  n->set_inline_io_limit(0);
  const std::vector<std::byte> small = bytes(4096, 5);
  EXPECT_FALSE(n->write_now(0, small, IoFlags::kNone).has_value());
  std::vector<std::byte> got(4096);
  EXPECT_FALSE(n->read_now(0, got).has_value());
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);
  expect_nothing_counted(*n, IoOp::kRead);
  EXPECT_NE(read_file(path, 0, 4096), small);
}

TEST_F(IoNowTest, ShmWithoutPoolThreadsEverySizeCompletesNow) {
  io::BlockingPool inline_pool(0);
  const std::string path = shm_.file("img");
  make_file(path, 4 * kMiB, true);
  Result<std::shared_ptr<FileNode>> r = FileNode::open(file_spec(path), inline_pool);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto n = r.value();
  const std::vector<std::byte> data = bytes(kMiB + 3, 6);
  std::optional<Status> w = n->write_now(5, data, IoFlags::kNone);
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(w->is_ok()) << w->to_string();
  EXPECT_EQ(read_file(path, 5, data.size()), data);
  std::vector<std::byte> got(data.size());
  std::optional<Status> rd = n->read_now(5, got);
  ASSERT_TRUE(rd.has_value());
  ASSERT_TRUE(rd->is_ok());
  EXPECT_EQ(got, data);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).ok, 1u);
}

// ---- a buffered file on a disk filesystem -------------------------------------------

TEST_F(IoNowTest, DiskFileNeverWritesNowButReadsCachedDataNow) {
  const std::string path = tmp_.file("img");
  make_file(path, 4 * kMiB, true);  // written just now: in the page cache
  auto n = open_file(path);
  ASSERT_TRUE(n);
  if (n->memory_backed()) GTEST_SKIP() << "/tmp is memory-backed here";
  auto b = run_task(n->bitmaps().create({.name = "b"}, n->size()));
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();

  const std::vector<std::byte> before = read_file(path, 4096, 4096);
  const std::vector<std::byte> data = bytes(4096, 11);
  for (IoFlags f : {IoFlags::kNone, IoFlags::kFua}) {
    EXPECT_FALSE(n->write_now(4096, data, f).has_value());
    EXPECT_FALSE(n->write_now(100, std::span(data).first(10), f).has_value());
  }
  EXPECT_EQ(read_file(path, 4096, 4096), before) << "nothing may have been written";
  expect_nothing_counted(*n, IoOp::kWrite);
  EXPECT_EQ(b.value()->dirty_bytes(), 0u) << "nothing may have been marked";
  EXPECT_EQ(n->in_flight(), 0u);

  // The Task write does it (and the data is then cached), after which read_now serves it.
  ASSERT_TRUE(run_task(n->write(4096, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);
  EXPECT_TRUE(b.value()->all_dirty(4096, 4096));

  std::vector<std::byte> got(4096, std::byte{0xEE});
  std::optional<Status> r = n->read_now(4096, got);
  ASSERT_TRUE(r.has_value()) << "just-written data is in the page cache: RWF_NOWAIT reads it";
  ASSERT_TRUE(r->is_ok()) << r->to_string();
  EXPECT_EQ(got, data);
  // Unaligned, from the part make_file wrote.
  std::vector<std::byte> odd(1000);
  std::optional<Status> r2 = n->read_now(3 * kMiB + 17, odd);
  ASSERT_TRUE(r2.has_value());
  ASSERT_TRUE(r2->is_ok());
  EXPECT_EQ(odd, read_file(path, 3 * kMiB + 17, 1000));
  EXPECT_EQ(op_stats(*n, IoOp::kRead).ok, 2u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).bytes, 4096u + 1000u);
  EXPECT_EQ(n->in_flight(), 0u);
}

TEST_F(IoNowTest, DiskFileReadOfUncachedDataIsLeftToThePool) {
  const std::string path = tmp_.file("img");
  make_file(path, 4 * kMiB, true);
  {  // Evict the pages: write them back, then drop them.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::fsync(fd), 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
  }
  auto n = open_file(path);
  ASSERT_TRUE(n);
  if (n->memory_backed()) GTEST_SKIP() << "/tmp is memory-backed here";
  std::vector<std::byte> got(4096, std::byte{0xEE});
  std::optional<Status> r = n->read_now(2 * kMiB, got);
  if (r.has_value()) {
    // The kernel may have kept or read ahead the page; then it must be right.
    ASSERT_TRUE(r->is_ok()) << r->to_string();
    EXPECT_EQ(got, read_file(path, 2 * kMiB, 4096));
    EXPECT_EQ(op_stats(*n, IoOp::kRead).ok, 1u);
  } else {
    expect_nothing_counted(*n, IoOp::kRead);
    ASSERT_TRUE(run_task(n->read(2 * kMiB, got)).is_ok());
    EXPECT_EQ(got, read_file(path, 2 * kMiB, 4096));
    EXPECT_EQ(op_stats(*n, IoOp::kRead).ok, 1u);
  }
}

// ---- validation: a Status like read()/write(), counted as invalid -------------------

TEST_F(IoNowTest, ValidationErrorsAreStatusesCountedAsInvalid) {
  const std::string path = shm_.file("img");
  make_file(path, kMiB, true);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  const std::vector<std::byte> data = bytes(4096, 2);
  const std::vector<std::byte> before = read_file(path, kMiB - 2048, 2048);

  // Past the end: ENOSPC for a write (not std::nullopt), EINVAL for a read.
  std::optional<Status> w = n->write_now(kMiB - 2048, data, IoFlags::kNone);
  ASSERT_TRUE(w.has_value()) << "a refused write is an answer, not 'try the Task path'";
  EXPECT_EQ(w->code(), ENOSPC) << w->to_string();
  EXPECT_EQ(read_file(path, kMiB - 2048, 2048), before) << "nothing of it may be written";
  std::optional<Status> w2 = n->write_now(kMiB + 1, std::span(data).first(1), IoFlags::kNone);
  ASSERT_TRUE(w2.has_value());
  EXPECT_EQ(w2->code(), ENOSPC);
  std::vector<std::byte> got(4096);
  std::optional<Status> r = n->read_now(kMiB - 2048, got);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code(), EINVAL) << r->to_string();

  // Counted exactly like the Task path counts the same refusals.
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).invalid, 2u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).invalid, 1u);
  EXPECT_EQ(run_task(n->write(kMiB - 2048, data, IoFlags::kNone)).code(), ENOSPC);
  EXPECT_EQ(run_task(n->read(kMiB - 2048, got)).code(), EINVAL);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).invalid, 3u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).invalid, 2u);
  for (IoOp op : {IoOp::kRead, IoOp::kWrite}) {
    EXPECT_EQ(op_stats(*n, op).ok, 0u);
    EXPECT_EQ(op_stats(*n, op).failed, 0u);
    EXPECT_EQ(op_stats(*n, op).bytes, 0u);
  }
  EXPECT_EQ(n->in_flight(), 0u);
}

TEST_F(IoNowTest, WriteOnAReadOnlyNodeIsRefusedWithErofs) {
  const std::string path = shm_.file("img");
  make_file(path, kMiB, true);
  auto ro = open_file(path, /*read_only=*/true);
  ASSERT_TRUE(ro);
  ASSERT_TRUE(ro->read_only());
  const std::vector<std::byte> before = read_file(path, 0, 4096);
  const std::vector<std::byte> data = bytes(4096, 8);
  std::optional<Status> w = ro->write_now(0, data, IoFlags::kNone);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->code(), EROFS) << w->to_string();
  EXPECT_EQ(read_file(path, 0, 4096), before);
  EXPECT_EQ(op_stats(*ro, IoOp::kWrite).invalid, 1u);
  EXPECT_EQ(op_stats(*ro, IoOp::kWrite).ok, 0u);
  EXPECT_EQ(run_task(ro->write(0, data, IoFlags::kNone)).code(), EROFS);
  EXPECT_EQ(op_stats(*ro, IoOp::kWrite).invalid, 2u);
  // Reads of a read-only node complete now.
  std::vector<std::byte> got(4096);
  std::optional<Status> r = ro->read_now(0, got);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->is_ok());
  EXPECT_EQ(got, before);
  EXPECT_EQ(op_stats(*ro, IoOp::kRead).ok, 1u);
}

TEST_F(IoNowTest, TransfersOverMaxTransferAreRefusedAsTooLarge) {
  const std::string path = shm_.file("img");
  make_file(path, 64 * kMiB);  // sparse: costs nothing on tmpfs
  io::BlockingPool inline_pool(0);  // so that no size is "too big to do now"
  Result<std::shared_ptr<FileNode>> r = FileNode::open(file_spec(path), inline_pool);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto n = r.value();
  const size_t too_big = size_t{n->info().max_transfer} + 1;
  std::vector<std::byte> buf(too_big, std::byte{1});
  std::optional<Status> w = n->write_now(0, buf, IoFlags::kNone);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->code(), EINVAL) << w->to_string();
  std::optional<Status> rd = n->read_now(0, buf);
  ASSERT_TRUE(rd.has_value());
  EXPECT_EQ(rd->code(), EINVAL) << rd->to_string();
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).invalid, 1u);
  EXPECT_EQ(op_stats(*n, IoOp::kRead).invalid, 1u);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 0u);
  EXPECT_EQ(n->allocated_bytes(), 0u) << "nothing may have been written";
}

// ---- what run_write_like() would wait for: std::nullopt -----------------------------

TEST_F(IoNowTest, ClosedWriteGateLeavesWritesToTheTaskPath) {
  const std::string path = shm_.file("img");
  make_file(path, kMiB, true);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  const std::vector<std::byte> before = read_file(path, 8192, 4096);
  const std::vector<std::byte> data = bytes(4096, 12);
  {
    auto closed = pause(*n);
    EXPECT_FALSE(n->write_now(8192, data, IoFlags::kNone).has_value());
    EXPECT_FALSE(n->write_now(8192, data, IoFlags::kFua).has_value());
    EXPECT_EQ(read_file(path, 8192, 4096), before) << "a paused node must not be written";
    expect_nothing_counted(*n, IoOp::kWrite);
    EXPECT_EQ(n->in_flight(), 0u);
    // Reads are not held back by the gate.
    std::vector<std::byte> got(4096);
    std::optional<Status> r = n->read_now(8192, got);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->is_ok());
    EXPECT_EQ(got, before);
    // Validation still answers while paused.
    std::optional<Status> past = n->write_now(kMiB, data, IoFlags::kNone);
    ASSERT_TRUE(past.has_value());
    EXPECT_EQ(past->code(), ENOSPC);
  }
  // The gate holds no pass for the refused attempts: closing it again does not wait.
  { auto again = pause(*n); }
  std::optional<Status> w = n->write_now(8192, data, IoFlags::kNone);
  ASSERT_TRUE(w.has_value()) << "once released, the write completes now";
  ASSERT_TRUE(w->is_ok());
  EXPECT_EQ(read_file(path, 8192, 4096), data);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);
}

TEST_F(IoNowTest, WriteInterceptorLeavesWritesToTheTaskPath) {
  const std::string path = shm_.file("img");
  make_file(path, kMiB, true);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  auto hook = std::make_shared<CountingInterceptor>();
  n->set_write_interceptor(hook);
  const std::vector<std::byte> before = read_file(path, 65536, 4096);
  const std::vector<std::byte> data = bytes(4096, 13);
  EXPECT_FALSE(n->write_now(65536, data, IoFlags::kNone).has_value());
  EXPECT_EQ(hook->calls, 0) << "write_now never awaits the interceptor";
  EXPECT_EQ(read_file(path, 65536, 4096), before) << "copy-before-write must see old data";
  expect_nothing_counted(*n, IoOp::kWrite);
  EXPECT_EQ(n->in_flight(), 0u);
  // Reads are not intercepted.
  std::vector<std::byte> got(4096);
  std::optional<Status> r = n->read_now(65536, got);
  ASSERT_TRUE(r.has_value() && r->is_ok());
  EXPECT_EQ(got, before);

  ASSERT_TRUE(run_task(n->write(65536, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(hook->calls, 1);
  EXPECT_EQ(read_file(path, 65536, 4096), data);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);

  n->set_write_interceptor(nullptr);
  const std::vector<std::byte> data2 = bytes(4096, 14);
  std::optional<Status> w = n->write_now(65536, data2, IoFlags::kNone);
  ASSERT_TRUE(w.has_value() && w->is_ok());
  EXPECT_EQ(hook->calls, 1);
  EXPECT_EQ(read_file(path, 65536, 4096), data2);
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 2u);
}

// ---- dirty bitmaps ---------------------------------------------------------------

TEST_F(IoNowTest, InMemoryBitmapsShowExactlyTheGranulesWritten) {
  const uint64_t size = 64 * kG;
  auto n = shm_node("img", size);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->bitmaps().marks_in_memory());
  auto b = run_task(n->bitmaps().create({.name = "b"}, size));
  auto off = run_task(n->bitmaps().create({.name = "off", .disabled = true}, size));
  ASSERT_TRUE(b.is_ok() && off.is_ok());
  DirtyBitmapPtr tracker = n->bitmaps().add_write_tracker(kG, size);

  // Granule 3 (unaligned, inside), granules 9 and 10 (straddling), the last one.
  const std::vector<std::pair<uint64_t, size_t>> writes = {
      {3 * kG + 100, 5000}, {10 * kG - 10, 20}, {size - 1, 1}};
  for (auto [o, l] : writes) {
    std::optional<Status> w = n->write_now(o, bytes(l, 1), IoFlags::kNone);
    ASSERT_TRUE(w.has_value() && w->is_ok());
    EXPECT_TRUE(b.value()->all_dirty(o, l));
    EXPECT_TRUE(tracker->all_dirty(o, l)) << "hidden trackers are marked too";
  }
  EXPECT_EQ(b.value()->extents(0, size, 100),
            (std::vector<DirtyExtent>{{3 * kG, false},
                                      {kG, true},
                                      {5 * kG, false},
                                      {2 * kG, true},
                                      {52 * kG, false},
                                      {kG, true}}));
  EXPECT_EQ(b.value()->dirty_granules(), 4u);
  EXPECT_FALSE(b.value()->all_dirty(30 * kG, 1)) << "a far-away range stays clean";
  EXPECT_EQ(off.value()->dirty_bytes(), 0u) << "a disabled bitmap records nothing";
  EXPECT_EQ(tracker->dirty_granules(), 4u);

  // Refused and deferred writes mark nothing.
  EXPECT_EQ(n->write_now(size, bytes(1, 1), IoFlags::kNone)->code(), ENOSPC);
  EXPECT_FALSE(n->write_now(20 * kG, bytes(128 * kKiB, 1), IoFlags::kNone).has_value());
  {
    auto closed = pause(*n);
    EXPECT_FALSE(n->write_now(40 * kG, bytes(10, 1), IoFlags::kNone).has_value());
  }
  // Reads mark nothing.
  std::vector<std::byte> buf(4096);
  ASSERT_TRUE(n->read_now(50 * kG, buf).has_value());
  EXPECT_EQ(b.value()->dirty_granules(), 4u);
  n->bitmaps().remove_write_tracker(tracker);
}

TEST_F(IoNowTest, ABitmapStoreLeavesWritesToTheTaskPath) {
  const uint64_t size = 16 * kMiB;
  const std::string path = shm_.file("disk.raw");
  make_file(path, size);
  auto n = open_file(path);
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->memory_backed());
  std::vector<DirtyBitmapPtr> loaded;
  Result<qcow2::Qcow2BitmapStorePtr> store = qcow2::open_bitmap_container(
      shm_.file("disk.bitmaps.qcow2"), size, /*read_only=*/false, /*create=*/true, pool_, loaded);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  n->bitmaps().attach_store(store.value(), std::move(loaded));
  EXPECT_FALSE(n->bitmaps().marks_in_memory());

  const std::vector<std::byte> data = bytes(4096, 21);
  // A store and no bitmap yet: still not done now (a persistent one may appear any time).
  EXPECT_FALSE(n->write_now(0, data, IoFlags::kNone).has_value());
  auto p = run_task(n->bitmaps().create({.name = "p", .persistent = true}, size));
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  ASSERT_TRUE(p.value()->durable());
  EXPECT_FALSE(n->write_now(5 * kG, data, IoFlags::kNone).has_value());
  EXPECT_EQ(read_file(path, 5 * kG, 4096), std::vector<std::byte>(4096, std::byte{0}));
  EXPECT_EQ(p.value()->dirty_bytes(), 0u);
  expect_nothing_counted(*n, IoOp::kWrite);
  // Reads are not affected by the store.
  std::vector<std::byte> got(4096);
  ASSERT_TRUE(n->read_now(5 * kG, got).has_value());

  // The Task path stores the mark and writes.
  ASSERT_TRUE(run_task(n->write(5 * kG, data, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(p.value()->all_dirty(5 * kG, 4096));
  EXPECT_EQ(read_file(path, 5 * kG, 4096), data);
  // Even a granule already dirty (nothing to store) is not written now: the flag is per
  // store, not per granule.
  EXPECT_FALSE(n->write_now(5 * kG, data, IoFlags::kNone).has_value());
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 1u);

  // Once the store is closed, the bitmaps live in memory and writes complete now again.
  ASSERT_TRUE(run_task(n->bitmaps().close_store()).is_ok());
  EXPECT_TRUE(n->bitmaps().marks_in_memory());
  std::optional<Status> w = n->write_now(9 * kG, data, IoFlags::kNone);
  ASSERT_TRUE(w.has_value() && w->is_ok());
  EXPECT_TRUE(p.value()->all_dirty(9 * kG, 4096));
  EXPECT_EQ(op_stats(*n, IoOp::kWrite).ok, 2u);
}

// ---- RawNode: forwarded through the window ----------------------------------------

TEST_F(IoNowTest, RawWindowShiftsWritesAndReadsNow) {
  const std::string path = shm_.file("img");
  make_file(path, 4 * kMiB, true);
  auto file = open_file(path);
  ASSERT_TRUE(file);
  NodeSpec spec;
  spec.node_name = "r0";
  spec.driver = "raw";
  spec.raw.offset = kMiB;
  spec.raw.size = 2 * kMiB;
  Result<std::shared_ptr<RawNode>> rr = RawNode::open(spec, file);
  ASSERT_TRUE(rr.is_ok()) << rr.status().to_string();
  auto raw = rr.value();
  ASSERT_EQ(raw->size(), 2 * kMiB);

  const uint64_t x = 4096 + 7;
  const std::vector<std::byte> data = bytes(3000, 31);
  std::optional<Status> w = raw->write_now(x, data, IoFlags::kNone);
  ASSERT_TRUE(w.has_value()) << "raw over tmpfs completes now";
  ASSERT_TRUE(w->is_ok()) << w->to_string();
  EXPECT_EQ(read_file(path, kMiB + x, data.size()), data) << "lands at window + X";
  std::vector<std::byte> want_at_x(data.size());
  for (size_t i = 0; i < want_at_x.size(); ++i) want_at_x[i] = fleece_test::pattern_byte(x + i);
  EXPECT_EQ(read_file(path, x, data.size()), want_at_x) << "not at X of the file";

  std::vector<std::byte> got(data.size());
  std::optional<Status> r = raw->read_now(x, got);
  ASSERT_TRUE(r.has_value() && r->is_ok());
  EXPECT_EQ(got, data);
  // Offset 0 of raw is offset 1 MiB of the file.
  std::vector<std::byte> head(16);
  ASSERT_TRUE(raw->read_now(0, head).has_value());
  EXPECT_EQ(head, read_file(path, kMiB, 16));

  // Both levels counted once each.
  EXPECT_EQ(op_stats(*raw, IoOp::kWrite).ok, 1u);
  EXPECT_EQ(op_stats(*file, IoOp::kWrite).ok, 1u);
  EXPECT_EQ(op_stats(*raw, IoOp::kRead).ok, 2u);
  EXPECT_EQ(op_stats(*file, IoOp::kRead).ok, 2u);

  // Past the window's end, though inside the file: refused by raw, the file untouched.
  const std::vector<std::byte> after_window = read_file(path, 3 * kMiB - 100, 200);
  std::optional<Status> past = raw->write_now(2 * kMiB - 100, bytes(200, 1), IoFlags::kNone);
  ASSERT_TRUE(past.has_value());
  EXPECT_EQ(past->code(), ENOSPC) << past->to_string();
  EXPECT_EQ(read_file(path, 3 * kMiB - 100, 200), after_window);
  std::vector<std::byte> past_buf(200);
  std::optional<Status> past_read = raw->read_now(2 * kMiB - 100, past_buf);
  ASSERT_TRUE(past_read.has_value());
  EXPECT_EQ(past_read->code(), EINVAL);
  EXPECT_EQ(op_stats(*raw, IoOp::kWrite).invalid, 1u);
  EXPECT_EQ(op_stats(*file, IoOp::kWrite).invalid, 0u);
  EXPECT_EQ(op_stats(*file, IoOp::kWrite).ok, 1u);

  // The last bytes of the window are fine.
  std::optional<Status> last = raw->write_now(2 * kMiB - 10, bytes(10, 2), IoFlags::kNone);
  ASSERT_TRUE(last.has_value() && last->is_ok());
  EXPECT_EQ(read_file(path, 3 * kMiB - 10, 10), bytes(10, 2));
  EXPECT_EQ(raw->in_flight(), 0u);
  EXPECT_EQ(file->in_flight(), 0u);
}

TEST_F(IoNowTest, RawDefersWhenItsFileChildDefers) {
  const std::string path = shm_.file("img");
  make_file(path, 2 * kMiB, true);
  auto file = open_file(path);
  ASSERT_TRUE(file);
  NodeSpec spec;
  spec.node_name = "r0";
  spec.driver = "raw";
  Result<std::shared_ptr<RawNode>> rr = RawNode::open(spec, file);
  ASSERT_TRUE(rr.is_ok()) << rr.status().to_string();
  auto raw = rr.value();
  auto rb = run_task(raw->bitmaps().create({.name = "rb"}, raw->size()));
  ASSERT_TRUE(rb.is_ok());

  // A copy-before-write hook on the file child: the raw write must wait for it too.
  auto hook = std::make_shared<CountingInterceptor>();
  file->set_write_interceptor(hook);
  const std::vector<std::byte> before = read_file(path, 0, 4096);
  const std::vector<std::byte> data = bytes(4096, 41);
  EXPECT_FALSE(raw->write_now(0, data, IoFlags::kNone).has_value());
  EXPECT_EQ(read_file(path, 0, 4096), before);
  expect_nothing_counted(*raw, IoOp::kWrite);
  expect_nothing_counted(*file, IoOp::kWrite);
  EXPECT_EQ(rb.value()->dirty_bytes(), 0u) << "raw's bitmap is not marked for a deferred write";
  EXPECT_EQ(hook->calls, 0);
  ASSERT_TRUE(run_task(raw->write(0, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(hook->calls, 1);
  EXPECT_EQ(read_file(path, 0, 4096), data);
  EXPECT_TRUE(rb.value()->all_dirty(0, 4096));

  // Over a large transfer the file child defers reads as well.
  file->set_write_interceptor(nullptr);
  std::vector<std::byte> big(128 * kKiB, std::byte{0xEE});
  EXPECT_FALSE(raw->read_now(0, big).has_value());
  expect_nothing_counted(*raw, IoOp::kRead);
  expect_nothing_counted(*file, IoOp::kRead);
  EXPECT_EQ(raw->in_flight(), 0u);
  EXPECT_EQ(file->in_flight(), 0u);
}

// ---- a node without the hooks ------------------------------------------------------

TEST_F(IoNowTest, MemoryNodeHasNoFastPath) {
  auto mem = MemoryNode::create(kMiB);
  mem->fill(0, 4096, std::byte{5});
  const std::vector<std::byte> data = bytes(4096, 51);
  EXPECT_FALSE(mem->write_now(0, data, IoFlags::kNone).has_value());
  std::vector<std::byte> got(4096, std::byte{0xEE});
  EXPECT_FALSE(mem->read_now(0, got).has_value());
  EXPECT_EQ(got, std::vector<std::byte>(4096, std::byte{0xEE}));
  EXPECT_TRUE(mem->calls().empty()) << "the driver saw nothing";
  EXPECT_EQ(mem->contents(0, 4096), std::vector<std::byte>(4096, std::byte{5}));
  expect_nothing_counted(*mem, IoOp::kRead);
  expect_nothing_counted(*mem, IoOp::kWrite);
  EXPECT_EQ(mem->in_flight(), 0u);
  // Validation happens before the hook, as for every node.
  std::optional<Status> past = mem->write_now(kMiB, data, IoFlags::kNone);
  ASSERT_TRUE(past.has_value());
  EXPECT_EQ(past->code(), ENOSPC);
}

}  // namespace
}  // namespace blockcore
