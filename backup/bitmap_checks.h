// Look-ups and state checks of the bitmap management operations, with QEMU's messages
// word for word (block/monitor/bitmap-qmp-cmds.c, bdrv_dirty_bitmap_check), so every
// caller — the bitmap transaction actions, the QMP commands, fleecing — refuses the same
// things the same way. Every function here is free of side effects.
// Threading: the functions only read thread-safe state; call them from the serialized
// management path (the control executor) so that what they checked still holds when
// the caller acts.
#pragma once

#include <functional>
#include <string>
#include <utility>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/bitmap/dirty_bitmap.h"
#include "blockcore/block_node.h"

namespace backup {

// Resolves a node name to an open node (nullptr when there is none). The control
// commands pass the graph's find(); tests pass their own nodes.
using NodeLookup = std::function<blockcore::BlockNodePtr(const std::string& node_name)>;

// What a check refuses (bdrv_dirty_bitmap_check's flags).
enum BitmapCheck : unsigned {
  kCheckBusy = 1,          // "... is currently in use by another operation ..."
  kCheckReadOnly = 2,      // "... is readonly and cannot be modified"
  kCheckInconsistent = 4,  // "... is inconsistent and cannot be used"
  kCheckDefault = kCheckBusy | kCheckReadOnly | kCheckInconsistent,
};

// OK when `b` passes every check in `checks`; else EBUSY, EROFS or EINVAL with QEMU's
// message naming the bitmap.
blockcore::Status check_bitmap(const blockcore::DirtyBitmap& b, unsigned checks);

// The node a new bitmap goes on: EINVAL "Cannot find device='N' nor node-name='N'"
// when there is none (QEMU's bdrv_lookup_bs, used by block-dirty-bitmap-add).
blockcore::Result<blockcore::BlockNodePtr> find_node(const NodeLookup& lookup,
                                                     const std::string& node);

// An existing bitmap (QEMU's block_dirty_bitmap_lookup): ENOENT "Node 'N' not found",
// ENOENT "Dirty bitmap 'B' not found".
struct NodeBitmap {
  blockcore::BlockNodePtr node;
  blockcore::DirtyBitmapPtr bitmap;
};
blockcore::Result<NodeBitmap> find_bitmap(const NodeLookup& lookup, const std::string& node,
                                          const std::string& name);

// The granularity rule of block-dirty-bitmap-add: EINVAL "Granularity must be power of 2
// and at least 512" (also above fleece's 2 GiB maximum).
blockcore::Status check_add_granularity(uint64_t granularity);

// Whether `node` can keep a new persistent bitmap `name`: ENOTSUP when it has no bitmap
// store, EROFS when its store is read-only ("Can't make bitmap 'B' persistent in 'N':
// ...", as QEMU words it).
blockcore::Status check_can_store(const blockcore::BlockNode& node, const std::string& name);

}  // namespace backup
