// find_zero_runs: how a structured read is split into OFFSET_DATA and OFFSET_HOLE runs.
#include <gtest/gtest.h>

#include "server/nbd/request_handler.h"

namespace server::nbd {
namespace {

using Runs = std::vector<ReadRun>;

std::vector<std::byte> zeroes(size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

TEST(ZeroRuns, AllDataIsOneRun) {
  std::vector<std::byte> d(16384, std::byte{1});
  EXPECT_EQ(find_zero_runs(d, 0), (Runs{{0, 16384, false}}));
}

TEST(ZeroRuns, AllZeroIsOneHole) {
  EXPECT_EQ(find_zero_runs(zeroes(65536), 1 << 20), (Runs{{0, 65536, true}}));
}

TEST(ZeroRuns, ZeroBlocksInTheMiddle) {
  auto d = zeroes(5 * 4096);
  d[10] = std::byte{1};               // block 0: data
  d[4 * 4096 + 4095] = std::byte{1};  // block 4: data (last byte)
  EXPECT_EQ(find_zero_runs(d, 0),
            (Runs{{0, 4096, false}, {4096, 3 * 4096, true}, {4 * 4096, 4096, false}}));
}

TEST(ZeroRuns, UnalignedEdgesAreData) {
  // Starts 512 bytes before a 4 KiB boundary and ends 100 bytes after one.
  auto d = zeroes(512 + 2 * 4096 + 100);
  EXPECT_EQ(find_zero_runs(d, 4096 - 512),
            (Runs{{0, 512, false}, {512, 8192, true}, {512 + 8192, 100, false}}));
  // Shorter than a block: data.
  EXPECT_EQ(find_zero_runs(zeroes(1000), 0), (Runs{{0, 1000, false}}));
}

}  // namespace
}  // namespace server::nbd
