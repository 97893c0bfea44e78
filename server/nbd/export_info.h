// What the server advertises for an export: the transmission flags (from
// Export::writable and the root node's NodeInfo) and the block size constraints
// (minimum = root request_alignment, preferred, maximum payload 32 MiB).
// Threading: pure functions of an immutable Export.
#pragma once

#include <cstdint>

#include "server/export/export_registry.h"

namespace server::nbd {

struct BlockSizeLimits {
  uint32_t min = 1;
  uint32_t preferred = 4096;
  uint32_t max_payload = 32u << 20;
};

// True if clients may not write to the export (not writable, or its root is read-only).
bool export_read_only(const Export& exp);

// Transmission flags: HAS_FLAGS, READ_ONLY, SEND_FLUSH, SEND_FUA, ROTATIONAL,
// SEND_TRIM, SEND_WRITE_ZEROES, SEND_FAST_ZERO, SEND_DF (only with structured replies),
// CAN_MULTI_CONN, SEND_CACHE.
uint16_t transmission_flags(const Export& exp, bool structured_replies);

// REQUIRES: exp.root != nullptr.
BlockSizeLimits block_size_limits(const Export& exp);

}  // namespace server::nbd
