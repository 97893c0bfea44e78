// Export: what an NBD client opens by name — a root node of the block graph, its
// description, whether it is writable, and which metadata contexts it offers.
// ExportRegistry: the set of exports the daemon serves, replaced in parts on SIGHUP and
// by block-export-add/del. Connections keep a shared_ptr to the Export they opened, so
// removal never frees a node under an in-flight request; removal notifies listeners
// (the NBD server closes that export's connections).
// An export's dirty bitmaps are bound when it is built (server/export/export_bitmaps.h):
// each named bitmap is held busy for as long as any holder of the Export lives, so the
// last connection letting go of a removed export is what releases them.
// Threading: ExportRegistry is thread-safe; Export is immutable once registered.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/bitmap/dirty_bitmap.h"
#include "blockcore/block_node.h"
#include "server/export/export_counters.h"

namespace server {

struct Export {
  std::string name;
  std::string description;
  blockcore::BlockNodePtr root;
  bool writable = false;
  std::vector<std::string> bitmaps;  // offered as qemu:dirty-bitmap:NAME
  // The bitmaps themselves, bitmap_uses[i] serving bitmaps[i], each kept busy while the
  // Export lives (filled by bind_export_bitmaps or add_export_bitmap). A name without
  // a bound bitmap is not offered.
  std::vector<std::shared_ptr<const blockcore::DirtyBitmap::BusyGuard>> bitmap_uses;
  bool allocation_depth = false;     // offers qemu:allocation-depth
  std::vector<std::string> allow;    // client identities allowed; empty = everyone
  // What NBD clients did with this export (counted by the NBD layer; never null).
  std::shared_ptr<ExportCounters> counters = std::make_shared<ExportCounters>();
  std::string node_name() const { return root ? root->name() : std::string(); }
  // The bitmap offered as qemu:dirty-bitmap:`bitmap_name`, or null.
  blockcore::DirtyBitmapPtr bitmap(std::string_view bitmap_name) const {
    for (size_t i = 0; i < bitmaps.size() && i < bitmap_uses.size(); ++i) {
      if (bitmaps[i] == bitmap_name && bitmap_uses[i]) return bitmap_uses[i]->bitmap();
    }
    return nullptr;
  }
};

using ExportPtr = std::shared_ptr<const Export>;

// The name under which an export is registered as a user of its root node in the
// block graph (Graph::add_user), shared by every path that adds or removes exports.
inline std::string graph_user_name(const std::string& export_name) {
  return "export '" + export_name + "'";
}

class ExportRegistry {
 public:
  using RemovedCallback = std::function<void(const ExportPtr&)>;

  // EEXIST if the name is taken.
  blockcore::Status add(ExportPtr e);
  // ENOENT if absent. Calls the removal callbacks (outside the lock).
  blockcore::Status remove(std::string_view name);
  // Replaces an export of the same name atomically (new connections see the new one;
  // connections to the old one are notified as removed).
  void replace(ExportPtr e);

  ExportPtr find(std::string_view name) const;
  std::vector<ExportPtr> list() const;  // sorted by name
  // Exports whose root is `node` (to refuse deleting a node in use).
  std::vector<ExportPtr> using_node(const blockcore::BlockNode* node) const;

  // Registers a callback run after an export is removed or replaced.
  void on_removed(RemovedCallback cb);

 private:
  mutable std::mutex mu_;
  std::map<std::string, ExportPtr, std::less<>> exports_;  // GUARDED_BY(mu_)
  std::vector<RemovedCallback> removed_callbacks_;          // GUARDED_BY(mu_)
};

}  // namespace server
