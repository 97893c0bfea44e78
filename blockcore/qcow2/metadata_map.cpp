#include "blockcore/qcow2/metadata_map.h"

#include <algorithm>

namespace blockcore::qcow2 {

const char* metadata_kind_name(MetadataKind kind) {
  switch (kind) {
    case MetadataKind::kHeader: return "the image header";
    case MetadataKind::kActiveL1: return "the active L1 table";
    case MetadataKind::kActiveL2: return "an active L2 table";
    case MetadataKind::kRefcountTable: return "the refcount table";
    case MetadataKind::kRefcountBlock: return "a refcount block";
    case MetadataKind::kSnapshotTable: return "the snapshot table";
    case MetadataKind::kInactiveL1: return "a snapshot's L1 table";
    case MetadataKind::kBitmapDirectory: return "the bitmap directory";
    case MetadataKind::kBitmapTable: return "a bitmap table";
    case MetadataKind::kBitmapData: return "a bitmap data cluster";
  }
  return "metadata";
}

void MetadataMap::add_range(MetadataKind kind, uint64_t offset, uint64_t length) {
  if (length == 0) return;
  ranges_.push_back(Range{kind, offset, length});
}

void MetadataMap::remove_range(MetadataKind kind, uint64_t offset) {
  ranges_.erase(std::remove_if(ranges_.begin(), ranges_.end(),
                               [&](const Range& r) { return r.kind == kind && r.offset == offset; }),
                ranges_.end());
}

const std::set<uint64_t>* MetadataMap::clusters_of(MetadataKind kind) const {
  if (kind == MetadataKind::kActiveL2) return &l2_tables_;
  if (kind == MetadataKind::kRefcountBlock) return &refcount_blocks_;
  if (kind == MetadataKind::kBitmapData) return &bitmap_data_;
  return nullptr;
}

std::set<uint64_t>* MetadataMap::clusters_of(MetadataKind kind) {
  if (kind == MetadataKind::kActiveL2) return &l2_tables_;
  if (kind == MetadataKind::kRefcountBlock) return &refcount_blocks_;
  if (kind == MetadataKind::kBitmapData) return &bitmap_data_;
  return nullptr;
}

void MetadataMap::add_cluster(MetadataKind kind, uint64_t offset) {
  if (auto* s = clusters_of(kind)) s->insert(offset);
}

void MetadataMap::remove_cluster(MetadataKind kind, uint64_t offset) {
  if (auto* s = clusters_of(kind)) s->erase(offset);
}

bool MetadataMap::has_cluster(MetadataKind kind, uint64_t offset) const {
  auto* s = clusters_of(kind);
  return s && s->count(offset);
}

Status MetadataMap::check(uint64_t offset, uint64_t length) const {
  return check_except(offset, length, MetadataKind::kHeader, UINT64_MAX);
}

Status MetadataMap::check_except(uint64_t offset, uint64_t length, MetadataKind self_kind,
                                 uint64_t self_offset) const {
  if (length == 0) return Status::ok();
  // Whole clusters, as QEMU checks: a structure owns every cluster it touches.
  const uint64_t mask = cluster_size_ - 1;
  const uint64_t end = (offset + length + mask) & ~mask;
  offset &= ~mask;
  auto hit = [&](MetadataKind kind, uint64_t at) {
    return Status::io_error("a write to [" + std::to_string(offset) + ", " +
                            std::to_string(end) + ") would overwrite " + metadata_kind_name(kind) +
                            " at offset " + std::to_string(at));
  };
  for (const Range& r : ranges_) {
    if (r.kind == self_kind && r.offset == self_offset) continue;
    const uint64_t r_begin = r.offset & ~mask;
    const uint64_t r_end = (r.offset + r.length + mask) & ~mask;
    if (offset < r_end && r_begin < end) return hit(r.kind, r.offset);
  }
  for (MetadataKind kind :
       {MetadataKind::kActiveL2, MetadataKind::kRefcountBlock, MetadataKind::kBitmapData}) {
    const std::set<uint64_t>& set = *clusters_of(kind);
    // The last cluster starting before `end`, if it reaches into the range.
    auto it = set.lower_bound(end);
    while (it != set.begin()) {
      --it;
      if (*it + cluster_size_ <= offset) break;
      if (!(kind == self_kind && *it == self_offset)) return hit(kind, *it);
    }
  }
  return Status::ok();
}

}  // namespace blockcore::qcow2
