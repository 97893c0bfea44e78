// Graph: the named nodes of the block graph. Opens nodes from NodeSpecs (with inline
// children), resolves child references by name, checks that what each parent and
// user takes from a node is compatible (no two writers, nothing writes a node another
// user needs unchanged), and refuses to delete a node that something still uses.
// Threading: structural calls (add/remove/find/list) are serialized by an internal
// mutex and are meant for the control/start-up path; nodes themselves are thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/node_spec.h"

namespace blockcore {

class Graph {
 public:
  explicit Graph(io::BlockingPool& pool);
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  io::BlockingPool& pool() { return pool_; }

  // Opens the node `spec` describes (and its inline children) and registers it under
  // spec.node_name. Errors: EEXIST duplicate name, ENOENT unknown child reference,
  // EINVAL bad options, EBUSY conflicting permissions, or the driver's open error.
  Result<BlockNodePtr> add(const NodeSpec& spec);
  // Unregisters a node. EBUSY if a parent node or any other holder (an export, a
  // connection) still uses it; ENOENT if unknown. Inline children that only it used
  // are removed with it.
  Status remove(const std::string& node_name);

  BlockNodePtr find(const std::string& node_name) const;
  std::vector<BlockNodePtr> nodes() const;  // sorted by name
  // Names of the registered nodes that have `node` as a child.
  std::vector<std::string> parents_of(const BlockNode* node) const;

 private:
  Result<BlockNodePtr> open_locked(const NodeSpec& spec, std::vector<std::string>& added);
  Result<BlockNodePtr> resolve_child(const ChildRef& ref, bool writable,
                                     std::vector<std::string>& added);

  io::BlockingPool& pool_;
  mutable std::mutex mu_;
  std::map<std::string, BlockNodePtr> nodes_;       // GUARDED_BY(mu_)
  std::map<std::string, bool> generated_;           // GUARDED_BY(mu_) inline (auto-named)
  unsigned next_auto_id_ = 0;                        // GUARDED_BY(mu_)
};

}  // namespace blockcore
