// NodeSpec: the typed description of one node to open — what a YAML `nodes:` entry and
// a QMP `blockdev-add` both turn into. Drivers read only their own section.
// Threading: plain values.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "blockcore/filters/throttle_limits.h"

namespace blockcore {

// QEMU's `locking` option of the file driver.
enum class LockMode { kAuto, kOn, kOff };

struct FileOptions {
  std::string filename;          // never parsed: colons, commas and spaces are literal
  bool direct = false;           // O_DIRECT (cache.direct in QEMU terms)
  LockMode locking = LockMode::kAuto;
};

struct RawOptions {
  uint64_t offset = 0;             // window start inside the child
  std::optional<uint64_t> size;    // window length; absent = to the end of the child
};

struct NodeSpec;

// Where a format node's backing chain comes from (QEMU's `backing` option): absent in
// the config/QMP = named in the image header; null = no backing; a reference or an
// inline node = that node.
enum class BackingMode { kFromImage, kNone, kChild };

// A child reference: the name of an existing node, or a node described inline.
struct ChildRef {
  std::string node_name;                  // set when referring to an existing node
  std::shared_ptr<NodeSpec> inline_spec;  // set when described inline
};

struct NodeSpec {
  std::string node_name;  // may be empty for inline children (a name is generated)
  std::string driver;     // "file", "raw"
  bool read_only = false;
  // Where the spec came from ("config.yaml:12", "blockdev-add"), for error messages.
  std::string origin;

  FileOptions file;                 // driver == "file"
  RawOptions raw;                   // driver == "raw"
  std::optional<ChildRef> file_child;  // the `file` child of format drivers and filters
  ThrottleLimits throttle;             // driver == "throttle"

  // Format drivers with a backing chain (qcow2).
  BackingMode backing_mode = BackingMode::kFromImage;
  std::optional<ChildRef> backing_child;    // backing_mode == kChild
  // qcow2 external data file (`data-file`); absent = the name in the image header.
  std::optional<ChildRef> data_file_child;

  // Drivers without a bitmap store of their own (file, raw): a qcow2 container file that
  // holds the node's persistent dirty bitmaps (`bitmap-file`), created when missing.
  std::optional<std::string> bitmap_file;
};

}  // namespace blockcore

namespace blockcore {

// True when a and b open the same node the same way (origin is ignored; inline
// children are compared deeply). Used to find what a config reload changed.
bool equivalent(const NodeSpec& a, const NodeSpec& b);

// Names of existing nodes that spec (or its inline children) refers to.
void collect_references(const NodeSpec& spec, std::vector<std::string>& out);

}  // namespace blockcore
