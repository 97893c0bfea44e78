// FileNode on real temp files: regular files on ext4 (/tmp) and tmpfs (/dev/shm), with
// an inline pool (threads=0) and a real one (threads=2), buffered and O_DIRECT.
#include "blockcore/drivers/file_node.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "blockcore/io/aligned_buffer.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::pattern_byte;
using fleece_test::read_file;
using fleece_test::run_task;
using fleece_test::TempDir;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kHoleZero = kExtentHole | kExtentZero;

NodeSpec file_spec(const std::string& path, bool read_only = false, bool direct = false) {
  NodeSpec spec;
  spec.node_name = "f0";
  spec.driver = "file";
  spec.read_only = read_only;
  spec.file.filename = path;
  spec.file.direct = direct;
  return spec;
}

std::vector<std::byte> bytes(size_t n, uint8_t v) {
  return std::vector<std::byte>(n, std::byte{v});
}

bool all_zero(std::span<const std::byte> b) {
  for (std::byte x : b) {
    if (x != std::byte{0}) return false;
  }
  return true;
}

class FileNodeTest : public ::testing::TestWithParam<std::tuple<const char*, unsigned>> {
 protected:
  FileNodeTest() : dir_(std::get<0>(GetParam())), pool_(std::get<1>(GetParam())) {}

  std::shared_ptr<FileNode> open_node(const NodeSpec& spec) {
    Result<std::shared_ptr<FileNode>> r = FileNode::open(spec, pool_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : nullptr;
  }
  ExtentList status_of(BlockNode& n, uint64_t off, uint64_t len) {
    Result<ExtentList> r = run_task(n.block_status(off, len));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : ExtentList{};
  }

  TempDir dir_;
  asio::io_context ctx_;  // outlives pool_: pool threads post to it until joined
  io::BlockingPool pool_;
};

TEST_P(FileNodeTest, OpenErrorsNameTheFile) {
  Result<std::shared_ptr<FileNode>> r = FileNode::open(file_spec(dir_.file("missing")), pool_);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ENOENT);
  EXPECT_NE(r.status().message().find(dir_.file("missing")), std::string::npos);

  r = FileNode::open(file_spec(dir_.path(), /*read_only=*/true), pool_);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("regular file or a block device"), std::string::npos);

  NodeSpec wrong = file_spec(dir_.file("x"));
  wrong.driver = "raw";
  EXPECT_EQ(FileNode::open(wrong, pool_).status().code(), EINVAL);
  EXPECT_EQ(FileNode::open(file_spec(""), pool_).status().code(), EINVAL);
}

TEST_P(FileNodeTest, InfoDescribesTheFile) {
  const std::string path = dir_.file("img");
  make_file(path, 3 * kMiB + 512);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  EXPECT_EQ(n->name(), "f0");
  EXPECT_EQ(n->driver(), "file");
  EXPECT_EQ(n->describe(), path);
  EXPECT_EQ(n->size(), 3 * kMiB + 512);
  EXPECT_FALSE(n->read_only());
  EXPECT_TRUE(n->info().can_trim);
  EXPECT_TRUE(n->info().can_zero);
  EXPECT_TRUE(n->info().can_fast_zero);
  EXPECT_TRUE(n->info().can_multi_conn);
  EXPECT_TRUE(n->info().can_flush);
  EXPECT_EQ(n->info().request_alignment, 1u);
  EXPECT_FALSE(n->is_block_device());
  EXPECT_TRUE(n->locked());
  EXPECT_EQ(n->memory_backed(), std::string(std::get<0>(GetParam())) == "/dev/shm");

  n.reset();  // the writer's lock would refuse a second user that does not share writes
  auto ro = open_node(file_spec(path, /*read_only=*/true));
  ASSERT_TRUE(ro);
  EXPECT_TRUE(ro->read_only());
  EXPECT_FALSE(ro->info().can_trim);
  EXPECT_FALSE(ro->info().can_fast_zero);
}

TEST_P(FileNodeTest, WritesReadBackAndReachTheFile) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB, /*fill=*/true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);

  std::vector<std::byte> got(kMiB);
  ASSERT_TRUE(run_task(n->read(kMiB, got)).is_ok());
  for (size_t i = 0; i < got.size(); i += 4093) ASSERT_EQ(got[i], pattern_byte(kMiB + i)) << i;

  // Unaligned offsets and sizes are fine for buffered I/O.
  auto a = bytes(12345, 0xab);
  ASSERT_TRUE(run_task(n->write(777, a, IoFlags::kNone)).is_ok());
  auto b = bytes(4096, 0xcd);
  ASSERT_TRUE(run_task(n->write(2 * kMiB, b, IoFlags::kFua)).is_ok());
  ASSERT_TRUE(run_task(n->flush()).is_ok());

  std::vector<std::byte> back(12345);
  ASSERT_TRUE(run_task(n->read(777, back)).is_ok());
  EXPECT_EQ(back, a);
  EXPECT_EQ(read_file(path, 777, 12345), a);
  EXPECT_EQ(read_file(path, 2 * kMiB, 4096), b);
  EXPECT_EQ(read_file(path, 776, 1)[0], pattern_byte(776));
  EXPECT_EQ(read_file(path, 777 + 12345, 1)[0], pattern_byte(777 + 12345));

  // The last byte of the node.
  std::vector<std::byte> last(1);
  ASSERT_TRUE(run_task(n->read(4 * kMiB - 1, last)).is_ok());
  EXPECT_EQ(last[0], pattern_byte(4 * kMiB - 1));
}

TEST_P(FileNodeTest, InlineLimitOnlyChangesWhereTheSyscallRuns) {
  const std::string path = dir_.file("img");
  make_file(path, kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  EXPECT_EQ(n->inline_io_limit(), FileNode::kInlineIoLimit);
  for (size_t limit : {size_t{0}, size_t{4096}, size_t{1} << 30}) {
    n->set_inline_io_limit(limit);
    auto data = bytes(8192, static_cast<uint8_t>(limit & 0x7f) + 1);
    ASSERT_TRUE(run_task(n->write(4096, data, IoFlags::kNone)).is_ok());
    std::vector<std::byte> back(8192);
    ASSERT_TRUE(run_task(n->read(4096, back)).is_ok());
    EXPECT_EQ(back, data) << limit;
  }
}

TEST_P(FileNodeTest, ReadOnlyNodeRefusesWrites) {
  const std::string path = dir_.file("img");
  make_file(path, kMiB, true);
  auto n = open_node(file_spec(path, /*read_only=*/true));
  ASSERT_TRUE(n);
  auto a = bytes(512, 1);
  EXPECT_EQ(run_task(n->write(0, a, IoFlags::kNone)).code(), EROFS);
  EXPECT_EQ(run_task(n->write_zeroes(0, 512, IoFlags::kNone)).code(), EROFS);
  std::vector<std::byte> got(512);
  EXPECT_TRUE(run_task(n->read(0, got)).is_ok());
  EXPECT_EQ(got[5], pattern_byte(5));
  EXPECT_TRUE(run_task(n->flush()).is_ok());
}

TEST_P(FileNodeTest, ReadPastEofOfAShortFileReadsZeroes) {
  const std::string path = dir_.file("img");
  make_file(path, kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  // Someone shrinks the file under us: bytes past the new EOF read as zeroes.
  ASSERT_EQ(::truncate(path.c_str(), 5000), 0);
  std::vector<std::byte> got(8192, std::byte{0xee});
  ASSERT_TRUE(run_task(n->read(0, got)).is_ok());
  EXPECT_EQ(got[4999], pattern_byte(4999));
  EXPECT_TRUE(all_zero(std::span(got).subspan(5000)));
  std::vector<std::byte> far(4096, std::byte{0xee});
  ASSERT_TRUE(run_task(n->read(512 * 1024, far)).is_ok());
  EXPECT_TRUE(all_zero(far));
}

TEST_P(FileNodeTest, SparseFileIsOneHole) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  EXPECT_EQ(status_of(*n, 0, 4 * kMiB), (ExtentList{Extent{4 * kMiB, kHoleZero, 1}}));
  EXPECT_EQ(status_of(*n, 4096, 8192), (ExtentList{Extent{8192, kHoleZero, 1}}));
}

TEST_P(FileNodeTest, BlockStatusSeesDataAndPunchedHoles) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  EXPECT_EQ(status_of(*n, 0, 4 * kMiB), (ExtentList{Extent{4 * kMiB, 0, 1}}));

  ASSERT_TRUE(run_task(n->discard(kMiB, kMiB, IoFlags::kNone)).is_ok());
  EXPECT_EQ(status_of(*n, 0, 4 * kMiB),
            (ExtentList{Extent{kMiB, 0, 1}, Extent{kMiB, kHoleZero, 1}, Extent{2 * kMiB, 0, 1}}));
  // A query starting inside the hole, and one limited to part of it.
  EXPECT_EQ(status_of(*n, kMiB + 4096, 2 * kMiB),
            (ExtentList{Extent{kMiB - 4096, kHoleZero, 1}, Extent{kMiB + 4096, 0, 1}}));
  EXPECT_EQ(status_of(*n, kMiB, 4096), (ExtentList{Extent{4096, kHoleZero, 1}}));
  std::vector<std::byte> got(kMiB, std::byte{1});
  ASSERT_TRUE(run_task(n->read(kMiB, got)).is_ok());
  EXPECT_TRUE(all_zero(got));
}

TEST_P(FileNodeTest, WriteZeroesMayTrimPunchesAHole) {
  const std::string path = dir_.file("img");
  make_file(path, 2 * kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  ASSERT_TRUE(run_task(n->write_zeroes(65536, 131072, IoFlags::kMayTrim)).is_ok());
  std::vector<std::byte> got(131072 + 2, std::byte{1});
  ASSERT_TRUE(run_task(n->read(65535, got)).is_ok());
  EXPECT_EQ(got.front(), pattern_byte(65535));
  EXPECT_EQ(got.back(), pattern_byte(65536 + 131072));
  EXPECT_TRUE(all_zero(std::span(got).subspan(1, 131072)));
  EXPECT_EQ(status_of(*n, 65536, 131072), (ExtentList{Extent{131072, kHoleZero, 1}}));
}

TEST_P(FileNodeTest, WriteZeroesWithoutTrimReadsZero) {
  const std::string path = dir_.file("img");
  make_file(path, 2 * kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  // Unaligned edges too (the middle goes to fallocate, the kernel zeroes the edges).
  ASSERT_TRUE(run_task(n->write_zeroes(1000, 300000, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(n->write_zeroes(kMiB, 65536, IoFlags::kFua)).is_ok());
  std::vector<std::byte> got(300002);
  ASSERT_TRUE(run_task(n->read(999, got)).is_ok());
  EXPECT_EQ(got.front(), pattern_byte(999));
  EXPECT_EQ(got.back(), pattern_byte(301000));
  EXPECT_TRUE(all_zero(std::span(got).subspan(1, 300000)));
  EXPECT_TRUE(all_zero(read_file(path, kMiB, 65536)));
}

TEST_P(FileNodeTest, FastZeroSucceedsWhereFallocateWorks) {
  const std::string path = dir_.file("img");
  make_file(path, 2 * kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  ASSERT_TRUE(n->info().can_fast_zero);
  ASSERT_TRUE(run_task(n->write_zeroes(0, kMiB, IoFlags::kFastZero)).is_ok());
  ASSERT_TRUE(
      run_task(n->write_zeroes(kMiB, 4096, IoFlags::kFastZero | IoFlags::kMayTrim)).is_ok());
  EXPECT_TRUE(all_zero(read_file(path, 0, kMiB + 4096)));
  EXPECT_EQ(read_file(path, kMiB + 4096, 1)[0], pattern_byte(kMiB + 4096));
}

TEST_P(FileNodeTest, CacheAndFlushSucceed) {
  const std::string path = dir_.file("img");
  make_file(path, kMiB, true);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  EXPECT_TRUE(run_task(n->cache(0, kMiB)).is_ok());
  EXPECT_TRUE(run_task(n->flush()).is_ok());
}

TEST_P(FileNodeTest, ConcurrentRequestsFromOneContext) {
  const std::string path = dir_.file("img");
  make_file(path, 8 * kMiB);
  auto n = open_node(file_spec(path));
  ASSERT_TRUE(n);
  asio::io_context& ctx = ctx_;
  constexpr int kRequests = 256;
  int ok = 0;
  for (int i = 0; i < kRequests; ++i) {
    asio::co_spawn(
        ctx,
        [&, i]() -> Task<void> {
          auto data = bytes(4096, static_cast<uint8_t>(i));
          const uint64_t off = static_cast<uint64_t>(i) * 32768;
          Status s = co_await n->write(off, data, i % 7 == 0 ? IoFlags::kFua : IoFlags::kNone);
          if (!s.is_ok()) co_return;
          std::vector<std::byte> back(4096);
          s = co_await n->read(off, back);
          if (s.is_ok() && back == data) ++ok;
        },
        asio::detached);
  }
  ctx.run();
  EXPECT_EQ(ok, kRequests);
  EXPECT_EQ(n->in_flight(), 0u);
}

// ---- O_DIRECT ------------------------------------------------------------------------

TEST_P(FileNodeTest, DirectIoWithAlignedAndUnalignedBuffers) {
  const std::string path = dir_.file("img");
  make_file(path, 4 * kMiB, true);
  auto n = open_node(file_spec(path, false, /*direct=*/true));
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->direct());
  const uint32_t align = n->info().request_alignment;
  EXPECT_GE(align, 512u);
  EXPECT_FALSE(n->info().can_cache);

  // Aligned memory.
  io::AlignedBuffer ab = io::AlignedBuffer::allocate(2 * kMiB + 8192);
  std::fill(ab.span().begin(), ab.span().end(), std::byte{0x11});
  ASSERT_TRUE(run_task(n->write(kMiB, ab.span().first(kMiB), IoFlags::kNone)).is_ok());

  // Unaligned memory, larger than one bounce buffer, with and without FUA.
  std::span<std::byte> odd = ab.span().subspan(1, kMiB + 2 * align);
  std::fill(odd.begin(), odd.end(), std::byte{0x22});
  ASSERT_TRUE(run_task(n->write(2 * kMiB, odd, IoFlags::kFua)).is_ok());
  EXPECT_EQ(read_file(path, 2 * kMiB, odd.size()), std::vector<std::byte>(odd.begin(), odd.end()));
  EXPECT_EQ(read_file(path, kMiB, kMiB), bytes(kMiB, 0x11));

  std::span<std::byte> odd_read = ab.span().subspan(3, kMiB + align);
  ASSERT_TRUE(run_task(n->read(kMiB - align, odd_read)).is_ok());
  for (size_t i = 0; i < align; ++i) ASSERT_EQ(odd_read[i], pattern_byte(kMiB - align + i));
  for (size_t i = align; i < odd_read.size(); ++i) ASSERT_EQ(odd_read[i], std::byte{0x11}) << i;

  // Misaligned offsets or lengths are refused by the node before any syscall.
  std::vector<std::byte> small(100);
  EXPECT_EQ(run_task(n->read(0, small)).code(), EINVAL);
  EXPECT_EQ(run_task(n->read(1, std::span(ab.span()).first(align))).code(), EINVAL);

  // Zeroing and block status work as in buffered mode.
  ASSERT_TRUE(run_task(n->write_zeroes(0, align * 8, IoFlags::kMayTrim)).is_ok());
  EXPECT_TRUE(all_zero(read_file(path, 0, align * 8)));
  ASSERT_TRUE(run_task(n->flush()).is_ok());
}

TEST_P(FileNodeTest, DirectIoServesAnUnalignedTail) {
  const std::string path = dir_.file("img");
  const uint64_t size = kMiB + 100;
  make_file(path, size, true);
  auto n = open_node(file_spec(path, false, /*direct=*/true));
  ASSERT_TRUE(n);
  const uint32_t align = n->info().request_alignment;
  EXPECT_EQ(n->size(), size);
  const uint64_t last_block = kMiB - align;

  std::vector<std::byte> tail(align + 100);
  ASSERT_TRUE(run_task(n->read(last_block, tail)).is_ok());
  for (size_t i = 0; i < tail.size(); ++i) ASSERT_EQ(tail[i], pattern_byte(last_block + i)) << i;

  auto data = bytes(align + 100, 0x77);
  ASSERT_TRUE(run_task(n->write(last_block, data, IoFlags::kNone)).is_ok());
  EXPECT_EQ(read_file(path, last_block, data.size()), data);
  struct stat st = {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);  // not extended to a block

  // Zeroes by writing through the tail path as well (no trim).
  ASSERT_TRUE(run_task(n->write_zeroes(last_block, align + 100, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(all_zero(read_file(path, last_block, align + 100)));
}

INSTANTIATE_TEST_SUITE_P(Filesystems, FileNodeTest,
                         ::testing::Combine(::testing::Values("/tmp", "/dev/shm"),
                                            ::testing::Values(0u, 2u)),
                         [](const ::testing::TestParamInfo<FileNodeTest::ParamType>& p) {
                           std::string fs =
                               std::string(std::get<0>(p.param)) == "/tmp" ? "Tmp" : "Shm";
                           return fs + "Threads" + std::to_string(std::get<1>(p.param));
                         });

}  // namespace
}  // namespace blockcore
