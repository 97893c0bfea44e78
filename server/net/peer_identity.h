// What the kernel says about the other end of an accepted socket, for export access
// rules: the peer's uid on a Unix socket (SO_PEERCRED) or its address on TCP.
// Threading: a pure function of the file descriptor.
#pragma once

#include "config/allow_rule.h"

namespace server::net {

config::ClientIdentity peer_identity(int fd);

}  // namespace server::net
