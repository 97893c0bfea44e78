// Tests of fleecectl backup's extent planning: which runs are read, how they are widened
// to clusters, merged and cut, how a read buffer splits into data and zero clusters, and
// the export's NBD URI.
#include "server/fleecectl/backup_client/extent_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace fleecectl::backup {
namespace {

constexpr uint64_t K = 1024;
constexpr uint64_t C = 64 * K;

TEST(SelectRuns, DirtyRunsAreMergedAndPlaced) {
  std::vector<StatusRun> runs = {{C, 0}, {C, kStateDirty}, {2 * C, kStateDirty}, {C, 0},
                                 {C, kStateDirty}};
  EXPECT_EQ(select_runs(10 * C, runs, kStateDirty, true),
            (std::vector<ByteRange>{{11 * C, 3 * C}, {15 * C, C}}));
}

TEST(SelectRuns, AllocationSkipsWhatReadsAsZero) {
  // data, hole+zero, zero (allocated), hole without the zero flag (still read).
  std::vector<StatusRun> runs = {{C, 0}, {C, kStateHole | kStateZero}, {C, kStateZero},
                                 {C, kStateHole}};
  EXPECT_EQ(select_runs(0, runs, kStateZero, false),
            (std::vector<ByteRange>{{0, C}, {3 * C, C}}));
}

TEST(PlanRequests, WidensToClustersAndMergesNeighbours) {
  // 512 bytes inside cluster 1, 4 KiB straddling clusters 2 and 3, cluster 3 again.
  std::vector<ByteRange> in = {{C + 512, 512}, {3 * C - 2 * K, 4 * K}, {3 * C, C}};
  EXPECT_EQ(plan_requests(in, C, 100 * C, 4 << 20), (std::vector<ByteRange>{{C, 3 * C}}));
}

TEST(PlanRequests, ClipsAtAnUnalignedEndOfDisk) {
  const uint64_t size = 3 * C + 1536;
  EXPECT_EQ(plan_requests({{3 * C + 100, 100}, {5 * C, C}}, C, size, 4 << 20),
            (std::vector<ByteRange>{{3 * C, 1536}}));
}

TEST(PlanRequests, CutsLongRangesIntoRequests) {
  auto out = plan_requests({{0, 10 * C}}, C, 100 * C, 4 * C);
  EXPECT_EQ(out, (std::vector<ByteRange>{{0, 4 * C}, {4 * C, 4 * C}, {8 * C, 2 * C}}));
  EXPECT_EQ(total_bytes(out), 10 * C);
  EXPECT_TRUE(plan_requests({}, C, 100 * C, 4 * C).empty());
}

TEST(SplitZeroClusters, DataAndZeroClustersAlternate) {
  std::vector<std::byte> buf(4 * C);
  buf[C + 7] = std::byte{1};  // cluster 1 holds data
  buf[4 * C - 1] = std::byte{2};  // so does cluster 3 (its last byte)
  EXPECT_EQ(split_zero_clusters(8 * C, buf, C),
            (std::vector<BufferRun>{{8 * C, C, true}, {9 * C, C, false}, {10 * C, C, true},
                                    {11 * C, C, false}}));
}

TEST(SplitZeroClusters, UnalignedStartFollowsTheDisksClusters) {
  std::vector<std::byte> buf(C);  // disk offset C/2 .. 3C/2: two half clusters
  buf[C - 1] = std::byte{9};
  EXPECT_EQ(split_zero_clusters(C / 2, buf, C),
            (std::vector<BufferRun>{{C / 2, C / 2, true}, {C, C / 2, false}}));
}

TEST(UriWithExport, ReplacesThePathKeepsTheQuery) {
  EXPECT_EQ(uri_with_export("nbd+unix:///?socket=/run/fleeced/nbd.sock", "backup-1"),
            "nbd+unix:///backup-1?socket=/run/fleeced/nbd.sock");
  EXPECT_EQ(uri_with_export("nbd+unix:///old?socket=/s", "new"), "nbd+unix:///new?socket=/s");
  EXPECT_EQ(uri_with_export("nbd://127.0.0.1:10809", "a b/c"), "nbd://127.0.0.1:10809/a%20b%2Fc");
  EXPECT_EQ(uri_with_export("nbds://host/x", "y"), "nbds://host/y");
  EXPECT_EQ(uri_with_export("/run/fleeced/nbd.sock", "y"), "");
}

}  // namespace
}  // namespace fleecectl::backup
