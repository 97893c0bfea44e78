// Graph: the named nodes of the block graph. Opens nodes from NodeSpecs (with inline
// children), resolves child references by name, checks that what each parent and
// user takes from a node is compatible (no two writers, nothing writes a node another
// user needs unchanged; rules in permissions.h), and refuses to delete a node that
// something still uses.
// Children: `file` (drivers with takes_file_child), `backing` (takes_backing: a
// reference or an inline node, always opened read-only, used with ChildRole::kBacking so
// nothing may write it while it is a backing node) and `data-file` (takes_data_file, used
// like `file`). A driver given a child it does not take is refused with EINVAL.
// Inline children without a node-name get generated names ("#block1", like QEMU);
// inline children (named or not) are removed with their parent unless another parent
// has started using them by name. Implicit children — the backing chain a driver opens
// from its image header through OpenRequest::open_implicit_child — are registered the
// same way (generated name, removed with the parent that must hold them as children).
// Bitmap containers: a node whose driver takes one (DriverEntry::takes_bitmap_file) and
// whose spec names a `bitmap_file` gets that qcow2 container opened (created when missing
// and the node is writable) right after its driver opened it and before it is
// registered; the store and its bitmaps are attached to the node's NodeBitmaps, which
// closes the store when the node goes away. Two registered nodes never share a container.
// add() is all-or-nothing: on any error nothing it opened stays registered.
// Threading: structural calls (add/remove/find/list/users) are serialized by an internal
// mutex and are meant for the control/start-up path (opening a node blocks on open(2));
// nodes themselves are thread-safe. A driver's open() runs with the mutex held and may
// call open_implicit_child synchronously from that same thread (it uses the *_locked
// internals); it must not call the public methods.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/node_factory.h"
#include "blockcore/node_spec.h"
#include "blockcore/permissions.h"

namespace blockcore {

class Graph {
 public:
  // A graph that opens nodes with the built-in drivers (NodeFactory::with_builtin_drivers).
  explicit Graph(io::BlockingPool& pool);
  Graph(io::BlockingPool& pool, NodeFactory factory);
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  io::BlockingPool& pool() { return pool_; }
  // Passed to every node opened from now on (see CorruptionHandler). Set before adding.
  void set_corruption_handler(CorruptionHandler h) { on_corruption_ = std::move(h); }
  const NodeFactory& factory() const { return factory_; }

  // Opens the node `spec` describes (and its inline children) and registers it under
  // spec.node_name. Errors: EEXIST duplicate name, ENOENT unknown child reference,
  // EINVAL bad options/unknown driver/writable over read-only, EBUSY conflicting
  // permissions, or the driver's open error. On error nothing new stays registered.
  Result<BlockNodePtr> add(const NodeSpec& spec);
  // Unregisters a node. EBUSY if a parent node or any other holder (an export, a
  // connection) still uses it; ENOENT if unknown. Inline children that only it used
  // are removed with it.
  Status remove(const std::string& node_name);

  BlockNodePtr find(const std::string& node_name) const;
  std::vector<BlockNodePtr> nodes() const;  // sorted by name
  // Names of the registered nodes that have `node` as a child (sorted).
  std::vector<std::string> parents_of(const BlockNode* node) const;

  // Declares that `user` (e.g. "export 'disk0'") uses node `node_name` from outside the
  // graph, writing it if `write`. EBUSY if that conflicts with the node's parents (a
  // writable parent already writes it); EINVAL if it writes a read-only node; ENOENT if
  // unknown; EEXIST if `user` already uses it. remove() names these users while they
  // last. Holders that do not declare themselves are still found by reference count.
  Status add_user(const std::string& node_name, const std::string& user, bool write);
  // ENOENT if `user` does not use `node_name`.
  Status remove_user(const std::string& node_name, const std::string& user);
  // Every use of a node: its parents' and the declared users' (for queries and tests).
  std::vector<NodeUse> uses_of(const std::string& node_name) const;
  // True for a node opened as an inline child that is still owned by that parent (it
  // will be removed with it).
  bool is_inline(const std::string& node_name) const;

 private:
  // A use a parent being opened takes of a child, checked against the parent's other
  // children too (one node as both `file` and `backing` of one parent is a conflict).
  struct PendingUse {
    const BlockNode* node;
    NodeUse use;
  };

  // REQUIRES: mu_ held. `added` collects the names registered so far (for rollback).
  // `inline_parent`: the name of the node whose inline (or implicit) child `spec` is, or
  // "". `chain`: where the node sits in an implicit backing chain.
  Result<BlockNodePtr> open_locked(const NodeSpec& spec, const std::string& inline_parent,
                                   std::vector<std::string>& added, const ChainContext& chain);
  // Resolves one child of `parent` in `role` (a reference or an inline node).
  Result<BlockNodePtr> resolve_child(const ChildRef& ref, ChildRole role, const NodeSpec& parent,
                                     const DriverEntry& parent_driver,
                                     std::vector<std::string>& added,
                                     std::vector<PendingUse>& pending);
  // The open_implicit_child callback for a node being opened as `parent`.
  ImplicitChildOpener implicit_opener(const std::string& parent, const ChainContext& chain,
                                      std::vector<std::string>& added);
  // Checks a spec's bitmap_file before anything is opened (the driver takes one, the
  // path is not empty). REQUIRES: mu_ held.
  Status check_bitmap_file_locked(const NodeSpec& spec, const DriverEntry& driver) const;
  // Opens the container `path` for the freshly opened, not yet registered `node` and
  // attaches it; EBUSY when a registered node already uses that container.
  // REQUIRES: mu_ held.
  Status attach_bitmap_file_locked(BlockNode& node, const std::string& path);
  std::vector<NodeUse> uses_locked(const BlockNode* node) const;
  std::vector<std::string> parents_locked(const BlockNode* node) const;
  // Unregisters `name` and then each of its inline children nobody else uses.
  void erase_locked(const std::string& name);
  // Who still uses a registered node besides the registry ("" when nobody).
  std::string in_use_reason_locked(const std::string& name, const BlockNodePtr& node) const;

  // A registered node and what the graph remembers about how it was opened.
  struct Entry {
    BlockNodePtr node;
    // The parent that opened it as an inline child ("" for nodes added on their own, and
    // for inline children that outlived their parent because another node uses them).
    std::string inline_parent;
    bool stable_file_reads = false;  // its driver's DriverEntry::stable_file_reads
    std::string bitmap_file;         // its container, normalized ("" when none)
  };

  io::BlockingPool& pool_;
  const NodeFactory factory_;
  CorruptionHandler on_corruption_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> nodes_;                 // GUARDED_BY(mu_)
  std::map<std::string, std::vector<NodeUse>> users_;  // GUARDED_BY(mu_) declared users
  unsigned next_auto_id_ = 0;                          // GUARDED_BY(mu_)
};

}  // namespace blockcore
