#include "server/nbd/export_info.h"

#include <algorithm>
#include <bit>

#include "server/nbd/protocol.h"

namespace server::nbd {

bool export_read_only(const Export& exp) {
  return !exp.writable || !exp.root || exp.root->read_only();
}

uint16_t transmission_flags(const Export& exp, bool structured_replies) {
  uint16_t f = kFlagHasFlags | kFlagSendFlush | kFlagSendFua | kFlagSendCache;
  const blockcore::NodeInfo& info = exp.root->info();
  if (export_read_only(exp)) {
    f |= kFlagReadOnly;
  } else {
    // write_zeroes always works (emulated by the node when not efficient); FAST_ZERO
    // is understood and answered with ENOTSUP when the node cannot zero quickly.
    f |= kFlagSendWriteZeroes | kFlagSendFastZero;
    if (info.can_trim) f |= kFlagSendTrim;
  }
  if (info.rotational) f |= kFlagRotational;
  if (info.can_multi_conn) f |= kFlagCanMultiConn;
  if (structured_replies) f |= kFlagSendDf;
  return f;
}

BlockSizeLimits block_size_limits(const Export& exp) {
  const blockcore::NodeInfo& info = exp.root->info();
  BlockSizeLimits l;
  l.min = std::bit_ceil(std::max<uint32_t>(1, info.request_alignment));
  l.min = std::min(l.min, kMaxMinBlockSize);
  l.preferred = std::bit_ceil(std::max({l.min, 512u, info.preferred_alignment}));
  l.preferred = std::min(l.preferred, kMaxPayload);
  l.max_payload = kMaxPayload;  // a multiple of every legal minimum
  return l;
}

}  // namespace server::nbd
