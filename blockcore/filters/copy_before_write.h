// CopyBeforeWrite: the copy-before-write filter of one live node. It is installed as
// the node's WriteInterceptor while at least one fleecing snapshot of the node exists,
// and runs each snapshot's copy step before a write-like request reaches the node.
// Several snapshots (a backup and a virus scan) may be active at once; each copies
// what it still needs into its own target.
// Threading: thread-safe; add/remove from the control path, before_write from any
// executor concurrently.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "blockcore/block_node.h"
#include "blockcore/filters/fleece_snapshot.h"
#include "blockcore/write_interceptor.h"

namespace blockcore {

class CopyBeforeWrite final : public WriteInterceptor {
 public:
  // The filter of `live` (the installed one, or a new one installed now).
  static std::shared_ptr<CopyBeforeWrite> attach(BlockNode& live);

  void add(FleeceSnapshotPtr snapshot);
  // Removes the snapshot; the last removal uninstalls the filter from the node.
  void remove(const FleeceSnapshot& snapshot);
  size_t snapshots() const;

  Task<Status> before_write(uint64_t off, uint64_t len) override;

 private:
  explicit CopyBeforeWrite(BlockNode& live) : live_(live) {}

  BlockNode& live_;
  mutable std::mutex mu_;
  std::vector<FleeceSnapshotPtr> snapshots_;  // GUARDED_BY(mu_)
};

}  // namespace blockcore
