// The one mapping from host errno values (blockcore::Status codes) to NBD wire errors,
// following nbdkit's nbd_errno(): ENOTSUP only for FAST_ZERO requests, EOVERFLOW only
// for DF reads, EINVAL for anything unknown. Every errno→wire conversion goes here.
// Threading: pure functions.
#pragma once

#include <cstdint>

#include "blockcore/base/status.h"

namespace server::nbd {

// Maps a host errno to an NBD error for a request carrying `cmd_flags` (NBD_CMD_FLAG_*).
// 0 maps to 0 (success).
uint32_t nbd_error_from_errno(int err, uint16_t cmd_flags);

inline uint32_t nbd_error_from_status(const blockcore::Status& s, uint16_t cmd_flags) {
  return s.is_ok() ? 0 : nbd_error_from_errno(s.code(), cmd_flags);
}

// "EINVAL", "ENOSPC"... for an NBD error value (for logs and tests).
const char* nbd_error_name(uint32_t nbd_error);

}  // namespace server::nbd
