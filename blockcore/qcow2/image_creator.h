// Creating new qcow2 images: checking the options, laying out the initial metadata
// (header cluster, refcount table, refcount blocks, empty L1 table) as a list of writes,
// and writing them to a new file. Used for fleecing overlays, backup targets and tests;
// the images pass `qemu-img check` and open in QEMU.
// Threading: layout functions are pure; create_image_file() blocks on file I/O (control
// path only, never an I/O thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/qcow2/qcow2_format.h"

namespace blockcore::qcow2 {

struct CreateOptions {
  uint64_t size = 0;                  // virtual disk size, a multiple of 512
  uint32_t cluster_bits = 16;         // 9..21
  uint32_t version = 3;               // 2 (compat=0.10) or 3 (compat=1.1)
  uint32_t refcount_order = 4;        // 0..6 (v2: 4)
  bool extended_l2 = false;           // v3, cluster_bits >= 14
  bool lazy_refcounts = false;        // v3
  std::string backing_file;           // empty: none
  std::optional<std::string> backing_format;
  std::optional<std::string> data_file;  // external data file name (v3)
  bool data_file_raw = false;            // needs data_file, no backing file
  CompressionType compression = CompressionType::kDeflate;  // zstd needs v3
};

// One write of the initial image: `bytes` at file offset `offset`.
struct ImageWrite {
  uint64_t offset = 0;
  std::vector<std::byte> bytes;
};

// EINVAL naming the offending option for every combination QEMU refuses.
Status check_create_options(const CreateOptions& o);

// The complete initial image as writes in ascending offset order, whole clusters each:
// cluster 0 (header, extensions, backing file name), the refcount table, the refcount
// blocks (every metadata cluster at refcount 1) and the zeroed L1 table. The file's
// size is the end of the last write.
Result<std::vector<ImageWrite>> layout_new_image(const CreateOptions& o);

// Creates `path` (which must not exist) with the layout above and fsyncs it; on failure
// removes the file again. An external data file is not created here.
Status create_image_file(const std::string& path, const CreateOptions& o);

}  // namespace blockcore::qcow2
