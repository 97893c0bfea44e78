// NBD export commands: block-export-add, block-export-del, query-block-exports.
#include <asio/awaitable.hpp>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/allow_rule.h"
#include "server/control/arg_reader.h"
#include "server/control/blockdev_options.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/export/export_bitmaps.h"

namespace server::control {
namespace {

using blockcore::BlockNodePtr;
using blockcore::Result;
using blockcore::Status;
using nlohmann::json;

// NBD's limit on export names and descriptions (NBD_MAX_STRING_SIZE).
constexpr size_t kMaxNbdString = 4096;

// The bitmap `name` of exactly the node `node_name` (QEMU's block_dirty_bitmap_lookup).
Result<blockcore::DirtyBitmapPtr> find_node_bitmap(CommandContext& ctx,
                                                   const std::string& node_name,
                                                   const std::string& name) {
  BlockNodePtr node = ctx.graph.find(node_name);
  if (!node) return Status::error(ENOENT, "Node '" + node_name + "' not found");
  return node->bitmaps().lookup(name);
}

// BlockDirtyBitmapOrStr: "name" or {"node": N, "name": B}; as (node, bitmap) pairs, node
// empty for a bare name.
std::vector<std::pair<std::string, std::string>> read_bitmaps(ArgReader& r) {
  std::vector<std::pair<std::string, std::string>> out;
  const json* v = r.optional_value("bitmaps");
  if (v == nullptr) return out;
  if (!v->is_array()) {
    r.fail_type("bitmaps", "array");
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    std::string key = "bitmaps[" + std::to_string(i) + "]";
    if (item.is_string()) {
      out.emplace_back(std::string(), item.get<std::string>());
    } else if (item.is_object() && item.size() == 2 && item.contains("node") &&
               item.contains("name") && item["node"].is_string() && item["name"].is_string()) {
      out.emplace_back(item["node"].get<std::string>(), item["name"].get<std::string>());
    } else {
      r.fail_type(key, "BlockDirtyBitmapOrStr");
      return out;
    }
  }
  return out;
}

// `allow`: [{"psk-identity": ID} | {"tls-dn": DN} | {"uid": N} | {"address": CIDR}, ...],
// the rules of the config's `allow:` (config/allow_rule.h), as canonical strings.
std::optional<std::vector<std::string>> read_allow(ArgReader& r) {
  const json* v = r.optional_value("allow");
  if (v == nullptr) return std::nullopt;
  std::vector<std::string> out;
  if (!v->is_array()) {
    r.fail_type("allow", "array");
    return out;
  }
  if (v->empty()) {  // stored empty, it would mean "everyone"
    r.fail(generic_error("Invalid parameter 'allow': empty (leave it out to admit every client)"));
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    const std::string key = "allow[" + std::to_string(i) + "]";
    if (!item.is_object() || item.size() != 1) {
      r.fail_type(key, "BlockExportAllow");
      return out;
    }
    const auto member = item.begin();
    const std::string kind = member.key();
    const json& value = member.value();
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_number_unsigned()) {
      text = std::to_string(value.get<uint64_t>());
    } else {
      r.fail_type(key + "." + kind, "string");
      return out;
    }
    std::string error;
    auto rule = config::make_allow_rule(kind, text, error);
    if (!rule) {
      r.fail(generic_error("Invalid parameter '" + key + "': " + error));
      return out;
    }
    out.push_back(rule->canonical());
  }
  return out;
}

// The rules of an export as block-export-add takes them.
json allow_json(const std::vector<std::string>& allow) {
  json out = json::array();
  for (const std::string& text : allow) {
    std::string error;
    auto rule = config::parse_allow_rule(text, error);
    if (!rule) continue;
    const std::string kind = text.substr(0, text.find(':'));
    if (rule->kind == config::AllowRule::Kind::kUid) {
      out.push_back({{kind, rule->uid}});
    } else {
      out.push_back({{kind, rule->value}});
    }
  }
  return out;
}

asio::awaitable<Result<json>> block_export_add(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  r.required_enum("type", {"nbd"});
  std::string id = r.required_string("id");
  std::string node_name = r.required_string("node-name");
  bool writable = r.optional_bool("writable", false);
  if (r.optional_bool("writethrough", false)) {
    r.fail(generic_error("writethrough=true is not supported: clients ask for FUA per write"));
  }
  std::string name = r.optional_string("name").value_or(node_name);
  std::string description = r.optional_string("description").value_or("");
  auto bitmaps = read_bitmaps(r);
  bool allocation_depth = r.optional_bool("allocation-depth", false);
  std::optional<std::vector<std::string>> allow = read_allow(r);
  if (Status s = r.finish(); !s.is_ok()) co_return s;

  if (!id_wellformed(id)) co_return generic_error("Invalid block export id");
  if (ctx.export_ids->resolve(ctx.exports, id)) {
    co_return generic_error("Block export id '" + id + "' is already in use");
  }
  BlockNodePtr node = ctx.graph.find(node_name);
  if (!node) {
    co_return generic_error("Cannot find device='' nor node-name='" + node_name + "'");
  }
  if (writable && node->read_only()) {
    co_return generic_error("Cannot export read-only node as writable");
  }
  if (ctx.exports.find(name)) {
    co_return generic_error("NBD server already has export named '" + name + "'");
  }
  if (name.size() > kMaxNbdString) co_return generic_error("export name '" + name + "' too long");
  if (description.size() > kMaxNbdString) {
    co_return generic_error("description '" + description + "' too long");
  }
  auto e = std::make_shared<Export>();
  e->root = node;
  // A bare name is looked for on the node and down its backing/filter chain; the
  // {node, name} form names the node exactly (QEMU's block-export-add).
  for (const auto& [bm_node, bm_name] : bitmaps) {
    Result<blockcore::DirtyBitmapPtr> found = bm_node.empty()
                                                  ? find_export_bitmap(*node, bm_name)
                                                  : find_node_bitmap(ctx, bm_node, bm_name);
    if (!found.is_ok()) co_return generic_error(error_desc_of(found.status()));
    if (Status s = add_export_bitmap(*e, bm_name, *found); !s.is_ok()) {
      co_return generic_error(error_desc_of(s));
    }
  }
  e->name = name;
  e->description = description;
  e->writable = writable;
  e->allocation_depth = allocation_depth;
  if (allow) e->allow = std::move(*allow);
  ExportPtr exp = e;
  // The graph checks the export's use against the node's other users (a writable
  // export of a node that a writable parent writes would be a second writer).
  const std::string user = graph_user_name(name);
  if (Status s = ctx.graph.add_user(node_name, user, writable); !s.is_ok()) {
    co_return generic_error(error_desc_of(s));
  }
  if (Status s = ctx.exports.add(exp); !s.is_ok()) {
    (void)ctx.graph.remove_user(node_name, user);
    co_return generic_error(error_desc_of(s));
  }
  ctx.export_ids->assign(id, exp);
  co_return json::object();
}

asio::awaitable<Result<json>> block_export_del(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  std::string id = r.required_string("id");
  std::string mode = r.optional_enum("mode", {"safe", "hard"}).value_or("safe");
  if (Status s = r.finish(); !s.is_ok()) co_return s;

  ExportPtr e = ctx.export_ids->resolve(ctx.exports, id);
  if (!e) co_return generic_error("Export '" + id + "' is not found");
  if (mode == "safe" && ctx.export_clients && ctx.export_clients(*e) > 0) {
    co_return generic_error("export '" + id +
                            "' still in use (use mode 'hard' to disconnect its clients)");
  }
  // Removal tells the NBD server, which closes the export's connections.
  if (Status s = ctx.exports.remove(e->name); !s.is_ok()) {
    co_return generic_error("Export '" + id + "' is not found");
  }
  ctx.export_ids->forget(id);
  (void)ctx.graph.remove_user(e->node_name(), graph_user_name(e->name));  // ENOENT: from config
  ctx.events->emit("BLOCK_EXPORT_DELETED", {{"id", id}});
  co_return json::object();
}

// QEMU's BlockExportInfo, plus the export's settings under the argument names of
// block-export-add (extra members QMP clients ignore).
json block_export_info(const ExportPtr& e, const ExportIds& ids) {
  json info = {
      {"id", ids.id_of(e)},      {"type", "nbd"},         {"node-name", e->node_name()},
      {"shutting-down", false},  {"name", e->name},       {"description", e->description},
      {"writable", e->writable}, {"bitmaps", e->bitmaps}, {"allocation-depth", e->allocation_depth},
  };
  if (!e->allow.empty()) info["allow"] = allow_json(e->allow);  // absent: everyone
  return info;
}

asio::awaitable<Result<json>> query_block_exports(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  json list = json::array();
  for (const auto& e : ctx.exports.list()) list.push_back(block_export_info(e, *ctx.export_ids));
  co_return list;
}

}  // namespace

void register_export_commands(CommandTable& table) {
  table.add("block-export-add", block_export_add);
  table.add("block-export-del", block_export_del);
  table.add("query-block-exports", query_block_exports);
}

}  // namespace server::control
