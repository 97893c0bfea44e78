// PipeBuffer and BlockNode::read_to_pipe: file pages spliced into a pipe must read back
// as the same bytes pread returns (aligned or not, up to and past the end of the file),
// and every case the caller should copy instead (holes, O_DIRECT, a pipe too small, a
// node that cannot) must answer ENOTSUP with the pipe untouched and nothing counted.
// On /tmp and /dev/shm, with the blocking pool inline (0 threads) and real (2).
#include "blockcore/io/pipe_buffer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "blockcore/drivers/file_node.h"
#include "blockcore/drivers/raw_node.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::read_file;
using fleece_test::run_task;
using fleece_test::TempDir;
using io::PipeBuffer;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

NodeSpec file_spec(const std::string& path, bool direct = false) {
  NodeSpec spec;
  spec.node_name = "f0";
  spec.driver = "file";
  spec.read_only = false;
  spec.file.filename = path;
  spec.file.direct = direct;
  return spec;
}

PipeBuffer new_pipe(size_t capacity = kMiB) {
  Result<PipeBuffer> p = PipeBuffer::create(capacity);
  EXPECT_TRUE(p.is_ok()) << p.status().to_string();
  return p.is_ok() ? std::move(p.value()) : PipeBuffer();
}

// Reads everything the pipe holds, the way the socket side consumes it.
std::vector<std::byte> drain(PipeBuffer& pipe) {
  std::vector<std::byte> out(pipe.held());
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(pipe.read_fd(), out.data() + done, out.size() - done);
    if (n <= 0) break;
    pipe.consumed(static_cast<size_t>(n));
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

uint64_t reads_ok(const BlockNode& n) { return n.io_stats().snapshot().op(IoOp::kRead).ok; }

TEST(PipeBufferTest, CapacityAndSlotRule) {
  PipeBuffer pipe = new_pipe();
  ASSERT_TRUE(pipe);
  EXPECT_GE(pipe.capacity(), kMiB);
  EXPECT_EQ(pipe.held(), 0u);
  const size_t cap = pipe.capacity();
  EXPECT_TRUE(pipe.can_take(0, cap));
  EXPECT_TRUE(pipe.can_take(4096, cap));
  // Starting mid-page takes one slot more than the length suggests.
  EXPECT_FALSE(pipe.can_take(100, cap));
  EXPECT_TRUE(pipe.can_take(100, cap - 4096));
  EXPECT_FALSE(pipe.can_take(0, cap + 1));
  EXPECT_FALSE(pipe.can_take(0, 0));
}

TEST(PipeBufferTest, MovedFromIsEmpty) {
  PipeBuffer a = new_pipe();
  const int fd = a.read_fd();
  PipeBuffer b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the documented moved-from state
  EXPECT_EQ(b.read_fd(), fd);
}

class PipeReadTest : public ::testing::TestWithParam<std::tuple<const char*, unsigned>> {
 protected:
  PipeReadTest() : dir_(std::get<0>(GetParam())), pool_(std::get<1>(GetParam())) {}

  std::shared_ptr<FileNode> open_node(const NodeSpec& spec) {
    Result<std::shared_ptr<FileNode>> r = FileNode::open(spec, pool_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : nullptr;
  }

  TempDir dir_;
  asio::io_context ctx_;
  io::BlockingPool pool_;
};

TEST_P(PipeReadTest, SplicedBytesEqualTheFile) {
  const std::string path = dir_.file("img");
  const uint64_t size = 8 * kMiB + 12345;  // an unaligned end
  make_file(path, size, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->fully_allocated());
  PipeBuffer pipe = new_pipe();
  const std::vector<std::pair<uint64_t, uint64_t>> reads = {
      {0, kMiB},           {kMiB, 128 * kKiB},    {4096, kMiB},  {777, kMiB - 4096},
      {size - (kMiB - 4096), kMiB - 4096}, {size - 1000, 1000}, {size - 1, 1},
      {3 * kMiB + 5, 200000}};
  uint64_t count = 0;
  for (auto [off, len] : reads) {
    SCOPED_TRACE("read at " + std::to_string(off) + " +" + std::to_string(len));
    Status s = run_task(n->read_to_pipe(off, len, pipe));
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(pipe.held(), len);
    EXPECT_EQ(drain(pipe), read_file(path, off, len));
    EXPECT_EQ(reads_ok(*n), ++count);
  }
  EXPECT_EQ(n->io_stats().snapshot().op(IoOp::kRead).bytes,
            [&] {
              uint64_t b = 0;
              for (auto r : reads) b += r.second;
              return b;
            }());
}

TEST_P(PipeReadTest, ShrunkFileReadsZeroesPastItsEnd) {
  const std::string path = dir_.file("img");
  make_file(path, 2 * kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  ASSERT_EQ(::truncate(path.c_str(), kMiB + 5000), 0);  // someone shrinks it under us
  PipeBuffer pipe = new_pipe();
  ASSERT_TRUE(run_task(n->read_to_pipe(kMiB, 512 * kKiB, pipe)).is_ok());
  std::vector<std::byte> got = drain(pipe);
  ASSERT_EQ(got.size(), 512 * kKiB);
  std::vector<std::byte> want = read_file(path, kMiB, 5000);
  want.resize(512 * kKiB, std::byte{0});
  EXPECT_EQ(got, want);
}

TEST_P(PipeReadTest, CopyCasesAnswerNotSupportedAndCountNothing) {
  const std::string sparse = dir_.file("sparse");
  make_file(sparse, 4 * kMiB);  // all hole: worth reporting as such, so not spliced
  auto n = open_node(file_spec(sparse));
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->fully_allocated());
  PipeBuffer pipe = new_pipe();
  EXPECT_EQ(run_task(n->read_to_pipe(0, kMiB, pipe)).code(), ENOTSUP);
  EXPECT_EQ(pipe.held(), 0u);
  EXPECT_EQ(reads_ok(*n), 0u);
  EXPECT_EQ(n->io_stats().snapshot().op(IoOp::kRead).failed, 0u);

  const std::string dense = dir_.file("dense");
  make_file(dense, 4 * kMiB, true);
  auto d = open_node(file_spec(dense));
  ASSERT_TRUE(d);
  // A range that needs more pipe slots than the pipe has.
  EXPECT_EQ(run_task(d->read_to_pipe(100, pipe.capacity(), pipe)).code(), ENOTSUP);
  EXPECT_EQ(pipe.held(), 0u);
  // Invalid requests are refused like read()'s.
  EXPECT_EQ(run_task(d->read_to_pipe(4 * kMiB - 10, 20, pipe)).code(), EINVAL);
  EXPECT_EQ(d->io_stats().snapshot().op(IoOp::kRead).invalid, 1u);
  EXPECT_EQ(reads_ok(*d), 0u);

  // A node that has no pages to give (the default hook).
  auto mem = fleece_test::MemoryNode::create(4 * kMiB);
  EXPECT_EQ(run_task(mem->read_to_pipe(0, kMiB, pipe)).code(), ENOTSUP);
  EXPECT_EQ(pipe.held(), 0u);
}

TEST_P(PipeReadTest, DirectIoIsNeverSpliced) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB, true);
  Result<std::shared_ptr<FileNode>> r = FileNode::open(file_spec(path, /*direct=*/true), pool_);
  if (!r.is_ok()) GTEST_SKIP() << "no O_DIRECT here: " << r.status().to_string();
  PipeBuffer pipe = new_pipe();
  EXPECT_EQ(run_task(r.value()->read_to_pipe(0, kMiB, pipe)).code(), ENOTSUP);
  EXPECT_EQ(pipe.held(), 0u);
}

TEST_P(PipeReadTest, RawWindowShiftsTheSplicedRange) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB, true);
  auto file = open_node(file_spec(path));
  ASSERT_TRUE(file);
  NodeSpec spec;
  spec.node_name = "r0";
  spec.driver = "raw";
  spec.raw.offset = kMiB;
  spec.raw.size = 2 * kMiB;
  Result<std::shared_ptr<RawNode>> raw = RawNode::open(spec, file);
  ASSERT_TRUE(raw.is_ok()) << raw.status().to_string();
  PipeBuffer pipe = new_pipe();
  ASSERT_TRUE(run_task(raw.value()->read_to_pipe(512 * kKiB, kMiB, pipe)).is_ok());
  EXPECT_EQ(drain(pipe), read_file(path, kMiB + 512 * kKiB, kMiB));
  // Past the window's end, though inside the file.
  EXPECT_EQ(run_task(raw.value()->read_to_pipe(2 * kMiB - 4096, 8192, pipe)).code(), EINVAL);
  EXPECT_EQ(reads_ok(*raw.value()), 1u);
  EXPECT_EQ(reads_ok(*file), 1u);
}

TEST_P(PipeReadTest, FullyAllocatedFileIsOneDataExtent) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  Result<ExtentList> r = run_task(n->block_status(kMiB, 2 * kMiB));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r.value(), (ExtentList{Extent{2 * kMiB, 0, 1}}));
}

INSTANTIATE_TEST_SUITE_P(Filesystems, PipeReadTest,
                         ::testing::Combine(::testing::Values("/tmp", "/dev/shm"),
                                            ::testing::Values(0u, 2u)),
                         [](const ::testing::TestParamInfo<PipeReadTest::ParamType>& p) {
                           std::string fs =
                               std::string(std::get<0>(p.param)) == "/tmp" ? "Tmp" : "Shm";
                           return fs + "Threads" + std::to_string(std::get<1>(p.param));
                         });

}  // namespace
}  // namespace blockcore
