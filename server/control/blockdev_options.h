// blockdev-add arguments (QEMU's BlockdevOptions, as far as fleece has the drivers) ->
// blockcore::NodeSpec. Common members: driver, node-name, read-only, auto-read-only,
// cache {direct, no-flush}, discard. Driver members: file {filename, locking, aio};
// raw {file (a node-name or an inline object), offset, size}; qcow2 {file, backing (null,
// a node-name or an inline object; absent = the image header's chain), data-file}.
// fleece's extension: `bitmap-file` on file and raw nodes (the qcow2 container holding
// the node's persistent dirty bitmaps); other drivers refuse it, saying why.
// fleece's `throttle` filter: {file, limits: {bps-total, bps-read, ..., iops-size}} — the
// members of QEMU's ThrottleLimits given inline (QEMU names a throttle-group object).
// Inline children inherit read-only and cache.direct from their parent unless they set
// them, as in QEMU; an inline backing child is read-only.
// Each driver's members are read by one small function in blockdev_options.cpp; a new
// driver (qcow2...) adds its own there.
// Threading: pure functions of their arguments plus read-only Graph lookups.
#pragma once

#include <string>

#include "blockcore/base/status.h"
#include "blockcore/graph.h"
#include "blockcore/node_spec.h"
#include "server/control/arg_reader.h"

namespace server::control {

// Reads every member of `r` (a blockdev-add arguments object) into a NodeSpec; type and
// value errors stay recorded in `r` (the caller checks r.finish() before anything else).
blockcore::NodeSpec read_blockdev_options(ArgReader& r);

// Reads the members of a ThrottleLimits object (`r` reads that object) and checks them
// together (check_throttle_limits); errors stay recorded in `r`.
blockcore::ThrottleLimits read_throttle_limits(ArgReader& r);

// The checks QEMU makes after the arguments parsed, with its wording: the root needs a
// node-name; names must be well formed and unused; referenced nodes must exist.
blockcore::Status check_blockdev_spec(const blockcore::NodeSpec& spec,
                                      const blockcore::Graph& graph);

// QEMU's id rule (node names, export ids): a letter, then letters, digits, '-', '.', '_'.
bool id_wellformed(const std::string& id);
// A node name: a well-formed id of at most 31 characters. Empty string when fine, else
// the QMP error desc.
std::string check_node_name(const std::string& name);

}  // namespace server::control
