// The qcow2 internal snapshot table: decoding and validating the entries (so the driver
// knows which clusters snapshots still reference and how big the table is) and encoding
// them back byte for byte. fleeced does not create or apply internal snapshots; it keeps
// the table intact when it rewrites metadata.
// Threading: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/qcow2/geometry.h"

namespace blockcore::qcow2 {

// Fixed part of an entry, before the extra data, id and name.
inline constexpr uint32_t kSnapshotEntryFixedBytes = 40;
// Extra data QEMU accepts in one entry (QCOW_MAX_SNAPSHOT_EXTRA_DATA).
inline constexpr uint32_t kMaxSnapshotExtraData = 1024;
// The largest table we read: QEMU's QCOW_MAX_SNAPSHOTS_SIZE, 1 KiB per snapshot for its
// 65536 snapshots (64 MiB). Entries are normally ~100 bytes, so this is never reached by
// a real image; a hostile nb_snapshots cannot make us read more.
inline constexpr uint64_t kMaxSnapshotTableBytes = 64ull << 20;

struct SnapshotEntry {
  uint64_t l1_table_offset = 0;
  uint32_t l1_size = 0;           // entries
  std::string id, name;
  uint64_t disk_size = 0;         // from the extra data if present, else 0 (unknown)
  // The exact on-disk bytes of the entry (fixed part, extra data, id, name), without the
  // zero padding to 8 that follows it; write back with serialize_snapshot_table().
  std::vector<std::byte> raw;
};

// Upper bound of the bytes `nb_snapshots` entries can occupy (each with the largest
// extra data, id and name), capped at kMaxSnapshotTableBytes: read this much (or to the
// end of the file) before parse_snapshot_table().
uint64_t max_snapshot_table_bytes(uint32_t nb_snapshots);

// Decodes `nb_snapshots` entries from the start of `bytes` (the table read from the
// header's snapshots_offset; may be longer than the table). EINVAL with the entry's
// number when an entry does not fit in `bytes` or in kMaxSnapshotTableBytes, has extra
// data over kMaxSnapshotExtraData, an L1 offset that is not cluster aligned (or 0 with
// a non-empty L1), or an L1 table larger than kMaxL1Bytes.
Result<std::vector<SnapshotEntry>> parse_snapshot_table(std::span<const std::byte> bytes,
                                                        uint32_t nb_snapshots,
                                                        const Geometry& g);

// Bytes the table of `entries` occupies on disk (each entry padded to 8).
uint64_t snapshot_table_bytes(std::span<const SnapshotEntry> entries);

// The on-disk table: each entry's raw bytes padded with zeroes to a multiple of 8.
std::vector<std::byte> serialize_snapshot_table(std::span<const SnapshotEntry> entries);

}  // namespace blockcore::qcow2
