#include "server/daemon/socket_activation.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace server::daemon {

bool ActivatedSocket::is_control() const {
  return name == "control" ||
         (name.size() > 8 && name.compare(name.size() - 8, 8, "-control") == 0);
}

std::vector<ActivatedSocket> take_activated_sockets() {
  char** names = nullptr;
  // unset_environment=1: LISTEN_* must not leak into processes we start.
  int n = sd_listen_fds_with_names(1, &names);
  std::vector<ActivatedSocket> out;
  if (n < 0) {
    spdlog::warn("socket activation: cannot read LISTEN_FDS: {}", std::strerror(-n));
    return out;
  }
  for (int i = 0; i < n; ++i) {
    ActivatedSocket s;
    s.fd = SD_LISTEN_FDS_START + i;
    s.name = names != nullptr && names[i] != nullptr ? names[i] : "unknown";
    s.is_unix = sd_is_socket(s.fd, AF_UNIX, SOCK_STREAM, 1) > 0;
    if (sd_is_socket(s.fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
      spdlog::warn("socket activation: fd {} ({}) is not a listening stream socket; ignored",
                   s.fd, s.name);
      continue;
    }
    if (s.is_unix) {
      sockaddr_un addr{};
      socklen_t len = sizeof(addr);
      if (getsockname(s.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
          len > offsetof(sockaddr_un, sun_path) && addr.sun_path[0] != '\0') {
        s.unix_path.assign(addr.sun_path, strnlen(addr.sun_path, sizeof(addr.sun_path)));
      }
    }
    fcntl(s.fd, F_SETFD, FD_CLOEXEC);
    out.push_back(std::move(s));
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  return out;
}

}  // namespace server::daemon
