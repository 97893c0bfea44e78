// Central validation of NBD requests before any node code runs, modelled on nbdkit's
// validate_request(): read-only, known command, range (write/write-zeroes past the end
// → ENOSPC, others → EINVAL), known flags per command, advertised features, payload
// size, meta contexts for BLOCK_STATUS, alignment to the advertised minimum block size.
// Also classifies the request-level protocol violations that force a disconnect.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

#include "server/nbd/wire.h"

namespace server::nbd {

// What validation needs to know about the negotiated session.
struct ValidationContext {
  uint64_t export_size = 0;
  uint16_t eflags = 0;  // transmission flags sent to the client
  bool structured = false;
  uint32_t min_block = 1;
  uint32_t max_payload = 32u << 20;
  bool has_meta_contexts = false;
};

struct ValidationResult {
  uint32_t error = 0;             // NBD error to reply with (0 = valid)
  std::string_view message = {};  // static text for the error chunk and logs
  bool ok() const { return error == 0; }
};

// REQUIRES: h.magic was checked and h.type != NBD_CMD_DISC.
ValidationResult validate_request(const RequestHeader& h, const ValidationContext& ctx);

// A protocol violation that cannot be answered and ends the connection, or nullptr.
// (Bad magic; a WRITE payload larger than the maximum, which cannot be skipped safely.)
const char* request_violation(const RequestHeader& h, const ValidationContext& ctx);

}  // namespace server::nbd
