// The Config that `fleeced serve IMAGE ...` runs: one file node, one format node (raw, or
// qcow2 with its backing chain from the image header) and one export, as if written in a
// config file. Without --format the format is probed from the image's first bytes, as
// qemu-nbd does, and a warning says so; an explicit --format never reads the image here.
// Threading: main thread; reads at most 4 bytes of the image when probing.
#pragma once

#include "blockcore/base/result.h"
#include "config/config.h"
#include "server/daemon/cli.h"

namespace server::daemon {

// "qcow2" if the file at `path` starts with the qcow2 magic (QFI\xfb), else "raw" (also
// when it cannot be read: opening it later reports why).
std::string probe_image_format(const std::string& path);

// `activated`: sockets were passed by systemd, so no default listen address is added.
blockcore::Result<config::Config> make_serve_config(const CommandLine& cl, bool activated);

}  // namespace server::daemon
