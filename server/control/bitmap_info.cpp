#include "server/control/bitmap_info.h"

namespace server::control {

using nlohmann::json;

json block_dirty_info(const blockcore::DirtyBitmap& b) {
  return {
      {"name", b.name()},
      {"count", b.dirty_bytes()},
      {"granularity", b.granularity()},
      {"recording", b.enabled()},
      {"busy", b.busy()},
      {"persistent", b.persistent()},
      {"inconsistent", b.inconsistent()},
  };
}

json block_dirty_info_list(const blockcore::BlockNode& node) {
  json list = json::array();
  for (const auto& b : node.bitmaps().list()) list.push_back(block_dirty_info(*b));
  return list;
}

json bitmap_store_info(const blockcore::BlockNode& node) {
  const blockcore::BitmapStore* store = node.bitmaps().store();
  if (store == nullptr) return nullptr;
  return {{"description", store->describe()}, {"writable", store->writable()}};
}

}  // namespace server::control
