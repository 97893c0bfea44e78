// Unix socket paths for listeners (NBD and control): before binding, a socket file left
// behind by a dead process is removed, while one a live process still serves is left
// alone and reported as in use. Files that are not sockets are never removed.
// Threading: stateless functions; call on the start-up/control path.
#pragma once

#include <string>

#include "blockcore/base/status.h"

namespace server::net {

// Makes `path` free for bind(): OK if nothing is there or a stale socket was removed;
// EADDRINUSE if a live process accepts on it; EEXIST if it is not a socket; ENAMETOOLONG
// if it does not fit a sockaddr_un.
blockcore::Status prepare_unix_socket_path(const std::string& path);

}  // namespace server::net
