// Permissions: what each user of a node takes from it (read or write) and what it lets
// others do meanwhile, and the rule that refuses combinations that would corrupt data
// (QEMU's perm/shared-perm model, cut down to the one permission that matters: write).
//   - A writable parent writes its `file` child and lets nobody else write it.
//   - A read-only parent reads its child; it lets others write unless its driver needs
//     the child's bytes stable (a format with metadata, e.g. qcow2).
//   - A `backing` child is read and must stay unchanged; a `target` child is written.
//   - A user outside the graph (an export) writes or reads; exports of one node share
//     writes with each other (like NBD multi-conn), never with a writing parent.
// Threading: pure functions over plain values.
#pragma once

#include <string>
#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/block_node.h"

namespace blockcore {

// One user's use of a node.
struct NodeUse {
  std::string user;          // who, for messages: "node 'raw0'", "export 'disk0'"
  bool write = false;        // it writes the node
  bool shares_write = true;  // it lets other users write the node meanwhile
};

// What a parent takes from its child in `role`. `stable_reads`: a read-only parent still
// needs the child unchanged (the parent driver keeps metadata in it).
NodeUse child_use(const std::string& parent_user, bool parent_writable, ChildRole role,
                  bool stable_reads);
// What a user outside the graph (an export, a job) takes.
NodeUse external_use(const std::string& user, bool write);

// Checks adding `added` to the `existing` uses of `node`: EINVAL when it writes a
// read-only node, EBUSY when it conflicts with an existing use. The message names both
// users and the node.
Status check_new_use(const BlockNode& node, const std::vector<NodeUse>& existing,
                     const NodeUse& added);

}  // namespace blockcore
