// The JSON shapes of dirty bitmaps in query replies: QEMU's BlockDirtyInfo (for
// query-named-block-nodes' "dirty-bitmaps" and query-dirty-bitmaps) and fleece's
// description of a node's bitmap store.
// Threading: reads thread-safe bitmap state; the values are a snapshot.
#pragma once

#include <nlohmann/json.hpp>

#include "blockcore/bitmap/dirty_bitmap.h"
#include "blockcore/block_node.h"

namespace server::control {

// {"name", "count" (dirty bytes), "granularity", "recording", "busy", "persistent",
//  "inconsistent"}.
nlohmann::json block_dirty_info(const blockcore::DirtyBitmap& b);

// Every bitmap of `node` as BlockDirtyInfo, sorted by name.
nlohmann::json block_dirty_info_list(const blockcore::BlockNode& node);

// {"description", "writable"} of the node's bitmap store, or null when it has none.
nlohmann::json bitmap_store_info(const blockcore::BlockNode& node);

}  // namespace server::control
