// NodeFactory: the table from a driver name ("file", "raw", later "qcow2" and filters)
// to the function that opens a node of that driver, plus what the graph must know about
// the driver before opening it (does it take a `file` child; do its read-only opens still
// need that child unchanged; may its nodes name a `bitmap-file`). Later issues add a
// driver by adding one entry.
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

// Where an implicitly opened node sits in a backing chain that image headers name.
struct ChainContext {
  unsigned depth = 0;                   // 0: the node asked for; n: its n-th implicit backing
  std::vector<std::string> image_ids;   // "dev:ino" of the images above it, to detect loops
};
// The deepest backing chain fleeced opens from image headers (QEMU has no limit but the
// stack; 64 layers is far beyond any real chain).
inline constexpr unsigned kMaxImplicitChainDepth = 64;

// Opens `spec` as an implicit child of the node being opened (a backing file named in its
// image header): registered in the graph under a generated name and removed with its
// parent. Fails with ELOOP past kMaxImplicitChainDepth.
using ImplicitChildOpener =
    std::function<Result<BlockNodePtr>(const NodeSpec& spec, const ChainContext& chain)>;

// Told when a node finds its image corrupt (it has turned read-only): the node name and
// what was found. Called from any I/O thread; must not block.
using CorruptionHandler = std::function<void(const std::string& node_name, const std::string& message)>;

// Everything an open function gets. spec.node_name is final (generated for inline
// children); the children are resolved by the graph for drivers that take them.
struct OpenRequest {
  const NodeSpec& spec;
  io::BlockingPool& pool;
  BlockNodePtr file_child;
  // Drivers with takes_backing: the resolved backing node when spec.backing_mode is
  // kChild (null otherwise); with kFromImage the driver opens the chain itself through
  // open_implicit_child.
  BlockNodePtr backing_child;
  // Drivers with takes_data_file: the resolved `data-file` node, if the spec names one.
  BlockNodePtr data_file_child;
  ImplicitChildOpener open_implicit_child;
  ChainContext chain;
  CorruptionHandler on_corruption;  // may be empty
};

struct DriverEntry {
  std::string name;
  // The graph resolves spec.file_child (required) before calling open.
  bool takes_file_child = false;
  // Even a read-only node of this driver needs its file child unchanged (metadata).
  bool stable_file_reads = false;
  std::function<Result<BlockNodePtr>(const OpenRequest&)> open;
  // The driver accepts `backing` (a backing chain) and `data-file` children.
  bool takes_backing = false;
  bool takes_data_file = false;
  // The driver has no bitmap store of its own, so its nodes may keep their persistent
  // bitmaps in a container file (NodeSpec::bitmap_file), which the graph opens.
  bool takes_bitmap_file = false;
};

class NodeFactory {
 public:
  NodeFactory() = default;
  // The drivers of this build: file, raw, qcow2, throttle.
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
