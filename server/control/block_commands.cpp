// Block graph commands: blockdev-add, blockdev-del, query-named-block-nodes.
#include <asio/awaitable.hpp>
#include <cerrno>

#include "blockcore/drivers/file_node.h"
#include "server/control/arg_reader.h"
#include "server/control/bitmap_info.h"
#include "server/control/blockdev_options.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/control/throttle_info.h"

namespace server::control {
namespace {

using blockcore::BlockNode;
using blockcore::BlockNodePtr;
using blockcore::Result;
using blockcore::Status;
using nlohmann::json;

// Opening and closing images are blocking syscalls: they run on the graph's pool so
// the control socket's thread keeps serving the network.
asio::awaitable<Result<json>> blockdev_add(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  blockcore::NodeSpec spec = read_blockdev_options(r);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  if (Status s = check_blockdev_spec(spec, ctx.graph); !s.is_ok()) co_return s;
  spec.origin = "blockdev-add";

  blockcore::Graph& graph = ctx.graph;
  Status s = co_await graph.pool().run([&graph, &spec] {
    Result<BlockNodePtr> added = graph.add(spec);
    return added.is_ok() ? Status::ok() : added.status();
  });
  if (!s.is_ok()) co_return generic_error(error_desc_of(s));
  co_return json::object();
}

asio::awaitable<Result<json>> blockdev_del(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  std::string name = r.required_string("node-name");
  if (Status s = r.finish(); !s.is_ok()) co_return s;

  {
    BlockNodePtr node = ctx.graph.find(name);
    if (!node) co_return generic_error("Failed to find node with node-name='" + name + "'");
    auto users = ctx.exports.using_node(node.get());
    if (!users.empty()) {
      co_return generic_error("Node " + name + " is in use by export '" +
                              ctx.export_ids->id_of(users.front()) + "'");
    }
    if (ctx.graph.is_inline(name)) {
      co_return generic_error("Node " + name + " is not owned by the monitor");
    }
    auto parents = ctx.graph.parents_of(node.get());
    if (!parents.empty()) {
      co_return generic_error("Node " + name + " is in use by node '" + parents.front() + "'");
    }
  }  // our reference is gone before the graph counts holders

  blockcore::Graph& graph = ctx.graph;
  Status s = co_await graph.pool().run([&graph, &name] { return graph.remove(name); });
  if (s.is_ok()) co_return json::object();
  if (s.code() == EBUSY) co_return generic_error("Node " + name + " is in use: " + s.message());
  co_return generic_error(error_desc_of(s));
}

// The node's child in `role`, or nullptr.
const BlockNode* child_of(const BlockNode& node, blockcore::ChildRole role) {
  for (const auto& edge : node.children()) {
    if (edge.role == role) return edge.node.get();
  }
  return nullptr;
}

// What QEMU shows as a node's filename: its own description, else its protocol node's.
std::string filename_of(const BlockNode& node) {
  return node.describe().empty() ? protocol_node(node).describe() : node.describe();
}

// QEMU's ImageInfo: with `nested`, the backing chain as `backing-image` members.
json image_info(const BlockNode& node, bool nested, int depth = 0) {
  json image = {
      {"filename", filename_of(node)}, {"format", node.driver()}, {"virtual-size", node.size()}};
  const BlockNode* backing = child_of(node, blockcore::ChildRole::kBacking);
  if (backing != nullptr) {
    const std::string name = filename_of(*backing);
    image["backing-filename"] = name;
    image["full-backing-filename"] = name;
    image["backing-filename-format"] = backing->driver();
    if (nested && depth < 64) image["backing-image"] = image_info(*backing, true, depth + 1);
  }
  return image;
}

// QEMU's BlockDeviceInfo, with the members fleece knows; the throttle limits are those
// of a throttle node (see throttle_info.h), 0 (unlimited) on other nodes. Nodes with a
// backing child add backing_file, and backing_file_depth counts the chain below the node.
// Nodes with dirty bitmaps add "dirty-bitmaps" (QEMU's BlockDirtyInfo list); nodes with a
// bitmap store add fleece's "bitmap-store".
json block_device_info(const BlockNode& node, bool flat) {
  const BlockNode& leaf = protocol_node(node);
  std::string filename = filename_of(node);
  const auto* file = dynamic_cast<const blockcore::FileNode*>(&leaf);
  bool direct = file != nullptr && file->direct();
  json children = json::array();
  for (const auto& edge : node.children()) {
    children.push_back(
        {{"child", blockcore::child_role_name(edge.role)}, {"node-name", edge.node->name()}});
  }
  int backing_depth = 0;
  for (const BlockNode* b = child_of(node, blockcore::ChildRole::kBacking);
       b != nullptr && backing_depth < 64; b = child_of(*b, blockcore::ChildRole::kBacking)) {
    ++backing_depth;
  }
  json info = {
      {"node-name", node.name()},
      {"drv", node.driver()},
      {"file", filename},
      {"ro", node.read_only()},
      {"children", std::move(children)},
      {"backing_file_depth", backing_depth},
      {"active", true},
      {"encrypted", false},
      {"detect_zeroes", "off"},
      {"image", image_info(node, !flat)},
      {"cache", {{"writeback", true}, {"direct", direct}, {"no-flush", false}}},
      {"write_threshold", 0},
  };
  if (const BlockNode* backing = child_of(node, blockcore::ChildRole::kBacking)) {
    info["backing_file"] = filename_of(*backing);
  }
  // bps, bps_rd, ... iops_wr: a throttle node's limits, 0 (unlimited) on other nodes.
  add_throttle_info(node, info);
  // As QEMU: present when the node has bitmaps.
  if (json bitmaps = block_dirty_info_list(node); !bitmaps.empty()) {
    info["dirty-bitmaps"] = std::move(bitmaps);
  }
  // fleece's: where the node keeps persistent bitmaps (absent: it cannot).
  if (json store = bitmap_store_info(node); !store.is_null()) {
    info["bitmap-store"] = std::move(store);
  }
  return info;
}

asio::awaitable<Result<json>> query_named_block_nodes(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  // QEMU's flat: true leaves out the nested backing-image members.
  const bool flat = r.optional_bool("flat", false);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  json list = json::array();
  for (const auto& node : ctx.graph.nodes()) list.push_back(block_device_info(*node, flat));
  co_return list;
}

}  // namespace

void register_block_commands(CommandTable& table) {
  table.add("blockdev-add", blockdev_add);
  table.add("blockdev-del", blockdev_del);
  table.add("query-named-block-nodes", query_named_block_nodes);
}

}  // namespace server::control
