// MetadataMap: where an image's metadata structures live in the image file (header,
// L1 tables, L2 tables, refcount table and blocks, snapshot table, bitmap directory,
// bitmap tables and bitmap data clusters),
// kept current as they are allocated and freed, so every write of metadata or of newly
// allocated data can first be checked not to land on another structure — the spirit of
// QEMU's default overlap check. A hit means the image's refcounts lie: the caller marks
// the image corrupt and stops writing.
// Threading: not thread-safe; used under the image's metadata lock.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "blockcore/base/status.h"

namespace blockcore::qcow2 {

enum class MetadataKind {
  kHeader,
  kActiveL1,
  kActiveL2,
  kRefcountTable,
  kRefcountBlock,
  kSnapshotTable,
  kInactiveL1,
  kBitmapDirectory,
  kBitmapTable,
  kBitmapData,
};
const char* metadata_kind_name(MetadataKind kind);

class MetadataMap {
 public:
  explicit MetadataMap(uint64_t cluster_size) : cluster_size_(cluster_size) {}

  // Fixed-extent structures (header, L1, refcount table, snapshot table and inactive
  // L1s, bitmap directory, bitmap tables); replaces nothing, so remove the old extent
  // first.
  void add_range(MetadataKind kind, uint64_t offset, uint64_t length);
  void remove_range(MetadataKind kind, uint64_t offset);
  // One-cluster structures: L2 tables, refcount blocks and bitmap data clusters.
  void add_cluster(MetadataKind kind, uint64_t offset);
  void remove_cluster(MetadataKind kind, uint64_t offset);
  bool has_cluster(MetadataKind kind, uint64_t offset) const;

  // EIO naming the structure when [offset, offset+length) overlaps any structure except
  // the one being written (`self_kind` at `self_offset`, when given).
  Status check(uint64_t offset, uint64_t length) const;
  Status check_except(uint64_t offset, uint64_t length, MetadataKind self_kind,
                      uint64_t self_offset) const;

 private:
  struct Range {
    MetadataKind kind;
    uint64_t offset;
    uint64_t length;
  };
  const std::set<uint64_t>* clusters_of(MetadataKind kind) const;
  std::set<uint64_t>* clusters_of(MetadataKind kind);

  uint64_t cluster_size_;
  std::vector<Range> ranges_;
  std::set<uint64_t> l2_tables_;
  std::set<uint64_t> refcount_blocks_;
  std::set<uint64_t> bitmap_data_;
};

}  // namespace blockcore::qcow2
