// The bitmaps extension codec: directory entries and bitmap tables (see bitmap_directory.h).
#include "blockcore/qcow2/bitmap_directory.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/qcow2_format.h"

namespace blockcore::qcow2 {
namespace {

std::string num(uint64_t v) { return std::to_string(v); }

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

Status bad_entry(const BitmapDirEntry& e, const std::string& why) {
  return Status::invalid("bitmap '" + e.name + "' in the bitmap directory: " + why);
}

uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

}  // namespace

uint64_t bitmap_dir_entry_bytes(size_t name_bytes, size_t extra_bytes) {
  return (kBitmapDirEntryFixedBytes + name_bytes + extra_bytes + 7) & ~uint64_t{7};
}

uint64_t bitmap_directory_bytes(std::span<const BitmapDirEntry> entries) {
  uint64_t total = 0;
  for (const BitmapDirEntry& e : entries) {
    total += bitmap_dir_entry_bytes(e.name.size(), e.extra_data.size());
  }
  return total;
}

uint64_t bitmap_table_entries_for(uint64_t disk_size, uint64_t granularity,
                                  uint64_t cluster_size) {
  const uint64_t bits = div_round_up(disk_size, granularity);
  return div_round_up(div_round_up(bits, 8), cluster_size);
}

Status check_bitmap_dir_entry(const BitmapDirEntry& e, uint64_t cluster_size, uint64_t disk_size) {
  if (e.name.empty() || e.name.size() > kBitmapMaxNameBytes) {
    return Status::invalid("bitmap directory: a name of " + num(e.name.size()) +
                           " bytes (must be 1.." + num(kBitmapMaxNameBytes) + ")");
  }
  if (e.name.find('\0') != std::string::npos) return bad_entry(e, "the name contains a NUL byte");
  if (e.type != kBitmapTypeDirtyTracking) {
    return bad_entry(e, "type " + num(e.type) + " is not a dirty tracking bitmap (1)");
  }
  if (e.granularity_bits < kBitmapMinGranularityBits ||
      e.granularity_bits > kBitmapMaxGranularityBits) {
    return bad_entry(e, "granularity bits " + num(e.granularity_bits) + " out of range (" +
                            num(kBitmapMinGranularityBits) + ".." +
                            num(kBitmapMaxGranularityBits) + ")");
  }
  if (e.flags & ~kBitmapKnownFlags) {
    return bad_entry(e, "reserved flags are set (" + hex(e.flags) + ")");
  }
  if (e.table_offset == 0 || e.table_offset % cluster_size != 0 ||
      e.table_offset > kBitmapTableOffsetMask) {
    return bad_entry(e, "bitmap table offset " + hex(e.table_offset) +
                            " is not a valid cluster-aligned offset");
  }
  if (e.table_size == 0 || e.table_size > kBitmapMaxTableEntries ||
      uint64_t{e.table_size} * cluster_size > kBitmapMaxDataBytes) {
    return bad_entry(e, "bitmap table size " + num(e.table_size) + " out of range");
  }
  const uint64_t covered = (uint64_t{e.table_size} * cluster_size * 8) << e.granularity_bits;
  if (!e.in_use() && disk_size > covered) {
    return bad_entry(e, "its table of " + num(e.table_size) +
                            " entries is too small for the virtual size " + num(disk_size));
  }
  return Status::ok();
}

Result<std::vector<BitmapDirEntry>> parse_bitmap_directory(std::span<const std::byte> dir,
                                                           uint32_t expected,
                                                           uint64_t cluster_size,
                                                           uint64_t disk_size) {
  if (expected == 0 || expected > kMaxBitmaps) {
    return Status::invalid("bitmap directory: " + num(expected) + " bitmaps (must be 1.." +
                           num(kMaxBitmaps) + ")");
  }
  if (dir.size() > kMaxBitmapDirectoryBytes) {
    return Status::invalid("bitmap directory of " + num(dir.size()) + " bytes is too large");
  }
  std::vector<BitmapDirEntry> out;
  std::set<std::string> names;
  uint64_t pos = 0;
  while (pos < dir.size()) {
    if (out.size() == expected) {
      return Status::invalid("bitmap directory: more entries than the " + num(expected) +
                             " the header announces");
    }
    if (dir.size() - pos < kBitmapDirEntryFixedBytes) {
      return Status::invalid("bitmap directory: entry " + num(out.size()) +
                             " is cut short by the end of the directory");
    }
    const std::byte* p = dir.data() + pos;
    BitmapDirEntry e;
    e.table_offset = load_be64(p);
    e.table_size = load_be32(p + 8);
    e.flags = load_be32(p + 12);
    e.type = std::to_integer<uint8_t>(p[16]);
    e.granularity_bits = std::to_integer<uint8_t>(p[17]);
    const uint16_t name_size = load_be16(p + 18);
    const uint32_t extra_size = load_be32(p + 20);
    const uint64_t size = bitmap_dir_entry_bytes(name_size, extra_size);
    if (size > dir.size() - pos) {
      return Status::invalid("bitmap directory: entry " + num(out.size()) +
                             " is cut short by the end of the directory");
    }
    const std::byte* extra = p + kBitmapDirEntryFixedBytes;
    e.extra_data.assign(extra, extra + extra_size);
    e.name.assign(reinterpret_cast<const char*>(extra + extra_size), name_size);
    for (uint64_t i = kBitmapDirEntryFixedBytes + extra_size + name_size; i < size; ++i) {
      if (p[i] != std::byte{0}) return bad_entry(e, "nonzero padding after the name");
    }
    FLEECE_RETURN_IF_ERROR(check_bitmap_dir_entry(e, cluster_size, disk_size));
    if (!names.insert(e.name).second) {
      return Status::invalid("bitmap directory: the name '" + e.name + "' appears twice");
    }
    out.push_back(std::move(e));
    pos += size;
  }
  if (out.size() != expected) {
    return Status::invalid("bitmap directory holds " + num(out.size()) +
                           " entries, the header announces " + num(expected));
  }
  return out;
}

Result<std::vector<std::byte>> serialize_bitmap_directory(std::span<const BitmapDirEntry> entries,
                                                          uint64_t cluster_size,
                                                          uint64_t disk_size) {
  if (entries.empty() || entries.size() > kMaxBitmaps) {
    return Status::invalid("bitmap directory: cannot write " + num(entries.size()) + " bitmaps");
  }
  const uint64_t total = bitmap_directory_bytes(entries);
  if (total > kMaxBitmapDirectoryBytes) {
    return Status::invalid("bitmap directory of " + num(total) + " bytes is too large");
  }
  std::vector<std::byte> out(total);
  std::set<std::string> names;
  uint64_t pos = 0;
  for (const BitmapDirEntry& e : entries) {
    FLEECE_RETURN_IF_ERROR(check_bitmap_dir_entry(e, cluster_size, disk_size));
    if (e.extra_data.size() > UINT32_MAX) return bad_entry(e, "extra data too large");
    if (!names.insert(e.name).second) {
      return Status::invalid("bitmap directory: the name '" + e.name + "' appears twice");
    }
    std::byte* p = out.data() + pos;
    store_be64(p, e.table_offset);
    store_be32(p + 8, e.table_size);
    store_be32(p + 12, e.flags);
    p[16] = std::byte{e.type};
    p[17] = std::byte{e.granularity_bits};
    store_be16(p + 18, static_cast<uint16_t>(e.name.size()));
    store_be32(p + 20, static_cast<uint32_t>(e.extra_data.size()));
    std::byte* extra = p + kBitmapDirEntryFixedBytes;
    if (!e.extra_data.empty()) std::memcpy(extra, e.extra_data.data(), e.extra_data.size());
    std::memcpy(extra + e.extra_data.size(), e.name.data(), e.name.size());
    pos += bitmap_dir_entry_bytes(e.name.size(), e.extra_data.size());
  }
  return out;
}

Result<std::vector<uint64_t>> parse_bitmap_table(std::span<const std::byte> raw,
                                                 uint64_t cluster_size, const std::string& name) {
  std::vector<uint64_t> out(raw.size() / 8);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint64_t e = load_be64(raw.data() + i * 8);
    const uint64_t off = e & kBitmapTableOffsetMask;
    std::string bad;
    if (e & kBitmapTableReservedMask) {
      bad = "reserved bits are set";
    } else if (off != 0 && (e & kBitmapTableAllOnes)) {
      bad = "it has both a data offset and the all-ones flag";
    } else if (off % cluster_size != 0) {
      bad = "data offset " + hex(off) + " is not cluster aligned";
    }
    if (!bad.empty()) {
      return Status::invalid("bitmap '" + name + "': table entry " + num(i) + " (" + hex(e) +
                             "): " + bad);
    }
    out[i] = e;
  }
  return out;
}

std::vector<std::byte> serialize_bitmap_table(std::span<const uint64_t> entries, uint64_t bytes) {
  std::vector<std::byte> out(std::max<uint64_t>(bytes, entries.size() * 8));
  for (size_t i = 0; i < entries.size(); ++i) store_be64(out.data() + i * 8, entries[i]);
  return out;
}

Status check_new_bitmap_constraints(const std::string& name, uint64_t granularity,
                                    uint64_t disk_size, uint64_t cluster_size) {
  if (granularity > (1ull << kBitmapMaxGranularityBits)) {
    return Status::invalid("Granularity exceeds maximum (" +
                           num(1ull << kBitmapMaxGranularityBits) + " bytes)");
  }
  if (granularity < (1ull << kBitmapMinGranularityBits) || (granularity & (granularity - 1))) {
    return Status::invalid("Granularity is under minimum (" +
                           num(1ull << kBitmapMinGranularityBits) + " bytes) or not a power of 2");
  }
  const uint64_t data_bytes = div_round_up(div_round_up(disk_size, granularity), 8);
  if (data_bytes > kBitmapMaxDataBytes ||
      data_bytes > uint64_t{kBitmapMaxTableEntries} * cluster_size) {
    return Status::invalid("Too much space will be occupied by the bitmap. Use larger granularity");
  }
  if (name.size() > kBitmapMaxNameBytes) {
    return Status::invalid("Name length exceeds maximum (" + num(kBitmapMaxNameBytes) +
                           " characters)");
  }
  return Status::ok();
}

}  // namespace blockcore::qcow2
