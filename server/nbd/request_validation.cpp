#include "server/nbd/request_validation.h"

#include "server/nbd/protocol.h"

namespace server::nbd {
namespace {

ValidationResult fail(uint32_t error, std::string_view message) { return {error, message}; }

bool is_write_like(uint16_t type) {
  return type == kCmdWrite || type == kCmdTrim || type == kCmdWriteZeroes;
}

bool has_range(uint16_t type) {
  switch (type) {
    case kCmdRead:
    case kCmdWrite:
    case kCmdTrim:
    case kCmdWriteZeroes:
    case kCmdCache:
    case kCmdBlockStatus:
      return true;
  }
  return false;
}

}  // namespace

const char* request_violation(const RequestHeader& h, const ValidationContext& ctx) {
  if (h.magic != kRequestMagic) return "bad request magic";
  if (h.type == kCmdWrite && h.length > ctx.max_payload) {
    return "write payload larger than the maximum payload";
  }
  return nullptr;
}

ValidationResult validate_request(const RequestHeader& h, const ValidationContext& ctx) {
  const uint16_t type = h.type;
  const uint16_t flags = h.flags;

  if ((ctx.eflags & kFlagReadOnly) && is_write_like(type)) {
    return fail(kNbdEperm, "write request on a read-only export");
  }

  // Command and range.
  if (has_range(type)) {
    if (h.offset > ctx.export_size || h.length > ctx.export_size - h.offset) {
      if (type == kCmdWrite || type == kCmdWriteZeroes) {
        return fail(kNbdEnospc, "request extends past the end of the export");
      }
      return fail(kNbdEinval, "request extends past the end of the export");
    }
  } else if (type == kCmdFlush) {
    if (h.offset != 0 || h.length != 0) {
      return fail(kNbdEinval, "flush request with non-zero offset or length");
    }
  } else {
    return fail(kNbdEinval, "unknown command");
  }

  // Flags.
  if (flags & ~kCmdFlagsKnown) return fail(kNbdEinval, "unknown command flag");
  if ((flags & kCmdFlagNoHole) && type != kCmdWriteZeroes) {
    return fail(kNbdEinval, "NO_HOLE flag needs a WRITE_ZEROES request");
  }
  if ((flags & kCmdFlagFastZero) && type != kCmdWriteZeroes) {
    return fail(kNbdEinval, "FAST_ZERO flag needs a WRITE_ZEROES request");
  }
  if ((flags & kCmdFlagFastZero) && !(ctx.eflags & kFlagSendFastZero)) {
    return fail(kNbdEinval, "FAST_ZERO flag not negotiated");
  }
  if (flags & kCmdFlagDf) {
    if (type != kCmdRead) return fail(kNbdEinval, "DF flag needs a READ request");
    if (!ctx.structured) return fail(kNbdEinval, "DF flag without structured replies");
  }
  if ((flags & kCmdFlagReqOne) && type != kCmdBlockStatus) {
    return fail(kNbdEinval, "REQ_ONE flag needs a BLOCK_STATUS request");
  }
  if ((flags & kCmdFlagFua) && !(ctx.eflags & kFlagSendFua)) {
    return fail(kNbdEinval, "FUA flag not negotiated");
  }

  // Payload size.
  if ((type == kCmdRead || type == kCmdWrite) && h.length > ctx.max_payload) {
    return fail(kNbdEinval, "request larger than the maximum payload");
  }

  // Advertised features.
  if (type == kCmdFlush && !(ctx.eflags & kFlagSendFlush)) {
    return fail(kNbdEinval, "flush not supported");
  }
  if (type == kCmdTrim && !(ctx.eflags & kFlagSendTrim)) {
    return fail(kNbdEinval, "trim not supported");
  }
  if (type == kCmdWriteZeroes && !(ctx.eflags & kFlagSendWriteZeroes)) {
    return fail(kNbdEinval, "write zeroes not supported");
  }
  if (type == kCmdCache && !(ctx.eflags & kFlagSendCache)) {
    return fail(kNbdEinval, "cache not supported");
  }
  if (type == kCmdBlockStatus) {
    if (!ctx.structured) return fail(kNbdEinval, "block status without structured replies");
    if (!ctx.has_meta_contexts) return fail(kNbdEinval, "no metadata context was selected");
    if (h.length == 0) return fail(kNbdEinval, "block status of an empty range");
  }

  // Alignment to the advertised minimum block size (an unaligned end of file is fine).
  if (ctx.min_block > 1 && has_range(type)) {
    const uint64_t end = h.offset + h.length;
    if (h.offset % ctx.min_block != 0 ||
        (h.length % ctx.min_block != 0 && end != ctx.export_size)) {
      return fail(kNbdEinval, "request not aligned to the minimum block size");
    }
  }
  return {};
}

}  // namespace server::nbd
