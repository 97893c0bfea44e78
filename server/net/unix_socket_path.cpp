#include "server/net/unix_socket_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace server::net {

using blockcore::Status;

Status prepare_unix_socket_path(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::error(ENAMETOOLONG, "unix socket path '" + path + "' is empty or too long");
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return Status::from_errno(errno, "stat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Status::error(EEXIST, path + " exists and is not a socket; refusing to replace it");
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::from_errno(errno, "socket");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  close(fd);
  if (rc == 0) {
    return Status::error(EADDRINUSE, path + " is in use by a running process");
  }
  if (err != ECONNREFUSED && err != ENOENT) {
    return Status::from_errno(err, "probe " + path);
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::from_errno(errno, "remove stale socket " + path);
  }
  return Status::ok();
}

}  // namespace server::net
