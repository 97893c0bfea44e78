#include "blockcore/base/status.h"

#include <gtest/gtest.h>

#include <string>

#include "blockcore/base/result.h"

namespace blockcore {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.is_ok());
  EXPECT_TRUE(static_cast<bool>(s));
  EXPECT_EQ(s.code(), 0);
  EXPECT_EQ(s.to_string(), "OK");
  EXPECT_TRUE(Status::ok().is_ok());
}

TEST(StatusTest, FactoriesCarryTheirErrno) {
  EXPECT_EQ(Status::io_error("x").code(), EIO);
  EXPECT_EQ(Status::invalid("x").code(), EINVAL);
  EXPECT_EQ(Status::not_supported("x").code(), ENOTSUP);
  EXPECT_EQ(Status::no_space("x").code(), ENOSPC);
  EXPECT_EQ(Status::read_only("x").code(), EROFS);
  EXPECT_EQ(Status::permission("x").code(), EPERM);
  EXPECT_EQ(Status::no_memory("x").code(), ENOMEM);
  EXPECT_EQ(Status::error(EBUSY, "busy").code(), EBUSY);
  EXPECT_FALSE(Status::invalid("x").is_ok());
}

TEST(StatusTest, FromErrnoAddsContextAndStrerror) {
  Status s = Status::from_errno(ENOENT, "open disk.img");
  EXPECT_EQ(s.code(), ENOENT);
  EXPECT_EQ(s.message(), "open disk.img: No such file or directory");
  EXPECT_EQ(s.to_string(), s.message());
}

TEST(StatusTest, FromErrnoZeroBecomesEio) {
  // A caller that lost errno must still produce an error.
  EXPECT_EQ(Status::from_errno(0, "x").code(), EIO);
}

TEST(StatusTest, WithContextPrefixesAndKeepsCode) {
  Status s = Status::from_errno(EIO, "pread a").with_context("node n0");
  EXPECT_EQ(s.code(), EIO);
  EXPECT_EQ(s.message(), "node n0: pread a: Input/output error");
  EXPECT_TRUE(Status::ok().with_context("ignored").is_ok());
  EXPECT_EQ(Status::error(EPERM, "").with_context("p").message(), "p: Operation not permitted");
}

TEST(StatusTest, ToStringFallsBackToStrerror) {
  EXPECT_EQ(Status::error(ENOSPC, "").to_string(), "No space left on device");
}

Status returns_early(bool fail, int* reached) {
  FLEECE_RETURN_IF_ERROR(fail ? Status::invalid("stop") : Status::ok());
  ++*reached;
  return Status::ok();
}

TEST(StatusTest, ReturnIfErrorMacro) {
  int reached = 0;
  EXPECT_EQ(returns_early(true, &reached).code(), EINVAL);
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(returns_early(false, &reached).is_ok());
  EXPECT_EQ(reached, 1);
}

TEST(ResultTest, HoldsValue) {
  Result<std::string> r = std::string("abc");
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(static_cast<bool>(r));
  EXPECT_EQ(r.value(), "abc");
  EXPECT_EQ(*r, "abc");
  EXPECT_EQ(r->size(), 3u);
  EXPECT_TRUE(r.status().is_ok());
  std::string moved = std::move(r).value();
  EXPECT_EQ(moved, "abc");
}

TEST(ResultTest, HoldsError) {
  Result<int> r = Status::from_errno(EACCES, "open x");
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EACCES);
  EXPECT_EQ(r.status().message(), "open x: Permission denied");
}

TEST(ResultTest, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.is_ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

}  // namespace
}  // namespace blockcore
