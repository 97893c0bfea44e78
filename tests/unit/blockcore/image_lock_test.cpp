// Image locking against QEMU's own tools: fleece and qemu-img/qemu-io must see each
// other's locks (QEMU's OFD byte-range scheme), in both directions.
#include "blockcore/drivers/image_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "blockcore/drivers/file_node.h"
#include "testing/temp_dir.h"

extern char** environ;

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::TempDir;

NodeSpec file_spec(const std::string& path, bool read_only, LockMode mode = LockMode::kAuto) {
  NodeSpec spec;
  spec.node_name = "f";
  spec.driver = "file";
  spec.read_only = read_only;
  spec.file.filename = path;
  spec.file.locking = mode;
  return spec;
}

bool have_program(const char* name) {
  const std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs argv to completion, capturing its output through a file in `dir`.
CommandResult run_command(const std::vector<std::string>& argv, const std::string& dir) {
  const std::string out_path = dir + "/cmd.out";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  CommandResult r;
  if (posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ) == 0) {
    int status = 0;
    waitpid(pid, &status, 0);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&fa);
  std::ifstream in(out_path);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

// True when another open file description holds a lock on `byte` of path.
bool byte_locked(const std::string& path, int byte) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  const bool locked = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return locked;
}

// An interactive qemu-io holding an image open until destroyed (stdin kept open).
class HeldQemuIo {
 public:
  HeldQemuIo(const std::string& path, bool read_only) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    std::vector<std::string> argv = {"qemu-io", "-f", "raw"};
    if (read_only) argv.push_back("-r");
    argv.push_back(path);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, "qemu-io", &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[0]);
    stdin_ = fds[1];
    // Wait until it holds its "consistent read" byte.
    for (int i = 0; i < 500 && pid_ > 0 && !byte_locked(path, kPermLockBase); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~HeldQemuIo() {
    if (stdin_ >= 0) ::close(stdin_);  // EOF: qemu-io quits
    if (pid_ > 0) {
      int status;
      waitpid(pid_, &status, 0);
    }
  }
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
};

class ImageLockTest : public ::testing::Test {
 protected:
  ImageLockTest() : pool_(0) {
    path_ = dir_.file("disk.img");
    make_file(path_, 1 << 20);
  }
  Result<std::shared_ptr<FileNode>> open(bool read_only, LockMode mode = LockMode::kAuto) {
    return FileNode::open(file_spec(path_, read_only, mode), pool_);
  }
  void require_qemu() {
    if (!have_program("qemu-io") || !have_program("qemu-img")) {
      GTEST_SKIP() << "qemu-io/qemu-img not installed";
    }
  }

  TempDir dir_;
  io::BlockingPool pool_;
  std::string path_;
};

TEST_F(ImageLockTest, PermsMatchQemuFormatDrivers) {
  LockPerms rw = file_node_lock_perms(false);
  EXPECT_EQ(rw.perm, kPermConsistentRead | kPermWrite);
  EXPECT_EQ(rw.shared, kPermConsistentRead | kPermWriteUnchanged);
  LockPerms ro = file_node_lock_perms(true);
  EXPECT_EQ(ro.perm, kPermConsistentRead);
  EXPECT_EQ(ro.shared, kPermConsistentRead | kPermWriteUnchanged);
  EXPECT_STREQ(perm_name(kPermWrite), "write");
  EXPECT_STREQ(perm_name(kPermConsistentRead), "consistent read");
}

TEST_F(ImageLockTest, WriterTakesQemuBytes) {
  auto n = open(false);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  EXPECT_TRUE(n.value()->locked());
  EXPECT_TRUE(byte_locked(path_, 100));   // consistent read
  EXPECT_TRUE(byte_locked(path_, 101));   // write
  EXPECT_FALSE(byte_locked(path_, 102));  // write unchanged: not taken
  EXPECT_TRUE(byte_locked(path_, 201));   // write: not shared
  EXPECT_FALSE(byte_locked(path_, 200));  // consistent read: shared
  EXPECT_TRUE(byte_locked(path_, 203));   // resize: not shared
  n = Status::invalid("drop");            // closing releases every byte
  for (int b : {100, 101, 201, 203}) EXPECT_FALSE(byte_locked(path_, b)) << b;
}

TEST_F(ImageLockTest, TwoWritersInOneProcessConflict) {
  auto a = open(false);
  ASSERT_TRUE(a.is_ok());
  auto b = open(false);
  ASSERT_FALSE(b.is_ok());
  EXPECT_EQ(b.status().code(), EAGAIN);
  EXPECT_NE(b.status().message().find("Failed to get"), std::string::npos);
  EXPECT_NE(b.status().message().find(path_), std::string::npos);
  // The failed attempt left no bytes behind: after the first closes, it works.
  a = Status::invalid("drop");
  EXPECT_TRUE(open(false).is_ok());
}

TEST_F(ImageLockTest, ReadersCoexistButExcludeWriters) {
  auto r1 = open(true);
  auto r2 = open(true);
  ASSERT_TRUE(r1.is_ok());
  ASSERT_TRUE(r2.is_ok());
  auto w = open(false);
  ASSERT_FALSE(w.is_ok());
  EXPECT_EQ(w.status().message(),
            "Failed to get \"write\" lock on '" + path_ + "': is another process using the image?");
}

TEST_F(ImageLockTest, LockingOffTakesNothing) {
  auto a = open(false, LockMode::kOff);
  auto b = open(false, LockMode::kOff);
  ASSERT_TRUE(a.is_ok());
  ASSERT_TRUE(b.is_ok());
  EXPECT_FALSE(a.value()->locked());
  EXPECT_FALSE(byte_locked(path_, 101));
  // ...and a locking node still sees nothing to conflict with.
  EXPECT_TRUE(open(false, LockMode::kOn).is_ok());
}

TEST_F(ImageLockTest, OfdLocksSupportedOnLocalFileSystems) {
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_TRUE(ImageLock::ofd_locks_supported(fd));
  ::close(fd);
}

TEST_F(ImageLockTest, QemuIoCannotWriteWhileFleeceWrites) {
  require_qemu();
  if (IsSkipped()) return;
  auto n = open(false);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  CommandResult w = run_command({"qemu-io", "-f", "raw", "-c", "write 0 512", path_}, dir_.path());
  EXPECT_NE(w.exit_code, 0) << w.output;
  EXPECT_NE(w.output.find("Failed to get \"write\" lock"), std::string::npos) << w.output;
  // `qemu-img info` of a raw image takes no lock in QEMU 7.2 (it works against
  // qemu-nbd or a VM too); readers that force-share (-U) always work.
  CommandResult info = run_command({"qemu-img", "info", path_}, dir_.path());
  EXPECT_EQ(info.exit_code, 0) << info.output;
  CommandResult read_u =
      run_command({"qemu-io", "-U", "-r", "-f", "raw", "-c", "read 0 512", path_}, dir_.path());
  EXPECT_EQ(read_u.exit_code, 0) << read_u.output;

  n = Status::invalid("close");  // released: qemu-io may write again
  w = run_command({"qemu-io", "-f", "raw", "-c", "write 0 512", path_}, dir_.path());
  EXPECT_EQ(w.exit_code, 0) << w.output;
}

TEST_F(ImageLockTest, QemuImgInfoOfAQcow2FleeceWritesIsRefusedLikeWithQemu) {
  require_qemu();
  if (IsSkipped()) return;
  const std::string qcow2 = dir_.file("disk.qcow2");
  CommandResult c = run_command({"qemu-img", "create", "-f", "qcow2", qcow2, "1M"}, dir_.path());
  ASSERT_EQ(c.exit_code, 0) << c.output;
  auto n = FileNode::open(file_spec(qcow2, false), pool_);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  // Exactly what a running QEMU (or qemu-nbd) writing the image causes.
  CommandResult info = run_command({"qemu-img", "info", qcow2}, dir_.path());
  EXPECT_NE(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("Failed to get shared \"write\" lock"), std::string::npos)
      << info.output;
  CommandResult info_u = run_command({"qemu-img", "info", "-U", qcow2}, dir_.path());
  EXPECT_EQ(info_u.exit_code, 0) << info_u.output;
  CommandResult w =
      run_command({"qemu-io", "-f", "qcow2", "-c", "write 0 512", qcow2}, dir_.path());
  EXPECT_NE(w.exit_code, 0) << w.output;
}

TEST_F(ImageLockTest, FleeceRefusesAnImageQemuIoHolds) {
  require_qemu();
  if (IsSkipped()) return;
  {
    HeldQemuIo q(path_, /*read_only=*/false);
    ASSERT_TRUE(q.running());
    ASSERT_TRUE(byte_locked(path_, 101)) << "qemu-io did not take its write lock";
    auto n = open(false);
    ASSERT_FALSE(n.is_ok());
    EXPECT_EQ(n.status().code(), EAGAIN);
    EXPECT_EQ(n.status().message(), "Failed to get shared \"write\" lock on '" + path_ +
                                        "': is another process using the image?");
    // A read-only fleece node does not share writes either (it needs stable data).
    EXPECT_FALSE(open(true).is_ok());
    // locking: off opens anyway.
    EXPECT_TRUE(open(false, LockMode::kOff).is_ok());
  }
  EXPECT_TRUE(open(false).is_ok());  // qemu-io is gone
}

TEST_F(ImageLockTest, ReadOnlyOpensCoexistWithQemuReaders) {
  require_qemu();
  if (IsSkipped()) return;
  auto n = open(true);
  ASSERT_TRUE(n.is_ok()) << n.status().to_string();
  CommandResult r =
      run_command({"qemu-io", "-r", "-f", "raw", "-c", "read 0 512", path_}, dir_.path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  CommandResult info = run_command({"qemu-img", "info", path_}, dir_.path());
  EXPECT_EQ(info.exit_code, 0) << info.output;
  {
    HeldQemuIo q(path_, /*read_only=*/true);
    ASSERT_TRUE(q.running());
    auto n2 = open(true);
    EXPECT_TRUE(n2.is_ok()) << n2.status().to_string();
  }
  // But a writer is still kept out while fleece reads.
  CommandResult w = run_command({"qemu-io", "-f", "raw", "-c", "write 0 512", path_}, dir_.path());
  EXPECT_NE(w.exit_code, 0) << w.output;
  EXPECT_NE(w.output.find("Failed to get \"write\" lock"), std::string::npos) << w.output;
}

}  // namespace
}  // namespace blockcore
