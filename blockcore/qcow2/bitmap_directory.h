// The on-disk structures of the qcow2 bitmaps extension (QEMU docs/interop/qcow2.rst,
// "Bitmaps"): the bitmap directory (one variable-length entry per bitmap) and the
// bitmap tables (one 64-bit entry per cluster of bitmap data), with the checks that
// keep hostile input out — QEMU's limits (block/qcow2-bitmap.c) and the spec's rules.
// Placement in the file (inside it, no overlap with other metadata) needs the image and
// is checked by the bitmap store, not here.
// Threading: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"

namespace blockcore::qcow2 {

// Directory entry limits (QEMU's BME_* constants).
inline constexpr uint32_t kBitmapMaxTableEntries = 0x8000000;
inline constexpr uint64_t kBitmapMaxDataBytes = 512ull << 20;  // table entries * cluster size
inline constexpr uint32_t kBitmapMinGranularityBits = 9;
inline constexpr uint32_t kBitmapMaxGranularityBits = 31;
inline constexpr uint32_t kBitmapMaxNameBytes = 1023;
inline constexpr uint64_t kBitmapDirEntryFixedBytes = 24;

// Directory entry flags.
inline constexpr uint32_t kBitmapFlagInUse = 1u << 0;
inline constexpr uint32_t kBitmapFlagAuto = 1u << 1;
inline constexpr uint32_t kBitmapFlagExtraDataCompatible = 1u << 2;
inline constexpr uint32_t kBitmapKnownFlags =
    kBitmapFlagInUse | kBitmapFlagAuto | kBitmapFlagExtraDataCompatible;
inline constexpr uint8_t kBitmapTypeDirtyTracking = 1;

// Bitmap table entries: host offset in bits 9-55; bit 0 = all ones when the offset is 0.
inline constexpr uint64_t kBitmapTableOffsetMask = 0x00fffffffffffe00ull;
inline constexpr uint64_t kBitmapTableReservedMask = 0xff000000000001feull;
inline constexpr uint64_t kBitmapTableAllOnes = 1;

struct BitmapDirEntry {
  uint64_t table_offset = 0;
  uint32_t table_size = 0;  // entries
  uint32_t flags = 0;
  uint8_t type = kBitmapTypeDirtyTracking;
  uint8_t granularity_bits = 16;
  std::string name;
  std::vector<std::byte> extra_data;  // kept verbatim

  bool in_use() const { return (flags & kBitmapFlagInUse) != 0; }
  bool auto_flag() const { return (flags & kBitmapFlagAuto) != 0; }
  bool extra_data_compatible() const { return (flags & kBitmapFlagExtraDataCompatible) != 0; }
  // Usable by software that knows no extra data: none, or marked compatible.
  bool usable() const { return extra_data.empty() || extra_data_compatible(); }
  uint64_t granularity() const { return 1ull << granularity_bits; }
  bool operator==(const BitmapDirEntry&) const = default;
};

// Bytes one entry takes in the directory: 24 + extra data + name, rounded up to 8.
uint64_t bitmap_dir_entry_bytes(size_t name_bytes, size_t extra_bytes);
uint64_t bitmap_directory_bytes(std::span<const BitmapDirEntry> entries);

// The number of table entries a bitmap needs: bitmap data of ceil(ceil(disk_size /
// granularity) / 8) bytes, in clusters (QEMU writes and expects exactly this many).
uint64_t bitmap_table_entries_for(uint64_t disk_size, uint64_t granularity, uint64_t cluster_size);

// The rules of one entry, for an image of `cluster_size` and virtual size `disk_size`
// (QEMU's check_dir_entry plus the spec's): table offset nonzero and cluster aligned,
// table size 1..kBitmapMaxTableEntries and at most kBitmapMaxDataBytes of data, type 1,
// granularity bits 9..31, no reserved flag, name 1..1023 bytes without NUL, and a
// consistent (not in_use) bitmap's table covering the whole disk. EINVAL naming the
// bitmap and the rule.
Status check_bitmap_dir_entry(const BitmapDirEntry& e, uint64_t cluster_size, uint64_t disk_size);

// Parses a directory of `dir.size()` bytes that must hold exactly `expected` entries
// (1..kMaxBitmaps), each passing check_bitmap_dir_entry, with zero padding, unique
// names, and nothing after the last entry. EINVAL with the reason otherwise.
Result<std::vector<BitmapDirEntry>> parse_bitmap_directory(std::span<const std::byte> dir,
                                                           uint32_t expected,
                                                           uint64_t cluster_size,
                                                           uint64_t disk_size);

// Encodes entries (1..kMaxBitmaps of them, each passing check_bitmap_dir_entry, names
// unique, at most kMaxBitmapDirectoryBytes in all). EINVAL otherwise.
Result<std::vector<std::byte>> serialize_bitmap_directory(std::span<const BitmapDirEntry> entries,
                                                          uint64_t cluster_size,
                                                          uint64_t disk_size);

// Decodes a bitmap table (raw.size() / 8 entries), checking every entry: no reserved
// bits, no all-ones flag beside an offset, offsets cluster aligned. EINVAL naming the
// bitmap and the entry otherwise.
Result<std::vector<uint64_t>> parse_bitmap_table(std::span<const std::byte> raw,
                                                 uint64_t cluster_size, const std::string& name);
// Encodes table entries, padded with zero entries to `bytes` (>= 8 * entries).
std::vector<std::byte> serialize_bitmap_table(std::span<const uint64_t> entries, uint64_t bytes);

// The limits QEMU applies before it stores a new persistent bitmap (its
// check_constraints_on_bitmap), with its messages: granularity 512 B..2 GiB, bitmap
// data within the table and size limits, name at most 1023 bytes. EINVAL.
Status check_new_bitmap_constraints(const std::string& name, uint64_t granularity,
                                    uint64_t disk_size, uint64_t cluster_size);

}  // namespace blockcore::qcow2
