// How throttle filter nodes show up in queries (query-named-block-nodes): QEMU's
// BlockDeviceInfo throttle members (bps, bps_rd, ..., iops_size) filled from the node's
// limits, plus fleece's `throttle-limits` object with the limit keys of the YAML config
// and blockdev-add. Implemented in throttle_commands.cpp with block-set-throttle.
// Threading: pure functions of the node's current limits.
#pragma once

#include <nlohmann/json.hpp>

#include "blockcore/block_node.h"
#include "blockcore/filters/throttle_limits.h"

namespace server::control {

// {"bps-total": N, ..., "iops-size": N}: every key, 0 when unlimited.
nlohmann::json throttle_limits_json(const blockcore::ThrottleLimits& limits);
// Sets the throttle members of a BlockDeviceInfo object: the limits of `node` when it is
// a throttle node, 0 (unlimited) for the QEMU members otherwise.
void add_throttle_info(const blockcore::BlockNode& node, nlohmann::json& info);

}  // namespace server::control
