// The YAML syntax of each block driver's own options in a `nodes:` entry (or an inline
// node): one table entry per driver, so a new driver (qcow2, filters) adds one parse
// function and one row. The common keys (node-name, driver, read-only) are read by
// NodeParser before the driver's function runs.
// Threading: the table is immutable after its first use.
#pragma once

#include <string>
#include <vector>

#include "blockcore/node_spec.h"
#include "config/yaml_reader.h"

namespace config {

class NodeParser;

struct NodeDriverSyntax {
  std::string name;
  // Reads this driver's keys from `m` into `spec`; children are read through `nodes`.
  void (*parse)(MapReader& m, blockcore::NodeSpec& spec, NodeParser& nodes);
  // The driver keeps persistent dirty bitmaps in its own image (qcow2); the others can
  // keep them only in a `bitmap-file` container, if they read that key.
  bool own_bitmap_store = false;
};

// Every driver the configuration accepts, in the order they are listed in messages.
const std::vector<NodeDriverSyntax>& node_driver_syntaxes();
// nullptr for an unknown driver.
const NodeDriverSyntax* find_node_driver_syntax(const std::string& name);
// True when a node of `spec`'s driver (known or not) can keep persistent bitmaps: its
// driver has its own store, or the node names a bitmap-file.
bool can_store_bitmaps(const blockcore::NodeSpec& spec);
// "file, raw": the known driver names for error messages.
std::string known_node_driver_names();
// The keys `driver`'s parse function reads (found by running it on an empty map), so a
// node whose driver is missing or unknown can still have its other keys checked.
std::vector<std::string> node_driver_keys(const NodeDriverSyntax& driver);

}  // namespace config
