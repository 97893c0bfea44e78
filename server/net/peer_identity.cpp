#include "server/net/peer_identity.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

namespace server::net {

config::ClientIdentity peer_identity(int fd) {
  config::ClientIdentity who;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    // A socketpair has no peer name; its credentials still count.
    ss.ss_family = AF_UNIX;
  }
  if (ss.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) who.uid = cred.uid;
  } else if (ss.ss_family == AF_INET) {
    config::IpAddress a;
    std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, 4);
    who.address = a;
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    config::IpAddress a;
    if (std::memcmp(&in6->sin6_addr, kMapped, 12) == 0) {
      std::memcpy(a.bytes.data(), reinterpret_cast<const uint8_t*>(&in6->sin6_addr) + 12, 4);
    } else {
      a.v6 = true;
      std::memcpy(a.bytes.data(), &in6->sin6_addr, 16);
    }
    who.address = a;
  }
  return who;
}

bool is_local_peer(const config::ClientIdentity& who) {
  if (who.uid) return true;
  if (!who.address) return false;
  const config::IpAddress& a = *who.address;
  if (!a.v6) return a.bytes[0] == 127;
  static constexpr std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 1};
  return a.bytes == kLoopback6;
}

}  // namespace server::net
