// Socket activation: the listening sockets systemd (or libnbd's
// connect_systemd_socket_activation, or systemd-socket-activate) passed us through
// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES. Names route sockets: "control" (or a name
// ending in "control") is the control socket, every other one serves NBD.
// Threading: call once at start-up from the main thread.
#pragma once

#include <string>
#include <vector>

namespace server::daemon {

struct ActivatedSocket {
  int fd = -1;
  std::string name;  // LISTEN_FDNAMES entry, or "unknown"
  bool is_unix = false;
  std::string unix_path;  // bound path of a Unix socket ("" for abstract/unnamed)
  bool is_control() const;
};

// Takes the passed sockets (marks them close-on-exec, clears the environment
// variables so children do not inherit them). Empty when not socket-activated.
std::vector<ActivatedSocket> take_activated_sockets();

}  // namespace server::daemon
