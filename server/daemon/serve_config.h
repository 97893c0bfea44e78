// The Config that `fleeced serve IMAGE ...` runs: one file node, one format node and one
// export, as if written in a config file.
// Threading: pure, main thread.
#pragma once

#include "blockcore/base/result.h"
#include "config/config.h"
#include "server/daemon/cli.h"

namespace server::daemon {

// `activated`: sockets were passed by systemd, so no default listen address is added.
blockcore::Result<config::Config> make_serve_config(const CommandLine& cl, bool activated);

}  // namespace server::daemon
