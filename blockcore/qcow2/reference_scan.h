// The reference scan: walks every metadata structure of a qcow2 image and counts, for
// each host cluster of the image file, how many references the metadata holds — what
// `qemu-img check` computes before it compares against the stored refcounts (QEMU's
// calculate_refcounts). For an image QEMU calls clean, refs[i] equals the stored
// refcount of every cluster i; a lower stored count is corruption, a higher one a leak.
//
// Counted: the header cluster (and the crypto header range, if any); the active L1
// table; each L2 table once per L1 entry (active and every snapshot's) that refers to
// it; each data cluster once per L2 entry referring to it, for every visit of its L2
// table (normal clusters and zero clusters that keep a host offset; not with an
// external data file, where data lives in the other file); every host cluster the byte
// range of a compressed cluster touches; the refcount table and each refcount block;
// the snapshot table and each snapshot's L1 table; and, whenever the header has a
// bitmaps extension (also with autoclear bit 0 clear, when QEMU ignores it: the bitmap
// store still refers to those clusters), the bitmap directory, each bitmap table and
// each bitmap data cluster.
//
// Hostile input: every table is bounded by the file size and QEMU's limits before it
// is read; references outside the file, misaligned offsets, reserved bits and broken
// entries become sentences in `problems` (at most kMaxReportedProblems of them, then a
// count of the rest) and are not counted. Only an I/O error fails the scan.
//
// Threading: a pure scan of caller-owned data; not thread-safe; called at open before
// the image is used (nothing may write the file meanwhile).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "blockcore/block_node.h"
#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "blockcore/qcow2/snapshot_table.h"

namespace blockcore::qcow2 {

// Problems beyond this many are summarized in one last sentence.
inline constexpr size_t kMaxReportedProblems = 1000;

// For every host cluster of the image file, how many references the metadata holds.
struct ReferenceScan {
  // Index = host cluster index; covers the whole file (ceil(file size / cluster size)).
  // References outside the file are problems, not counted: a cluster at or past
  // refs.size() has no reference.
  std::vector<uint32_t> refs;
  // Corruption found, each a sentence; empty for an image QEMU calls clean.
  std::vector<std::string> problems;
  uint64_t l2_tables = 0;      // distinct L2 tables read (a shared table once)
  uint64_t data_clusters = 0;  // L2 entries with a host cluster or compressed data, in
                               // those tables (also counted with an external data file)
};

// Scans the image in `file` described by `h`/`g`. `active_l1` holds the active L1
// entries as read from h.l1_table_offset (native byte order), `refcount_table` the
// refcount table entries (native byte order), `snapshots` the parsed snapshot table.
// Fails only on I/O errors (and EFBIG for a file with more than INT32_MAX clusters,
// QEMU's limit for a check).
Task<Result<ReferenceScan>> scan_references(BlockNode& file, const Header& h, const Geometry& g,
                                            std::span<const uint64_t> active_l1,
                                            std::span<const uint64_t> refcount_table,
                                            std::span<const SnapshotEntry> snapshots);

}  // namespace blockcore::qcow2
