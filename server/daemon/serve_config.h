// The Config that `fleeced serve IMAGE ...` runs: one file node, one format node (raw, or
// qcow2 with its backing chain from the image header; a raw one with --bitmap-file keeps
// its bitmaps in that container), one persistent bitmap per --bitmap (ensured at start-up
// and offered by the export) and one export, as if written in a config file. Without
// --format the format is probed from the image's first bytes, as qemu-nbd does, and a
// warning says so; an explicit --format never reads the image here.
// Threading: main thread; reads at most 4 bytes of the image when probing.
#pragma once

#include "blockcore/base/result.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "config/config.h"
#include "server/daemon/cli.h"

namespace server::daemon {

// `fleeced serve` without --format probes the image like qemu-nbd (qcow2 magic or raw).
using blockcore::qcow2::probe_image_format;

// `activated`: sockets were passed by systemd, so no default listen address is added.
blockcore::Result<config::Config> make_serve_config(const CommandLine& cl, bool activated);

}  // namespace server::daemon
