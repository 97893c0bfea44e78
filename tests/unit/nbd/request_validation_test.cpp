// Request validation: the NBD error for every kind of bad request, and violations.
#include "server/nbd/request_validation.h"

#include <gtest/gtest.h>

#include "server/nbd/protocol.h"

namespace server::nbd {
namespace {

constexpr uint64_t kSize = 1 << 20;
constexpr uint16_t kRwFlags = kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendTrim |
                              kFlagSendWriteZeroes | kFlagSendFastZero | kFlagSendDf |
                              kFlagSendCache;

ValidationContext rw_ctx() {
  return ValidationContext{kSize, kRwFlags, true, 1, kMaxPayload, true};
}

RequestHeader req(uint16_t type, uint64_t off, uint32_t len, uint16_t flags = 0) {
  return RequestHeader{kRequestMagic, flags, type, 1, off, len};
}

uint32_t check(const RequestHeader& h, const ValidationContext& c = rw_ctx()) {
  return validate_request(h, c).error;
}

TEST(Validation, AcceptsGoodRequests) {
  EXPECT_EQ(check(req(kCmdRead, 0, 4096)), kNbdOk);
  EXPECT_EQ(check(req(kCmdRead, kSize - 1, 1)), kNbdOk);
  EXPECT_EQ(check(req(kCmdRead, kSize, 0)), kNbdOk);
  EXPECT_EQ(check(req(kCmdWrite, 512, 512, kCmdFlagFua)), kNbdOk);
  EXPECT_EQ(check(req(kCmdFlush, 0, 0)), kNbdOk);
  EXPECT_EQ(check(req(kCmdTrim, 0, kSize)), kNbdOk);
  EXPECT_EQ(check(req(kCmdWriteZeroes, 0, 4096, kCmdFlagNoHole | kCmdFlagFastZero)), kNbdOk);
  EXPECT_EQ(check(req(kCmdCache, 0, 4096)), kNbdOk);
  EXPECT_EQ(check(req(kCmdBlockStatus, 0, 4096, kCmdFlagReqOne)), kNbdOk);
  EXPECT_EQ(check(req(kCmdRead, 0, 4096, kCmdFlagDf)), kNbdOk);
  // FUA is valid on every command once negotiated.
  EXPECT_EQ(check(req(kCmdRead, 0, 1, kCmdFlagFua)), kNbdOk);
}

TEST(Validation, PastTheEnd) {
  EXPECT_EQ(check(req(kCmdWrite, kSize - 1, 2)), kNbdEnospc);
  EXPECT_EQ(check(req(kCmdWriteZeroes, kSize, 1)), kNbdEnospc);
  EXPECT_EQ(check(req(kCmdRead, kSize - 1, 2)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdTrim, kSize + 1, 0)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdCache, kSize, 1)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdBlockStatus, kSize, 1)), kNbdEinval);
  // offset + length overflowing 64 bits
  EXPECT_EQ(check(req(kCmdRead, UINT64_MAX, 2)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdWrite, UINT64_MAX - 1, 4)), kNbdEnospc);
}

TEST(Validation, ReadOnly) {
  ValidationContext c = rw_ctx();
  c.eflags =
      kFlagHasFlags | kFlagReadOnly | kFlagSendFlush | kFlagSendFua | kFlagSendDf | kFlagSendCache;
  EXPECT_EQ(check(req(kCmdWrite, 0, 512), c), kNbdEperm);
  EXPECT_EQ(check(req(kCmdTrim, 0, 512), c), kNbdEperm);
  EXPECT_EQ(check(req(kCmdWriteZeroes, 0, 512), c), kNbdEperm);
  // Read-only wins over out-of-range, as in nbdkit.
  EXPECT_EQ(check(req(kCmdWrite, kSize, 512), c), kNbdEperm);
  EXPECT_EQ(check(req(kCmdRead, 0, 512), c), kNbdOk);
  EXPECT_EQ(check(req(kCmdFlush, 0, 0), c), kNbdOk);
}

TEST(Validation, UnknownCommandAndFlags) {
  EXPECT_EQ(check(req(kCmdResize, 0, 0)), kNbdEinval);
  EXPECT_EQ(check(req(99, 0, 0)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdRead, 0, 1, 1u << 7)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdRead, 0, 1, kCmdFlagPayloadLen)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdWrite, 0, 1, kCmdFlagNoHole)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdTrim, 0, 1, kCmdFlagFastZero)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdWrite, 0, 1, kCmdFlagDf)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdRead, 0, 1, kCmdFlagReqOne)), kNbdEinval);
}

TEST(Validation, FlagsNeedNegotiation) {
  ValidationContext c = rw_ctx();
  c.structured = false;
  c.eflags &= static_cast<uint16_t>(~kFlagSendDf);
  EXPECT_EQ(check(req(kCmdRead, 0, 1, kCmdFlagDf), c), kNbdEinval);
  c = rw_ctx();
  c.eflags &= static_cast<uint16_t>(~kFlagSendFua);
  EXPECT_EQ(check(req(kCmdWrite, 0, 1, kCmdFlagFua), c), kNbdEinval);
  c = rw_ctx();
  c.eflags &= static_cast<uint16_t>(~kFlagSendFastZero);
  EXPECT_EQ(check(req(kCmdWriteZeroes, 0, 1, kCmdFlagFastZero), c), kNbdEinval);
}

TEST(Validation, CommandsNeedAdvertising) {
  ValidationContext c = rw_ctx();
  c.eflags = kFlagHasFlags;
  EXPECT_EQ(check(req(kCmdFlush, 0, 0), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdTrim, 0, 1), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdWriteZeroes, 0, 1), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdCache, 0, 1), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdWrite, 0, 1), c), kNbdOk);
}

TEST(Validation, FlushWithRange) {
  EXPECT_EQ(check(req(kCmdFlush, 1, 0)), kNbdEinval);
  EXPECT_EQ(check(req(kCmdFlush, 0, 1)), kNbdEinval);
}

TEST(Validation, PayloadLimit) {
  ValidationContext c = rw_ctx();
  c.export_size = 1ull << 40;
  EXPECT_EQ(check(req(kCmdRead, 0, kMaxPayload), c), kNbdOk);
  EXPECT_EQ(check(req(kCmdRead, 0, kMaxPayload + 1), c), kNbdEinval);
  // Trim, zero, cache and block status are not payloads.
  EXPECT_EQ(check(req(kCmdTrim, 0, 0xffffffffu), c), kNbdOk);
  EXPECT_EQ(check(req(kCmdBlockStatus, 0, 0xffffffffu), c), kNbdOk);
}

TEST(Validation, BlockStatusNeedsContexts) {
  ValidationContext c = rw_ctx();
  c.has_meta_contexts = false;
  EXPECT_EQ(check(req(kCmdBlockStatus, 0, 512), c), kNbdEinval);
  c = rw_ctx();
  c.structured = false;
  EXPECT_EQ(check(req(kCmdBlockStatus, 0, 512), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdBlockStatus, 0, 0)), kNbdEinval);
}

TEST(Validation, Alignment) {
  ValidationContext c = rw_ctx();
  c.min_block = 512;
  c.export_size = 4096 + 100;  // unaligned end of file
  EXPECT_EQ(check(req(kCmdRead, 512, 1024), c), kNbdOk);
  EXPECT_EQ(check(req(kCmdRead, 1, 512), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdWrite, 0, 100), c), kNbdEinval);
  EXPECT_EQ(check(req(kCmdTrim, 512, 511), c), kNbdEinval);
  // The unaligned tail may be addressed up to the end of file.
  EXPECT_EQ(check(req(kCmdRead, 4096, 100), c), kNbdOk);
  EXPECT_EQ(check(req(kCmdWrite, 3584, 612), c), kNbdOk);
  EXPECT_EQ(check(req(kCmdFlush, 0, 0), c), kNbdOk);
}

TEST(Validation, Violations) {
  ValidationContext c = rw_ctx();
  RequestHeader h = req(kCmdRead, 0, 1);
  EXPECT_EQ(request_violation(h, c), nullptr);
  h.magic = 0x12345678;
  EXPECT_NE(request_violation(h, c), nullptr);
  h = req(kCmdWrite, 0, kMaxPayload + 1);
  EXPECT_NE(request_violation(h, c), nullptr);
  // A too-large read is answered (EINVAL), not a violation.
  h = req(kCmdRead, 0, kMaxPayload + 1);
  EXPECT_EQ(request_violation(h, c), nullptr);
}

}  // namespace
}  // namespace server::nbd
