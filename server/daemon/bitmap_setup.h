// The config's top-level `bitmaps:` ensured on the opened nodes: a bitmap that is missing
// is created (NodeBitmaps::create with the entry's granularity, persistent and disabled),
// one that exists is kept as it is — never cleared, its recording state untouched — but
// a different granularity or persistence is an error naming both values. Runs after the
// nodes are opened and before exports are built (an export's `bitmaps:` must find them),
// at start-up and on reload.
// All or nothing: every entry is checked before anything is created, and a failed
// creation removes the bitmaps this call created.
// Threading: the control/start-up path (the main io_context); the blocking form runs
// the work on a private io_context.
#pragma once

#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/graph.h"
#include "config/config.h"

namespace server::daemon {

// Ensures every entry of `bitmaps` on its node in `graph`. Errors start with the entry's
// location ("fleeced.yaml:30: bitmap 'nightly' of node 'disk0': ...").
blockcore::Task<blockcore::Status> ensure_config_bitmaps(
    const std::vector<config::BitmapConfig>& bitmaps, blockcore::Graph& graph);

// The same, blocking the calling thread until done (start-up).
blockcore::Status ensure_config_bitmaps_blocking(const std::vector<config::BitmapConfig>& bitmaps,
                                                 blockcore::Graph& graph);

}  // namespace server::daemon
