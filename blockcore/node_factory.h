// NodeFactory: the table from a driver name ("file", "raw", later "qcow2" and filters)
// to the function that opens a node of that driver, plus what the graph must know about
// the driver before opening it (does it take a `file` child; do its read-only opens still
// need that child unchanged). Later issues add a driver by adding one entry.
// Threading: build it once (add() before use); lookups on a const factory may run
// concurrently.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/io/blocking_pool.h"
#include "blockcore/node_spec.h"

namespace blockcore {

// Everything an open function gets. spec.node_name is final (generated for inline
// children); file_child is the resolved `file` child for drivers that take one.
struct OpenRequest {
  const NodeSpec& spec;
  io::BlockingPool& pool;
  BlockNodePtr file_child;
};

struct DriverEntry {
  std::string name;
  // The graph resolves spec.file_child (required) before calling open.
  bool takes_file_child = false;
  // Even a read-only node of this driver needs its file child unchanged (metadata).
  bool stable_file_reads = false;
  std::function<Result<BlockNodePtr>(const OpenRequest&)> open;
};

class NodeFactory {
 public:
  NodeFactory() = default;
  // The drivers of this build: file, raw.
  static NodeFactory with_builtin_drivers();

  // Adds (or replaces) a driver.
  void add(DriverEntry entry);
  // nullptr for an unknown driver.
  const DriverEntry* find(std::string_view name) const;
  // "file, raw", for error messages.
  std::string names() const;

 private:
  std::vector<DriverEntry> drivers_;
};

}  // namespace blockcore
