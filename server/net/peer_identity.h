// What the kernel says about the other end of an accepted socket, for export access
// rules: the peer's uid on a Unix socket (SO_PEERCRED) or its address on TCP.
// Threading: a pure function of the file descriptor.
#pragma once

#include "config/allow_rule.h"

namespace server::net {

config::ClientIdentity peer_identity(int fd);

// True for a client on this host: a Unix socket peer or a loopback address
// (127.0.0.0/8, ::1).
bool is_local_peer(const config::ClientIdentity& who);

}  // namespace server::net
