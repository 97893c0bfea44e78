// Helpers for the Qcow2Node tests: opening images made by qemu-img through FileNode and
// open_qcow2_node, a byte model of the guest disk to check content against, running
// BlockNode calls synchronously, and checking a closed image with qemu-img.
// Threading: test-only; a Fixture is used from the test thread (its nodes may be driven
// from other threads by the test).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/big_endian.h"
#include "blockcore/block_node.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/node_factory.h"
#include "blockcore/qcow2/qcow2_node.h"
#include "qcow2_test_util.h"
#include "testing/run_task.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2::node_test {

using fleece_test::run_task;
using fleece_test::shell;
using fleece_test::ShellResult;
using fleece_test::sq;

#define FLEECE_REQUIRE_QEMU()                                       \
  do {                                                              \
    if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "no qemu"; \
  } while (0)

// Deterministic bytes for request `seed`.
inline std::vector<std::byte> pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    v[i] = static_cast<std::byte>((x >> 16) & 0xff);
  }
  return v;
}

// The guest disk as the test expects it.
struct Model {
  std::vector<std::byte> bytes;
  explicit Model(uint64_t size) : bytes(size) {}
  void write(uint64_t off, std::span<const std::byte> data) {
    std::memcpy(bytes.data() + off, data.data(), data.size());
  }
  void zero(uint64_t off, uint64_t len) { std::memset(bytes.data() + off, 0, len); }
  std::span<const std::byte> at(uint64_t off, uint64_t len) const {
    return std::span<const std::byte>(bytes).subspan(off, len);
  }
  void save_raw(const std::string& path) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
};

inline ShellResult qemu_img(const std::string& args) { return shell("qemu-img " + args); }

// Creates a qcow2 image; `opts` is qemu-img's -o list (may be empty).
inline void create_image(const std::string& path, uint64_t size, const std::string& opts = "",
                         const std::string& extra = "") {
  std::string cmd = "create -q -f qcow2 " + extra + " ";
  if (!opts.empty()) cmd += "-o " + sq(opts) + " ";
  cmd += sq(path) + " " + std::to_string(size);
  ShellResult r = qemu_img(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

inline void qemu_io(const std::string& path, const std::string& cmds, const std::string& fmt = "qcow2") {
  ShellResult r = shell("qemu-io -f " + fmt + " " + cmds + " " + sq(path));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(r.output.find("error"), std::string::npos) << r.output;
  ASSERT_EQ(r.output.find("failed"), std::string::npos) << r.output;
}

// qemu-img check: exit 0, no leaks, no errors.
inline void expect_check_clean(const std::string& path) {
  ShellResult r = qemu_img("check " + sq(path));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("leaked"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("ERROR"), std::string::npos) << r.output;
}

// qemu-img compare of the image's guest content against the model.
inline void expect_content(const std::string& path, const Model& m, const std::string& opts = "") {
  const std::string raw = path + ".model.raw";
  m.save_raw(raw);
  ShellResult r = qemu_img("compare -q " + opts + " -f qcow2 -F raw " + sq(path) + " " + sq(raw));
  EXPECT_EQ(r.exit_code, 0) << "image differs from the model: " << r.output
                            << shell("qemu-img compare -f qcow2 -F raw " + sq(path) + " " + sq(raw)).output;
  std::remove(raw.c_str());
}

struct Fixture {
  fleece_test::TempDir dir;
  io::BlockingPool pool;
  explicit Fixture(unsigned threads = 2) : pool(threads) {}
  std::string path(const std::string& name) const { return dir.file(name); }

  Result<BlockNodePtr> try_open(const std::string& file, bool read_only = false,
                                BackingMode backing = BackingMode::kFromImage,
                                BlockNodePtr backing_child = nullptr) {
    NodeSpec fs;
    fs.driver = "file";
    fs.read_only = read_only;
    fs.file.filename = file;
    Result<std::shared_ptr<FileNode>> f = FileNode::open(fs, pool);
    if (!f.is_ok()) return f.status();
    NodeSpec qs;
    qs.node_name = "q";
    qs.driver = "qcow2";
    qs.read_only = read_only;
    qs.backing_mode = backing;
    OpenRequest r{qs, pool, f.value()};
    r.backing_child = backing_child;
    return open_qcow2_node(r);
  }
  BlockNodePtr open(const std::string& file, bool read_only = false) {
    Result<BlockNodePtr> n = try_open(file, read_only);
    EXPECT_TRUE(n.is_ok()) << n.status().to_string();
    return n.is_ok() ? n.value() : nullptr;
  }
};

inline Status write(BlockNode& n, uint64_t off, std::span<const std::byte> data,
                    IoFlags f = IoFlags::kNone) {
  return run_task(n.write(off, data, f));
}
inline Status zero(BlockNode& n, uint64_t off, uint64_t len, IoFlags f = IoFlags::kNone) {
  return run_task(n.write_zeroes(off, len, f));
}
inline Status discard(BlockNode& n, uint64_t off, uint64_t len) {
  return run_task(n.discard(off, len, IoFlags::kNone));
}
inline Status flush(BlockNode& n) { return run_task(n.flush()); }
inline std::vector<std::byte> read(BlockNode& n, uint64_t off, size_t len, Status* st = nullptr) {
  std::vector<std::byte> buf(len);
  Status s = run_task(n.read(off, buf));
  if (st) *st = s;
  EXPECT_TRUE(st || s.is_ok()) << s.to_string();
  return buf;
}

// Full extent map of [off, off+len), asking again where block_status stops short.
inline ExtentList status(BlockNode& n, uint64_t off, uint64_t len) {
  ExtentList all;
  while (len > 0) {
    Result<ExtentList> r = run_task(n.block_status(off, len));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    if (!r.is_ok() || r.value().empty()) break;
    for (const Extent& e : r.value()) {
      append_extent(all, e);
      off += e.length;
      len -= e.length;
    }
  }
  return all;
}

// The extent covering byte `at` of a list starting at `base`.
inline Extent extent_at(const ExtentList& l, uint64_t base, uint64_t at) {
  for (const Extent& e : l) {
    if (at < base + e.length) return e;
    base += e.length;
  }
  return Extent{0, 0xffff, 0xffff};
}

// Compares node content with the model over [off, off+len).
inline void expect_reads(BlockNode& n, const Model& m, uint64_t off, uint64_t len) {
  std::vector<std::byte> got = read(n, off, len);
  auto want = m.at(off, len);
  if (!std::equal(got.begin(), got.end(), want.begin())) {
    size_t i = 0;
    while (got[i] == want[i]) ++i;
    ADD_FAILURE() << "content differs at guest offset " << off + i;
  }
}

// Header fields read straight from the file.
struct RawHeader {
  uint32_t version;
  uint32_t cluster_bits;
  uint64_t l1_offset;
  uint32_t l1_size;
  uint64_t refcount_table_offset;
  uint64_t incompatible;
};
inline RawHeader raw_header(const std::string& path) {
  std::vector<std::byte> h = fleece_test::read_file(path, 0, 104);
  RawHeader r{};
  r.version = load_be32(h.data() + 4);
  r.cluster_bits = load_be32(h.data() + 20);
  r.l1_size = load_be32(h.data() + 36);
  r.l1_offset = load_be64(h.data() + 40);
  r.refcount_table_offset = load_be64(h.data() + 48);
  r.incompatible = r.version >= 3 ? load_be64(h.data() + 72) : 0;
  return r;
}
inline uint64_t read_be64_at(const std::string& path, uint64_t off) {
  return load_be64(fleece_test::read_file(path, off, 8).data());
}
inline void write_be64_at(const std::string& path, uint64_t off, uint64_t v) {
  std::byte b[8];
  store_be64(b, v);
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(off));
  f.write(reinterpret_cast<const char*>(b), 8);
}
// The file offset of the (standard) L2 entry of guest offset `guest`.
inline uint64_t l2_entry_offset(const std::string& path, uint64_t guest) {
  RawHeader h = raw_header(path);
  const uint64_t l2_bits = h.cluster_bits - 3;
  const uint64_t l1e = read_be64_at(path, h.l1_offset + 8 * (guest >> (h.cluster_bits + l2_bits)));
  const uint64_t l2 = l1e & 0x00fffffffffffe00ull;
  if (l2 == 0) return 0;
  return l2 + 8 * ((guest >> h.cluster_bits) & ((1ull << l2_bits) - 1));
}

}  // namespace blockcore::qcow2::node_test
