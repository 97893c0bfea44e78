#include "server/export/export_bitmaps.h"

#include <cerrno>
#include <vector>


namespace server {

using blockcore::BlockNode;
using blockcore::ChildRole;
using blockcore::DirtyBitmap;
using blockcore::DirtyBitmapPtr;
using blockcore::Result;
using blockcore::Status;

namespace {

const BlockNode* child_of(const BlockNode& node, ChildRole role) {
  for (const blockcore::ChildEdge& edge : node.children()) {
    if (edge.role == role) return edge.node.get();
  }
  return nullptr;
}

// A chain is short; the bound only guards against a cycle.
constexpr int kMaxChainDepth = 256;

}  // namespace

const BlockNode* next_in_bitmap_chain(const BlockNode& node) {
  if (const BlockNode* backing = child_of(node, ChildRole::kBacking)) return backing;
  if (!node.info().file_offsets_match) return nullptr;
  return child_of(node, ChildRole::kFile);
}

Result<DirtyBitmapPtr> find_export_bitmap(const BlockNode& root, const std::string& name) {
  const BlockNode* n = &root;
  for (int depth = 0; n != nullptr && depth < kMaxChainDepth; ++depth) {
    if (DirtyBitmapPtr b = n->bitmaps().find(name)) return b;
    n = next_in_bitmap_chain(*n);
  }
  return Status::error(ENOENT, "Bitmap '" + name + "' is not found");
}

Status add_export_bitmap(Export& e, const std::string& name, const DirtyBitmapPtr& bitmap) {
  for (const std::string& offered : e.bitmaps) {
    if (offered == name) return Status::invalid("Bitmap '" + name + "' is listed twice");
  }
  e.bitmaps.push_back(name);
  e.bitmap_uses.push_back(
      std::make_shared<const DirtyBitmap::BusyGuard>(DirtyBitmap::make_busy(bitmap)));
  return Status::ok();
}

Status bind_export_bitmaps(Export& e) {
  std::vector<DirtyBitmapPtr> found;
  found.reserve(e.bitmaps.size());
  for (size_t i = 0; i < e.bitmaps.size(); ++i) {
    const std::string& name = e.bitmaps[i];
    for (size_t j = 0; j < i; ++j) {
      if (e.bitmaps[j] == name) return Status::invalid("Bitmap '" + name + "' is listed twice");
    }
    if (!e.root) return Status::error(ENOENT, "Bitmap '" + name + "' is not found");
    auto b = find_export_bitmap(*e.root, name);
    if (!b.is_ok()) return b.status();
    found.push_back(std::move(b).value());
  }
  // Busy only once every name resolved, so a failure leaves no bitmap held.
  e.bitmap_uses.clear();
  for (const DirtyBitmapPtr& b : found) {
    e.bitmap_uses.push_back(
        std::make_shared<const DirtyBitmap::BusyGuard>(DirtyBitmap::make_busy(b)));
  }
  return Status::ok();
}

}  // namespace server
