// The STATUS= text fleeced sends to systemd, and the notifier's messages on a socket
// playing systemd's end of NOTIFY_SOCKET.
#include "server/daemon/service_status.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace server::daemon {
namespace {

TEST(ServiceStatusText, CountsWithPlurals) {
  EXPECT_EQ(service_status_text({}), "0 exports, 0 connections, 0 fleeces");
  EXPECT_EQ(service_status_text({1, 1, 1, 0}), "1 export, 1 connection, 1 fleece");
  EXPECT_EQ(service_status_text({3, 2, 2, 1}), "3 exports, 2 connections, 2 fleeces (1 broken)");
}

class NotifySocket {
 public:
  NotifySocket() {
    path_ = testing::TempDir() + "/notify-" + std::to_string(getpid());
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    unlink(path_.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~NotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    close(fd_);
    unlink(path_.c_str());
  }
  // The next datagram, or "" when none is queued.
  std::string next() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    return n > 0 ? std::string(buf, size_t(n)) : std::string();
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(ServiceNotifier, MessagesAndStatusOnlyWhenChanged) {
  NotifySocket systemd;
  ServiceNotifier n;
  n.ready({1, 0, 0, 0});
  EXPECT_EQ(systemd.next(), "READY=1\nSTATUS=1 export, 0 connections, 0 fleeces");
  n.update_status({1, 0, 0, 0});
  EXPECT_EQ(systemd.next(), "");  // unchanged: nothing sent
  n.update_status({2, 0, 1, 0});
  EXPECT_EQ(systemd.next(), "STATUS=2 exports, 0 connections, 1 fleece");
  n.reloading();
  std::string reloading = systemd.next();
  EXPECT_EQ(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << reloading;
  n.stopping();
  EXPECT_EQ(systemd.next(), "STOPPING=1\nSTATUS=shutting down");
}

}  // namespace
}  // namespace server::daemon
