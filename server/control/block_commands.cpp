// Block graph commands: blockdev-add, blockdev-del, query-named-block-nodes.
#include <asio/awaitable.hpp>
#include <cerrno>

#include "blockcore/drivers/file_node.h"
#include "server/control/arg_reader.h"
#include "server/control/blockdev_options.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"

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

// The protocol node at the bottom of `node`'s chain of `file` children.
const BlockNode& protocol_node(const BlockNode& node) {
  const BlockNode* n = &node;
  for (int depth = 0; depth < 64; ++depth) {
    const BlockNode* next = nullptr;
    for (const auto& edge : n->children()) {
      if (edge.role == blockcore::ChildRole::kFile) next = edge.node.get();
    }
    if (next == nullptr) break;
    n = next;
  }
  return *n;
}

// QEMU's BlockDeviceInfo, with the members fleece knows; throttling is not a node
// option in fleece, so the limits are reported as 0 (unlimited) like an unthrottled
// QEMU node.
json block_device_info(const BlockNode& node) {
  const BlockNode& leaf = protocol_node(node);
  std::string filename = node.describe().empty() ? leaf.describe() : node.describe();
  const auto* file = dynamic_cast<const blockcore::FileNode*>(&leaf);
  bool direct = file != nullptr && file->direct();
  json children = json::array();
  for (const auto& edge : node.children()) {
    children.push_back(
        {{"child", blockcore::child_role_name(edge.role)}, {"node-name", edge.node->name()}});
  }
  json info = {
      {"node-name", node.name()},
      {"drv", node.driver()},
      {"file", filename},
      {"ro", node.read_only()},
      {"children", std::move(children)},
      {"backing_file_depth", 0},
      {"active", true},
      {"encrypted", false},
      {"detect_zeroes", "off"},
      {"image", {{"filename", filename}, {"format", node.driver()}, {"virtual-size", node.size()}}},
      {"cache", {{"writeback", true}, {"direct", direct}, {"no-flush", false}}},
      {"write_threshold", 0},
  };
  for (const char* limit : {"bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"}) {
    info[limit] = 0;
  }
  return info;
}

asio::awaitable<Result<json>> query_named_block_nodes(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  (void)r.optional_bool("flat");  // fleece never nests backing images in this answer
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  json list = json::array();
  for (const auto& node : ctx.graph.nodes()) list.push_back(block_device_info(*node));
  co_return list;
}

}  // namespace

void register_block_commands(CommandTable& table) {
  table.add("blockdev-add", blockdev_add);
  table.add("blockdev-del", blockdev_del);
  table.add("query-named-block-nodes", query_named_block_nodes);
}

}  // namespace server::control
