#include "server/control/blockdev_options.h"

#include <cctype>
#include <memory>
#include <optional>
#include <set>
#include <string_view>

#include "blockcore/node_name.h"
#include "server/control/qmp_error.h"

namespace server::control {

using blockcore::LockMode;
using blockcore::NodeSpec;
using blockcore::Status;
using nlohmann::json;

namespace {

// What an inline child takes from its parent when it does not say otherwise.
struct Inherited {
  bool read_only = false;
  bool direct = false;
};

NodeSpec read_node(ArgReader& r, const Inherited& parent);

// fleece's extension for drivers without a bitmap store of their own: the qcow2
// container that holds the node's persistent dirty bitmaps.
void read_bitmap_file(ArgReader& r, NodeSpec& spec) {
  spec.bitmap_file = r.optional_string("bitmap-file");
}

void read_file_options(ArgReader& r, NodeSpec& spec, const Inherited& own) {
  spec.file.filename = r.required_string("filename");
  read_bitmap_file(r, spec);
  spec.file.direct = own.direct;
  auto locking = r.optional_enum("locking", {"auto", "on", "off"});
  if (locking == "on") spec.file.locking = LockMode::kOn;
  if (locking == "off") spec.file.locking = LockMode::kOff;
  // fleece always does disk I/O on its own thread pool; the choice is accepted so that
  // tools passing it keep working.
  (void)r.optional_enum("aio", {"threads", "native", "io_uring"});
}

// BlockdevRef: the node-name of an existing node, or an inline node definition.
std::optional<blockcore::ChildRef> read_child_ref(ArgReader& r, std::string_view key,
                                                  const Inherited& own, bool required) {
  const json* v = r.optional_value(key);
  if (v == nullptr) {
    if (required && r.ok()) r.fail(generic_error(missing_parameter(r.full_name(key))));
    return std::nullopt;
  }
  blockcore::ChildRef ref;
  if (v->is_string()) {
    ref.node_name = v->get<std::string>();
  } else if (v->is_object()) {
    auto sub = r.optional_object(key);
    if (!sub) return std::nullopt;
    ref.inline_spec = std::make_shared<NodeSpec>(read_node(*sub, own));
  } else {
    r.fail_type(key, "BlockdevRef");
    return std::nullopt;
  }
  return ref;
}

void read_raw_options(ArgReader& r, NodeSpec& spec, const Inherited& own) {
  spec.file_child = read_child_ref(r, "file", own, /*required=*/true);
  spec.raw.offset = r.optional_uint64("offset").value_or(0);
  spec.raw.size = r.optional_uint64("size");
  read_bitmap_file(r, spec);
}

// BlockdevOptionsQcow2 (BlockdevOptionsGenericCOWFormat): file, backing
// (BlockdevRefOrNull: absent = from the image header, null = none), data-file.
void read_qcow2_options(ArgReader& r, NodeSpec& spec, const Inherited& own) {
  spec.file_child = read_child_ref(r, "file", own, /*required=*/true);
  const json* backing = r.optional_value("backing");
  if (backing == nullptr) {
    spec.backing_mode = blockcore::BackingMode::kFromImage;
  } else if (backing->is_null()) {
    spec.backing_mode = blockcore::BackingMode::kNone;
  } else if (backing->is_string() || backing->is_object()) {
    Inherited backing_own = own;
    backing_own.read_only = true;  // QEMU opens backing nodes read-only
    spec.backing_child = read_child_ref(r, "backing", backing_own, /*required=*/true);
    if (spec.backing_child) spec.backing_mode = blockcore::BackingMode::kChild;
  } else {
    r.fail_type("backing", "BlockdevRefOrNull");
  }
  spec.data_file_child = read_child_ref(r, "data-file", own, /*required=*/false);
}

// fleece's throttle filter: file (a BlockdevRef), limits (ThrottleLimits members, inline
// rather than QEMU's throttle-group object).
void read_throttle_options(ArgReader& r, NodeSpec& spec, const Inherited& own) {
  spec.file_child = read_child_ref(r, "file", own, /*required=*/true);
  if (auto limits = r.optional_object("limits")) spec.throttle = read_throttle_limits(*limits);
}

struct DriverOptions {
  std::string_view name;
  void (*read)(ArgReader& r, NodeSpec& spec, const Inherited& own);
  bool takes_bitmap_file = false;  // its reader reads `bitmap-file`
};

// Every driver blockdev-add accepts, with the reader of its own members.
constexpr DriverOptions kDrivers[] = {
    {"file", read_file_options, /*takes_bitmap_file=*/true},
    {"raw", read_raw_options, /*takes_bitmap_file=*/true},
    {"qcow2", read_qcow2_options},
    {"throttle", read_throttle_options},
};

NodeSpec read_node(ArgReader& r, const Inherited& parent) {
  NodeSpec spec;
  auto driver = r.optional_string("driver");
  const DriverOptions* drv = nullptr;
  if (!driver) {
    if (r.ok()) r.fail(generic_error(missing_parameter(r.full_name("driver"))));
  } else {
    for (const auto& d : kDrivers) {
      if (d.name == *driver) drv = &d;
    }
    if (drv == nullptr)
      r.fail(generic_error(invalid_parameter_value(r.full_name("driver"), *driver)));
    spec.driver = *driver;
  }
  spec.node_name = r.optional_string("node-name").value_or("");

  Inherited own = parent;
  spec.read_only = r.optional_bool("read-only", parent.read_only);
  own.read_only = spec.read_only;
  // QEMU falls back to read-only when read-write fails; fleece opens as asked.
  (void)r.optional_bool("auto-read-only");
  if (auto cache = r.optional_object("cache")) {
    own.direct = cache->optional_bool("direct", parent.direct);
    if (cache->optional_bool("no-flush", false)) {
      cache->fail(generic_error("cache.no-flush=true is not supported: fleece always flushes"));
    }
  }
  if (r.optional_enum("discard", {"ignore", "unmap"}) == "ignore") {
    r.fail(generic_error("discard=ignore is not supported: fleece passes discards down"));
  }
  if (drv != nullptr) {
    drv->read(r, spec, own);
    if (!drv->takes_bitmap_file && r.optional_value("bitmap-file") != nullptr && r.ok()) {
      r.fail(generic_error("Parameter '" + r.full_name("bitmap-file") +
                           "' is unexpected: driver '" + spec.driver +
                           "' keeps persistent bitmaps in its own image (bitmap-file is for "
                           "file and raw nodes)"));
    }
  }
  return spec;
}

void collect_names(const NodeSpec& spec, std::vector<std::string>& names,
                   std::vector<std::string>& refs);

void collect_child_names(const std::optional<blockcore::ChildRef>& child,
                         std::vector<std::string>& names, std::vector<std::string>& refs) {
  if (!child) return;
  if (!child->node_name.empty()) refs.push_back(child->node_name);
  if (child->inline_spec) collect_names(*child->inline_spec, names, refs);
}

// Named nodes of `spec` (root and inline children) and the existing nodes it refers to.
void collect_names(const NodeSpec& spec, std::vector<std::string>& names,
                   std::vector<std::string>& refs) {
  if (!spec.node_name.empty()) names.push_back(spec.node_name);
  collect_child_names(spec.file_child, names, refs);
  collect_child_names(spec.backing_child, names, refs);
  collect_child_names(spec.data_file_child, names, refs);
}

}  // namespace

NodeSpec read_blockdev_options(ArgReader& r) { return read_node(r, Inherited{}); }

blockcore::ThrottleLimits read_throttle_limits(ArgReader& r) {
  blockcore::ThrottleLimits limits;
  for (const blockcore::ThrottleKey& key : blockcore::throttle_keys()) {
    if (auto v = r.optional_uint64(key.name)) key.field(limits) = *v;
  }
  if (!r.ok()) return limits;
  if (Status s = blockcore::check_throttle_limits(limits); !s.is_ok()) {
    r.fail(generic_error(s.message()));
  }
  return limits;
}

bool id_wellformed(const std::string& id) {
  if (id.empty() || !std::isalpha(static_cast<unsigned char>(id[0]))) return false;
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && c != '-' && c != '.' && c != '_') return false;
  }
  return true;
}

std::string check_node_name(const std::string& name) {
  if (!id_wellformed(name)) return "Invalid node-name: '" + name + "'";
  if (!blockcore::check_node_name(name).is_ok()) return "Node name too long";
  return {};
}

Status check_blockdev_spec(const NodeSpec& spec, const blockcore::Graph& graph) {
  if (spec.node_name.empty()) {
    return generic_error("'node-name' must be specified for the root node");
  }
  std::vector<std::string> names;
  std::vector<std::string> refs;
  collect_names(spec, names, refs);
  std::set<std::string> seen;
  for (const auto& name : names) {
    if (std::string err = check_node_name(name); !err.empty()) return generic_error(err);
    if (!seen.insert(name).second || graph.find(name) != nullptr) {
      return generic_error("Duplicate nodes with node-name='" + name + "'");
    }
  }
  for (const auto& ref : refs) {
    if (graph.find(ref) == nullptr) {
      return generic_error("Cannot find device='" + ref + "' nor node-name='" + ref + "'");
    }
  }
  return Status::ok();
}

}  // namespace server::control
