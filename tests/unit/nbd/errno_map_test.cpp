// errno → NBD error: every row of the nbdkit-compatible table.
#include "server/nbd/errno_map.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "server/nbd/protocol.h"

namespace server::nbd {
namespace {

struct Row {
  int err;
  uint16_t flags;
  uint32_t expected;
};

TEST(ErrnoMap, EveryRow) {
  const Row rows[] = {
      {0, 0, kNbdOk},
      {EPERM, 0, kNbdEperm},
      {EROFS, 0, kNbdEperm},
      {EIO, 0, kNbdEio},
      {ENOMEM, 0, kNbdEnomem},
      {ENOSPC, 0, kNbdEnospc},
      {EDQUOT, 0, kNbdEnospc},
      {EFBIG, 0, kNbdEnospc},
      {ESHUTDOWN, 0, kNbdEshutdown},
      // ENOTSUP only for FAST_ZERO requests.
      {ENOTSUP, 0, kNbdEinval},
      {ENOTSUP, kCmdFlagFastZero, kNbdEnotsup},
      {EOPNOTSUPP, 0, kNbdEinval},
      {EOPNOTSUPP, kCmdFlagFastZero, kNbdEnotsup},
      {ENOTSUP, kCmdFlagDf, kNbdEinval},
      // EOVERFLOW only for DF reads.
      {EOVERFLOW, 0, kNbdEinval},
      {EOVERFLOW, kCmdFlagDf, kNbdEoverflow},
      {EOVERFLOW, kCmdFlagFastZero, kNbdEinval},
      // Everything else is EINVAL.
      {EINVAL, 0, kNbdEinval},
      {EACCES, 0, kNbdEinval},
      {ENOENT, 0, kNbdEinval},
      {EBADF, 0, kNbdEinval},
      {EAGAIN, 0, kNbdEinval},
      {12345, 0, kNbdEinval},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(nbd_error_from_errno(r.err, r.flags), r.expected)
        << "errno " << r.err << " flags " << r.flags;
  }
}

TEST(ErrnoMap, FromStatus) {
  EXPECT_EQ(nbd_error_from_status(blockcore::Status::ok(), 0), kNbdOk);
  EXPECT_EQ(nbd_error_from_status(blockcore::Status::read_only("x"), 0), kNbdEperm);
  EXPECT_EQ(nbd_error_from_status(blockcore::Status::not_supported("x"), kCmdFlagFastZero),
            kNbdEnotsup);
  EXPECT_EQ(nbd_error_from_status(blockcore::Status::no_space("x"), 0), kNbdEnospc);
}

TEST(ErrnoMap, WireValuesMatchTheSpec) {
  EXPECT_EQ(kNbdEperm, 1u);
  EXPECT_EQ(kNbdEio, 5u);
  EXPECT_EQ(kNbdEnomem, 12u);
  EXPECT_EQ(kNbdEinval, 22u);
  EXPECT_EQ(kNbdEnospc, 28u);
  EXPECT_EQ(kNbdEoverflow, 75u);
  EXPECT_EQ(kNbdEnotsup, 95u);
  EXPECT_EQ(kNbdEshutdown, 108u);
  EXPECT_STREQ(nbd_error_name(kNbdEnospc), "ENOSPC");
}

}  // namespace
}  // namespace server::nbd
