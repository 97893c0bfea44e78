// FileNode on a block device: a loop device over a temp file (skipped when loop devices
// cannot be set up, e.g. without root).
#include <gtest/gtest.h>
#include <stdio.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "blockcore/drivers/file_node.h"
#include "blockcore/io/aligned_buffer.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore {
namespace {

using fleece_test::make_file;
using fleece_test::pattern_byte;
using fleece_test::run_task;
using fleece_test::TempDir;

constexpr uint64_t kSize = 16 << 20;

// Attaches a loop device to a file for the lifetime of the object.
class LoopDevice {
 public:
  explicit LoopDevice(const std::string& backing) {
    const std::string cmd = "losetup -f --show '" + backing + "' 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) return;
    std::array<char, 256> line{};
    if (fgets(line.data(), line.size(), p) != nullptr) {
      device_ = line.data();
      while (!device_.empty() && (device_.back() == '\n' || device_.back() == ' ')) {
        device_.pop_back();
      }
    }
    if (pclose(p) != 0) device_.clear();
  }
  ~LoopDevice() {
    if (!device_.empty()) {
      const std::string cmd = "losetup -d '" + device_ + "' 2>/dev/null";
      (void)std::system(cmd.c_str());
    }
  }
  const std::string& device() const { return device_; }

 private:
  std::string device_;
};

class FileNodeBlockDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    make_file(dir_.file("backing"), kSize, /*fill=*/true);
    loop_ = std::make_unique<LoopDevice>(dir_.file("backing"));
    if (loop_->device().empty()) GTEST_SKIP() << "cannot set up a loop device";
  }
  std::shared_ptr<FileNode> open(bool direct) {
    NodeSpec spec;
    spec.node_name = "dev";
    spec.driver = "file";
    spec.file.filename = loop_->device();
    spec.file.direct = direct;
    auto r = FileNode::open(spec, pool_);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : nullptr;
  }

  TempDir dir_;
  io::BlockingPool pool_{2};
  std::unique_ptr<LoopDevice> loop_;
};

TEST_F(FileNodeBlockDeviceTest, ServesTheDevice) {
  auto n = open(false);
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->is_block_device());
  EXPECT_EQ(n->size(), kSize);
  EXPECT_EQ(n->info().request_alignment, 1u);
  EXPECT_TRUE(n->info().can_zero);
  EXPECT_FALSE(n->info().can_fast_zero);

  std::vector<std::byte> got(1000);
  ASSERT_TRUE(run_task(n->read(12345, got)).is_ok());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], pattern_byte(12345 + i)) << i;

  std::vector<std::byte> data(3000, std::byte{0x5c});
  ASSERT_TRUE(run_task(n->write(777, data, IoFlags::kFua)).is_ok());
  std::vector<std::byte> back(3000);
  ASSERT_TRUE(run_task(n->read(777, back)).is_ok());
  EXPECT_EQ(back, data);

  // Zeroes with unaligned edges (written) around an aligned middle (offloaded).
  ASSERT_TRUE(run_task(n->write_zeroes(1000, 1 << 20, IoFlags::kNone)).is_ok());
  ASSERT_TRUE(run_task(n->write_zeroes(2 << 20, 1 << 20, IoFlags::kMayTrim)).is_ok());
  std::vector<std::byte> z((1 << 20) + 2);
  ASSERT_TRUE(run_task(n->read(999, z)).is_ok());
  EXPECT_EQ(z.front(), data[999 - 777]);
  EXPECT_EQ(z.back(), pattern_byte(1000 + (1 << 20)));
  for (size_t i = 1; i + 1 < z.size(); ++i) ASSERT_EQ(z[i], std::byte{0}) << i;
  std::vector<std::byte> z2(1 << 20, std::byte{1});
  ASSERT_TRUE(run_task(n->read(2 << 20, z2)).is_ok());
  for (std::byte b : z2) ASSERT_EQ(b, std::byte{0});

  // No fast zero on block devices: the kernel might fall back to writing.
  EXPECT_EQ(run_task(n->write_zeroes(0, 4096, IoFlags::kFastZero)).code(), ENOTSUP);

  EXPECT_TRUE(run_task(n->discard(4 << 20, 1 << 20, IoFlags::kNone)).is_ok());
  EXPECT_TRUE(run_task(n->flush()).is_ok());
  Result<ExtentList> st = run_task(n->block_status(0, kSize));
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ(st.value(), (ExtentList{Extent{kSize, 0, 1}}));
}

TEST_F(FileNodeBlockDeviceTest, DirectIo) {
  auto n = open(true);
  ASSERT_TRUE(n);
  const uint32_t align = n->info().request_alignment;
  EXPECT_GE(align, 512u);
  io::AlignedBuffer buf = io::AlignedBuffer::allocate(8192 + 1);
  std::span<std::byte> odd = buf.span().subspan(1, 8192);
  std::fill(odd.begin(), odd.end(), std::byte{0x3d});
  ASSERT_TRUE(run_task(n->write(align * 4, odd, IoFlags::kNone)).is_ok());
  std::vector<std::byte> back(8192);
  ASSERT_TRUE(run_task(n->read(align * 4, back)).is_ok());
  EXPECT_EQ(back, std::vector<std::byte>(odd.begin(), odd.end()));
  std::vector<std::byte> misaligned(align);
  EXPECT_EQ(run_task(n->read(1, misaligned)).code(), EINVAL);
}

}  // namespace
}  // namespace blockcore
