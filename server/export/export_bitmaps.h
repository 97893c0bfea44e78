// Binding an export's dirty bitmaps: every path that builds an Export (block-export-add,
// config exports) resolves the names an export offers as qemu:dirty-bitmap:NAME here,
// with QEMU's rules and messages, and takes a busy hold on each bitmap that lasts as long
// as the Export (so it cannot be removed, cleared or toggled while a client may read it).
//
// Where a bare name is looked for (QEMU's nbd_export_create): on the export's root node,
// then down its chain — the `backing` child when the node has one (a COW image), else
// its `file` child when the node passes data through at the same offsets (raw without an
// offset, filters such as copy-before-write) — never into the `file` of a format with its
// own layout (qcow2), whose offsets are not the disk's. The first match wins.
//
// Threading: call while building an Export, before it is shared (control executor or
// daemon start-up); the bitmaps' own state is thread-safe.
#pragma once

#include <string>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/bitmap/dirty_bitmap.h"
#include "blockcore/block_node.h"
#include "server/export/export_registry.h"

namespace server {

// The bitmap `name` seen from `root` (see above), or ENOENT "Bitmap 'NAME' is not found"
// (QEMU's text).
blockcore::Result<blockcore::DirtyBitmapPtr> find_export_bitmap(const blockcore::BlockNode& root,
                                                                const std::string& name);

// The node after `node` in the chain searched for bitmaps, or null at its end.
const blockcore::BlockNode* next_in_bitmap_chain(const blockcore::BlockNode& node);

// Offers `bitmap` on `e` as qemu:dirty-bitmap:`name` and holds it busy while `e` lives
// (appends to e.bitmaps and e.bitmap_uses). EINVAL "Bitmap 'NAME' is listed twice" when
// `e` already offers `name`.
// REQUIRES: every name of e.bitmaps is bound (e.bitmap_uses.size() == e.bitmaps.size()).
blockcore::Status add_export_bitmap(Export& e, const std::string& name,
                                    const blockcore::DirtyBitmapPtr& bitmap);

// Resolves every name of e.bitmaps with find_export_bitmap and binds it
// (e.bitmap_uses[i] for e.bitmaps[i]). All or nothing: on error (a name not found,
// EINVAL for a name listed twice) no bitmap is bound and e.bitmap_uses is left empty.
// REQUIRES: e.root is set, e.bitmap_uses is empty.
blockcore::Status bind_export_bitmaps(Export& e);

}  // namespace server
