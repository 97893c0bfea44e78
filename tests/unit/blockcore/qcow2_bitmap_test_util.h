// Helpers for the persistent-bitmap tests: dirty ranges as fleece holds them and as QEMU
// reports them (qemu-nbd -B + nbdinfo --map), the granules a list of writes dirties, the
// bitmaps qemu-img info lists, and creating bitmaps through a node.
// Threading: test-only, used from the test thread.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "blockcore/bitmap/dirty_bitmap.h"
#include "blockcore/block_node.h"
#include "qcow2_node_test_util.h"

namespace blockcore::qcow2::bitmap_test {

using node_test::shell;
using node_test::sq;

// Byte ranges [offset, offset + length), merged, sorted.
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

inline std::string to_string(const Ranges& r) {
  std::ostringstream out;
  for (const auto& [off, len] : r) out << "[" << off << "+" << len << "] ";
  return out.str();
}

inline void add_range(Ranges& r, uint64_t off, uint64_t len) {
  if (!r.empty() && r.back().first + r.back().second == off) {
    r.back().second += len;
  } else {
    r.emplace_back(off, len);
  }
}

// What fleece's memory copy says is dirty.
inline Ranges dirty_ranges(const DirtyBitmap& b) {
  Ranges out;
  const uint64_t end = b.disk_size();
  for (uint64_t off = 0; off < end;) {
    auto [start, len] = b.next_dirty_range(off, end);
    if (len == 0) break;
    add_range(out, start, len);
    off = start + len;
  }
  return out;
}

// The granules `writes` touch, as byte ranges clipped to the disk.
inline Ranges granules_of(std::vector<std::pair<uint64_t, uint64_t>> writes, uint64_t granularity,
                          uint64_t disk_size) {
  std::map<uint64_t, bool> granules;
  for (const auto& [off, len] : writes) {
    for (uint64_t g = off / granularity; g * granularity < off + len; ++g) granules[g] = true;
  }
  Ranges out;
  for (const auto& [g, _] : granules) {
    const uint64_t start = g * granularity;
    add_range(out, start, std::min(granularity, disk_size - start));
  }
  return out;
}

// The dirty ranges QEMU serves for bitmap `name` of the qcow2 image (or container) at
// `path`: qemu-nbd -B NAME, read with nbdinfo --map=qemu:dirty-bitmap:NAME.
inline Ranges qemu_dirty_ranges(const std::string& path, const std::string& name) {
  static std::atomic<int> n{0};
  const std::string base = path + ".nbd" + std::to_string(n++);
  const std::string sock = base + ".sock";
  const std::string pid = base + ".pid";
  // qemu-nbd exits after its one client; wait for it, so its image lock is gone.
  const std::string cmd = "qemu-nbd -r -f qcow2 -B " + sq(name) + " --fork --pid-file=" + sq(pid) +
                          " --socket=" + sq(sock) + " " + sq(path) +
                          " && nbdinfo --map=qemu:dirty-bitmap:" + name + " " +
                          sq("nbd+unix:///?socket=" + sock) + "; rc=$?; while kill -0 $(cat " +
                          sq(pid) + " 2>/dev/null) 2>/dev/null; do sleep 0.01; done; exit $rc";
  auto r = shell(cmd);
  EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  std::remove(sock.c_str());
  std::remove(pid.c_str());
  Ranges out;
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    uint64_t off = 0, len = 0;
    int type = 0;
    if (!(l >> off >> len >> type)) continue;
    if (type & 1) add_range(out, off, len);
  }
  return out;
}

// One bitmap as `qemu-img info` lists it.
struct QemuBitmapInfo {
  std::string name;
  uint64_t granularity = 0;
  std::vector<std::string> flags;
  bool has(const std::string& f) const {
    return std::find(flags.begin(), flags.end(), f) != flags.end();
  }
};

inline std::vector<QemuBitmapInfo> qemu_bitmaps(const std::string& path, bool force_share = false) {
  auto r = shell(std::string("qemu-img info --output=json ") + (force_share ? "-U " : "") + sq(path));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<QemuBitmapInfo> out;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')), nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "qemu-img info output is not JSON: " << r.output;
    return out;
  }
  auto data = j["format-specific"]["data"];
  if (!data.contains("bitmaps")) return out;
  for (const auto& b : data["bitmaps"]) {
    QemuBitmapInfo i;
    i.name = b["name"].get<std::string>();
    i.granularity = b["granularity"].get<uint64_t>();
    for (const auto& f : b["flags"]) i.flags.push_back(f.get<std::string>());
    out.push_back(i);
  }
  return out;
}

inline const QemuBitmapInfo* find_info(const std::vector<QemuBitmapInfo>& v, const std::string& name) {
  for (const QemuBitmapInfo& i : v) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

// Creates a bitmap of node `n` through its NodeBitmaps (the path every caller takes).
inline DirtyBitmapPtr add_bitmap(BlockNode& n, const std::string& name, uint64_t granularity = 65536,
                                 bool persistent = true, bool disabled = false) {
  BitmapOptions o;
  o.name = name;
  o.granularity = granularity;
  o.persistent = persistent;
  o.disabled = disabled;
  Result<DirtyBitmapPtr> b = fleece_test::run_task(n.bitmaps().create(o, n.size()));
  EXPECT_TRUE(b.is_ok()) << b.status().to_string();
  return b.is_ok() ? b.value() : nullptr;
}

// Base of the bitmap test fixtures: skips without QEMU's tools, runs shell commands.
class QemuBitmapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fleece_test::have_qemu_tools() || !fleece_test::have_program("qemu-nbd") ||
        !fleece_test::have_program("nbdinfo")) {
      GTEST_SKIP() << "needs qemu-img, qemu-io, qemu-nbd and nbdinfo";
    }
  }
  void run(const std::string& cmd) {
    auto r = shell(cmd);
    ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  }
};

}  // namespace blockcore::qcow2::bitmap_test
