#include "backup/bitmap_checks.h"

#include <cerrno>

namespace backup {

using blockcore::BlockNodePtr;
using blockcore::DirtyBitmap;
using blockcore::Result;
using blockcore::Status;

Status check_bitmap(const DirtyBitmap& b, unsigned checks) {
  const std::string quoted = "Bitmap '" + b.name() + "'";
  if ((checks & kCheckBusy) && b.busy()) {
    return Status::error(EBUSY, quoted +
                                    " is currently in use by another operation and cannot "
                                    "be used");
  }
  if ((checks & kCheckReadOnly) && b.read_only()) {
    return Status::read_only(quoted + " is readonly and cannot be modified");
  }
  if ((checks & kCheckInconsistent) && b.inconsistent()) {
    return Status::invalid(quoted + " is inconsistent and cannot be used");
  }
  return Status::ok();
}

Result<BlockNodePtr> find_node(const NodeLookup& lookup, const std::string& node) {
  BlockNodePtr n = lookup(node);
  if (!n) {
    return Status::invalid("Cannot find device='" + node + "' nor node-name='" + node + "'");
  }
  return n;
}

Result<NodeBitmap> find_bitmap(const NodeLookup& lookup, const std::string& node,
                               const std::string& name) {
  BlockNodePtr n = lookup(node);
  if (!n) return Status::error(ENOENT, "Node '" + node + "' not found");
  blockcore::DirtyBitmapPtr b = n->bitmaps().find(name);
  if (!b) return Status::error(ENOENT, "Dirty bitmap '" + name + "' not found");
  return NodeBitmap{std::move(n), std::move(b)};
}

Status check_add_granularity(uint64_t granularity) {
  if (!blockcore::check_bitmap_granularity(granularity).is_ok()) {
    return Status::invalid("Granularity must be power of 2 and at least 512");
  }
  return Status::ok();
}

Status check_can_store(const blockcore::BlockNode& node, const std::string& name) {
  const std::string prefix =
      "Can't make bitmap '" + name + "' persistent in '" + node.name() + "': ";
  const blockcore::BitmapStore* store = node.bitmaps().store();
  if (store == nullptr) {
    return Status::not_supported(prefix +
                                 "Operation not supported (the node keeps no persistent "
                                 "bitmaps: a qcow2 image does, a raw node needs a bitmap-file)");
  }
  if (!store->writable()) return Status::read_only(prefix + "the image is read-only");
  return Status::ok();
}

}  // namespace backup
