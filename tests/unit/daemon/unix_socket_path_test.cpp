#include "server/net/unix_socket_path.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

namespace server::net {
namespace {

class UnixSocketPath : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fleece-sock-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/s.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  int bind_socket(bool do_listen) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path_.c_str());
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    if (do_listen) {
      EXPECT_EQ(listen(fd, 1), 0);
    }
    return fd;
  }

  std::string dir_, path_;
};

TEST_F(UnixSocketPath, NothingThere) { EXPECT_TRUE(prepare_unix_socket_path(path_).is_ok()); }

TEST_F(UnixSocketPath, StaleSocketIsRemoved) {
  close(bind_socket(false));
  ASSERT_TRUE(std::filesystem::exists(path_));
  EXPECT_TRUE(prepare_unix_socket_path(path_).is_ok());
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(UnixSocketPath, LiveSocketIsRefused) {
  int fd = bind_socket(true);
  auto s = prepare_unix_socket_path(path_);
  EXPECT_EQ(s.code(), EADDRINUSE);
  EXPECT_TRUE(std::filesystem::exists(path_));
  close(fd);
}

TEST_F(UnixSocketPath, RegularFileIsNeverRemoved) {
  std::ofstream(path_) << "data";
  EXPECT_EQ(prepare_unix_socket_path(path_).code(), EEXIST);
  EXPECT_TRUE(std::filesystem::exists(path_));
}

TEST_F(UnixSocketPath, TooLong) {
  EXPECT_EQ(prepare_unix_socket_path(std::string(200, 'a')).code(), ENAMETOOLONG);
}

}  // namespace
}  // namespace server::net
