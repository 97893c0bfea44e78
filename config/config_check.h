// Semantic checks of a whole Config that need more than one section: exports and bitmaps
// name existing nodes, names are unique, a writable export does not write a node that a
// writable parent node already writes (or a read-only one), a persistent bitmap belongs
// to a node that can store it (qcow2, or a `bitmap-file`), listen addresses are not
// repeated, TLS has credentials. The loader runs it after parsing; the daemon can run it
// on configurations it builds itself (serve mode). Node-to-node references are checked
// by the node parser. Elements with an empty name or node (already reported as missing)
// are skipped, so one mistake gives one error.
// Threading: pure function.
#pragma once

#include <vector>

#include "config/config.h"

namespace config {

std::vector<ConfigError> check_config(const Config& config);

}  // namespace config
