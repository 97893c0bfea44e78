// Dirty bitmap commands with QEMU's names and arguments: block-dirty-bitmap-add, -remove,
// -clear, -enable, -disable, -merge (each a one-action transaction, and each a
// `transaction` action type with the same arguments), and fleece's query-dirty-bitmaps.
// The semantics and checks are backup/bitmap_actions.h's.
#include <asio/awaitable.hpp>
#include <cstdint>

#include "backup/bitmap_actions.h"
#include "server/control/bitmap_info.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/control/transaction_actions.h"

namespace server::control {
namespace {

using blockcore::Result;
using blockcore::Status;
using nlohmann::json;

backup::NodeLookup graph_lookup(CommandContext& ctx) {
  blockcore::Graph& graph = ctx.graph;
  return [&graph](const std::string& name) { return graph.find(name); };
}

// BlockDirtyBitmap: {node, name}.
backup::BitmapParams read_bitmap(ArgReader& r) {
  backup::BitmapParams p;
  p.node = r.required_string("node");
  p.name = r.required_string("name");
  return p;
}

// BlockDirtyBitmapAdd: {node, name, granularity?: uint32, persistent?, disabled?}.
backup::TransactionActionPtr parse_add(ArgReader& r, CommandContext& ctx) {
  backup::BitmapAddParams p;
  p.node = r.required_string("node");
  p.name = r.required_string("name");
  p.granularity = r.optional_uint64("granularity");
  if (p.granularity && *p.granularity > UINT32_MAX) {
    r.fail(generic_error(parameter_expects(r.full_name("granularity"), "uint32")));
  }
  p.persistent = r.optional_bool("persistent", false);
  p.disabled = r.optional_bool("disabled", false);
  return backup::make_bitmap_add(graph_lookup(ctx), std::move(p));
}

backup::TransactionActionPtr parse_remove(ArgReader& r, CommandContext& ctx) {
  return backup::make_bitmap_remove(graph_lookup(ctx), read_bitmap(r));
}
backup::TransactionActionPtr parse_clear(ArgReader& r, CommandContext& ctx) {
  return backup::make_bitmap_clear(graph_lookup(ctx), read_bitmap(r));
}
backup::TransactionActionPtr parse_enable(ArgReader& r, CommandContext& ctx) {
  return backup::make_bitmap_enable(graph_lookup(ctx), read_bitmap(r));
}
backup::TransactionActionPtr parse_disable(ArgReader& r, CommandContext& ctx) {
  return backup::make_bitmap_disable(graph_lookup(ctx), read_bitmap(r));
}

// BlockDirtyBitmapOrStr items of "bitmaps": "name" (on the merge's node) or
// {"node": N, "name": B}.
std::vector<backup::BitmapMergeSource> read_merge_sources(ArgReader& r) {
  std::vector<backup::BitmapMergeSource> out;
  const json* v = r.optional_value("bitmaps");
  if (v == nullptr) {
    if (r.ok()) r.fail(generic_error(missing_parameter(r.full_name("bitmaps"))));
    return out;
  }
  if (!v->is_array()) {
    r.fail_type("bitmaps", "array");
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    const std::string at = r.full_name("bitmaps[" + std::to_string(i) + "]");
    if (item.is_string()) {
      out.push_back({std::nullopt, item.get<std::string>()});
      continue;
    }
    if (!item.is_object()) {
      r.fail(generic_error(invalid_parameter_type(at, "BlockDirtyBitmapOrStr")));
      return out;
    }
    backup::BitmapMergeSource src;
    for (const char* key : {"node", "name"}) {
      auto it = item.find(key);
      if (it == item.end()) {
        r.fail(generic_error(missing_parameter(at + "." + key)));
        return out;
      }
      if (!it->is_string()) {
        r.fail(generic_error(invalid_parameter_type(at + "." + key, "string")));
        return out;
      }
    }
    for (auto it = item.begin(); it != item.end(); ++it) {
      if (it.key() != "node" && it.key() != "name") {
        r.fail(generic_error(unexpected_parameter(at + "." + it.key())));
        return out;
      }
    }
    out.push_back({item["node"].get<std::string>(), item["name"].get<std::string>()});
  }
  return out;
}

// BlockDirtyBitmapMerge: {node, target, bitmaps: [BlockDirtyBitmapOrStr]}.
backup::TransactionActionPtr parse_merge(ArgReader& r, CommandContext& ctx) {
  backup::BitmapMergeParams p;
  p.node = r.required_string("node");
  p.target = r.required_string("target");
  p.sources = read_merge_sources(r);
  return backup::make_bitmap_merge(graph_lookup(ctx), std::move(p));
}

// A command that is its action run alone.
asio::awaitable<Result<json>> run_one_action(const json& args, CommandContext& ctx,
                                             ActionParser parser,
                                             std::shared_ptr<ManagementLock> lock) {
  ArgReader r(args);
  backup::TransactionActionPtr action = parser(r, ctx);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  backup::Transaction t;
  t.add(std::move(action));
  co_return co_await run_transaction(t, *lock);
}

CommandHandler one_action_command(ActionParser parser, std::shared_ptr<ManagementLock> lock) {
  return
      [parser = std::move(parser), lock = std::move(lock)](const json& args, CommandContext& ctx) {
        return run_one_action(args, ctx, parser, lock);
      };
}

// fleece's query-dirty-bitmaps {node?}: every bitmap (of `node`, or of every node),
// as BlockDirtyInfo plus "node", sorted by node and name.
asio::awaitable<Result<json>> query_dirty_bitmaps(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  std::optional<std::string> node = r.optional_string("node");
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  std::vector<blockcore::BlockNodePtr> nodes;
  if (node) {
    Result<blockcore::BlockNodePtr> found = backup::find_node(graph_lookup(ctx), *node);
    if (!found.is_ok()) co_return generic_error(error_desc_of(found.status()));
    nodes.push_back(*found);
  } else {
    nodes = ctx.graph.nodes();
  }
  json list = json::array();
  for (const auto& n : nodes) {
    for (const auto& b : n->bitmaps().list()) {
      json info = {{"node", n->name()}};
      info.update(block_dirty_info(*b));
      list.push_back(std::move(info));
    }
  }
  co_return list;
}

struct BitmapActionType {
  const char* type;
  backup::TransactionActionPtr (*parse)(ArgReader&, CommandContext&);
};

constexpr BitmapActionType kBitmapActions[] = {
    {backup::kBitmapAddType, parse_add},         {backup::kBitmapRemoveType, parse_remove},
    {backup::kBitmapClearType, parse_clear},     {backup::kBitmapEnableType, parse_enable},
    {backup::kBitmapDisableType, parse_disable}, {backup::kBitmapMergeType, parse_merge},
};

}  // namespace

void register_bitmap_actions(TransactionActionTable& table) {
  for (const auto& a : kBitmapActions) table.add(a.type, a.parse);
}

void register_bitmap_commands(CommandTable& table, const std::shared_ptr<ManagementLock>& lock) {
  for (const auto& a : kBitmapActions) table.add(a.type, one_action_command(a.parse, lock));
  table.add("query-dirty-bitmaps", query_dirty_bitmaps);
}

}  // namespace server::control
