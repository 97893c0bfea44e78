// libFuzzer target: arbitrary bytes as a qcow2 image file through the driver's open path
// (header, extensions, L1 table, refcount table, snapshot table, metadata load), then
// reads of a few ranges and block status over the opened image. The image lives in an
// in-memory node; backing files are not followed (backing: null) and an external data
// file, when the header asks for one, is another in-memory node — so no input makes the
// target open a real file. Opened read-only: nothing is written back.
// Any crash, sanitizer report, hang or absurd allocation (libFuzzer's -malloc_limit_mb)
// is a bug. Run: qcow2_open_fuzz -runs=20000 -max_len=98304 tests/fuzz/corpus/qcow2_open
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "blockcore/base/big_endian.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/node_factory.h"
#include "blockcore/node_spec.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "blockcore/qcow2/qcow2_node.h"
#include "spdlog/spdlog.h"
#include "testing/memory_node.h"
#include "testing/run_task.h"

namespace {

using blockcore::BlockNodePtr;

// Guest reads are bounded so a huge virtual size costs nothing: at most this many bytes
// per read, at offsets derived from the input.
constexpr uint64_t kMaxRead = 256 << 10;
// Block status is asked over at most this much (a 512-byte-cluster image maps 64 MiB
// with 131072 entries).
constexpr uint64_t kMaxStatus = 64ull << 20;

std::shared_ptr<fleece_test::MemoryNode> memory_file(const char* name, const uint8_t* data,
                                                     size_t size, uint64_t node_size) {
  auto node = std::make_shared<fleece_test::MemoryNode>(
      name, fleece_test::MemoryNode::default_info(node_size));
  if (size > 0) {
    std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    (void)fleece_test::run_task(node->write(0, bytes, blockcore::IoFlags{}));
  }
  return node;
}

// What the input's header says about the external data file (v3 incompatible features).
bool wants_data_file(const uint8_t* data, size_t size) {
  if (size < 80) return false;
  const uint32_t version = blockcore::load_be32(reinterpret_cast<const std::byte*>(data) + 4);
  if (version < 3) return false;
  const uint64_t incompat = blockcore::load_be64(reinterpret_cast<const std::byte*>(data) + 72);
  return (incompat & blockcore::qcow2::kIncompatDataFile) != 0;
}

void exercise(blockcore::BlockNode& node, const uint8_t* data, size_t size) {
  const uint64_t disk = node.size();
  if (disk == 0) return;
  // Offsets: the start, the end, and a few taken from the input's last bytes.
  std::vector<uint64_t> offsets = {0, disk > kMaxRead ? disk - kMaxRead : 0};
  for (size_t i = 0; i + 8 <= std::min<size_t>(size, 32); i += 8) {
    uint64_t v;
    std::memcpy(&v, data + size - 8 - i, 8);
    offsets.push_back(v % disk);
  }
  std::vector<std::byte> buf;
  for (uint64_t off : offsets) {
    const uint64_t len = std::min<uint64_t>(kMaxRead, disk - off);
    buf.resize(len);
    (void)fleece_test::run_task(node.read(off, buf));
    (void)fleece_test::run_task(node.block_status(off, std::min<uint64_t>(disk - off, kMaxStatus)));
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static blockcore::io::BlockingPool pool(0);  // inline: no threads
  auto file = memory_file("image", data, size, size);
  blockcore::NodeSpec spec;
  spec.node_name = "fuzz";
  spec.driver = "qcow2";
  spec.read_only = true;
  spec.origin = "fuzz";
  spec.backing_mode = blockcore::BackingMode::kNone;
  blockcore::OpenRequest req{spec, pool, file};
  if (wants_data_file(data, size)) {
    // A data file as big as the image: guest reads through it hit real bytes.
    req.data_file_child = memory_file("data", data, size, std::max<size_t>(size, 4096));
  }
  blockcore::Result<BlockNodePtr> node = blockcore::qcow2::open_qcow2_node(req);
  if (node.is_ok()) exercise(*node.value(), data, size);
  return 0;
}
