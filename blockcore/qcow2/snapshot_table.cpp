// Decoding and encoding of the qcow2 snapshot table (see snapshot_table.h).
#include "blockcore/qcow2/snapshot_table.h"

#include <algorithm>

#include "blockcore/base/big_endian.h"

namespace blockcore::qcow2 {
namespace {

uint64_t align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

Status bad_entry(uint32_t i, const std::string& what) {
  return Status::invalid("qcow2 snapshot table: entry " + std::to_string(i) + ": " + what);
}

}  // namespace

uint64_t max_snapshot_table_bytes(uint32_t nb_snapshots) {
  const uint64_t worst_entry =
      align8(kSnapshotEntryFixedBytes + kMaxSnapshotExtraData + 2 * 0xffffull);
  return std::min<uint64_t>(uint64_t{nb_snapshots} * worst_entry, kMaxSnapshotTableBytes);
}

Result<std::vector<SnapshotEntry>> parse_snapshot_table(std::span<const std::byte> bytes,
                                                        uint32_t nb_snapshots,
                                                        const Geometry& g) {
  if (nb_snapshots > kMaxSnapshots) {
    return Status::invalid("qcow2 snapshot table: " + std::to_string(nb_snapshots) +
                           " snapshots, more than " + std::to_string(kMaxSnapshots));
  }
  const uint64_t limit = std::min<uint64_t>(bytes.size(), kMaxSnapshotTableBytes);
  std::vector<SnapshotEntry> entries;
  uint64_t off = 0;
  for (uint32_t i = 0; i < nb_snapshots; ++i) {
    off = align8(off);
    if (off > limit || limit - off < kSnapshotEntryFixedBytes) {
      return bad_entry(i, "runs past the end of the table (" + std::to_string(limit) +
                              " bytes)");
    }
    const std::byte* p = bytes.data() + off;
    SnapshotEntry e;
    e.l1_table_offset = load_be64(p);
    e.l1_size = load_be32(p + 8);
    const uint16_t id_len = load_be16(p + 12);
    const uint16_t name_len = load_be16(p + 14);
    const uint32_t extra = load_be32(p + 36);
    if (extra > kMaxSnapshotExtraData) {
      return bad_entry(i, "extra data of " + std::to_string(extra) + " bytes, more than " +
                              std::to_string(kMaxSnapshotExtraData));
    }
    const uint64_t len = uint64_t{kSnapshotEntryFixedBytes} + extra + id_len + name_len;
    if (limit - off < len) {
      return bad_entry(i, "its " + std::to_string(len) + " bytes run past the end of the "
                              "table (" + std::to_string(limit) + " bytes)");
    }
    if (e.l1_table_offset % g.cluster_size != 0) {
      return bad_entry(i, "L1 table offset " + std::to_string(e.l1_table_offset) +
                              " is not cluster aligned");
    }
    if (e.l1_size != 0 && e.l1_table_offset == 0) {
      return bad_entry(i, "L1 table at offset 0");
    }
    if (uint64_t{e.l1_size} * 8 > kMaxL1Bytes) {
      return bad_entry(i, "L1 table of " + std::to_string(e.l1_size) + " entries is too large");
    }
    if (e.l1_table_offset > static_cast<uint64_t>(INT64_MAX) - uint64_t{e.l1_size} * 8) {
      return bad_entry(i, "L1 table runs past the largest file offset");
    }
    if (extra >= 16) e.disk_size = load_be64(p + kSnapshotEntryFixedBytes + 8);
    const char* strings = reinterpret_cast<const char*>(p + kSnapshotEntryFixedBytes + extra);
    e.id.assign(strings, id_len);
    e.name.assign(strings + id_len, name_len);
    e.raw.assign(p, p + len);
    entries.push_back(std::move(e));
    off += len;
  }
  return entries;
}

uint64_t snapshot_table_bytes(std::span<const SnapshotEntry> entries) {
  uint64_t total = 0;
  for (const SnapshotEntry& e : entries) total += align8(e.raw.size());
  return total;
}

std::vector<std::byte> serialize_snapshot_table(std::span<const SnapshotEntry> entries) {
  std::vector<std::byte> out;
  out.reserve(snapshot_table_bytes(entries));
  for (const SnapshotEntry& e : entries) {
    out.insert(out.end(), e.raw.begin(), e.raw.end());
    out.resize(align8(out.size()));
  }
  return out;
}

}  // namespace blockcore::qcow2
