// Dirty bitmap subcommands: bitmap list, bitmap add|remove|clear|enable|disable|merge.
// `bitmap add` makes a persistent bitmap when the node has a writable bitmap store (a
// qcow2 image, or a node with a bitmap-file) — what a backup user expects, like the
// config's `persistent: true` — and an in-memory one otherwise; --persistent and
// --no-persistent decide explicitly.
#include <string>
#include <vector>

#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

// "recording" or "disabled", then "persistent", "busy", "inconsistent" when set.
std::string flags_of(const json& b) {
  std::string flags = b.value("recording", false) ? "recording" : "disabled";
  for (const char* f : {"persistent", "busy", "inconsistent"}) {
    if (b.value(f, false)) flags += std::string(",") + f;
  }
  return flags;
}

std::string size_cell(const json& b, const std::string& key) {
  auto it = b.find(key);
  return it != b.end() && it->is_number_unsigned() ? format_size(it->get<uint64_t>())
                                                   : cell(b, key);
}

int run_list(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  auto node = args.optional_positional();
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json a = json::object();
  if (node) a["node"] = *node;
  auto list = ctx.call("query-dirty-bitmaps", a);
  if (!list) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *list, false);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : *list) {
    rows.push_back({cell(b, "node"), cell(b, "name"), size_cell(b, "granularity"),
                    size_cell(b, "count"), flags_of(b)});
  }
  print_table(ctx.out(), {"NODE", "NAME", "GRANULARITY", "DIRTY", "FLAGS"}, rows);
  return kExitOk;
}

// Whether `node` has a writable bitmap store ("bitmap-store" in query-named-block-nodes).
// nullopt when the node list could not be read.
std::optional<bool> node_can_store(CliContext& ctx, const std::string& node) {
  auto nodes = ctx.call("query-named-block-nodes", {{"flat", true}});
  if (!nodes) return std::nullopt;
  for (const auto& n : *nodes) {
    if (cell(n, "node-name") != node) continue;
    auto store = n.find("bitmap-store");
    return store != n.end() && store->is_object() && store->value("writable", false);
  }
  return false;  // no such node: the add itself reports it
}

int run_add(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool persistent = args.flag("persistent");
  bool no_persistent = args.flag("no-persistent");
  bool disabled = args.flag("disabled");
  auto granularity_text = args.option("granularity");
  std::string node = args.positional("NODE");
  std::string name = args.positional("NAME");
  std::optional<uint64_t> granularity;
  if (granularity_text && !(granularity = parse_size(*granularity_text))) {
    args.fail("bad --granularity " + *granularity_text);
  }
  if (persistent && no_persistent) args.fail("--persistent and --no-persistent exclude each other");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  if (!persistent && !no_persistent) {
    auto can_store = node_can_store(ctx, node);
    if (!can_store) return ctx.failure();
    persistent = *can_store;
  }
  json a = {{"node", node}, {"name", name}, {"persistent", persistent}};
  if (granularity) a["granularity"] = *granularity;
  if (disabled) a["disabled"] = true;
  auto r = ctx.call("block-dirty-bitmap-add", a);
  return r ? ctx.done(*r) : ctx.failure();
}

// remove, clear, enable, disable: NODE NAME -> block-dirty-bitmap-<verb>.
int run_simple(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  std::string node = args.positional("NODE");
  std::string name = args.positional("NAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto r = ctx.call("block-dirty-bitmap-" + self.words.back(), {{"node", node}, {"name", name}});
  return r ? ctx.done(*r) : ctx.failure();
}

// SRC is NAME (a bitmap of NODE) or OTHER-NODE:NAME. Node names never contain ':', so
// the first ':' ends the node name; a bitmap of NODE whose name contains ':' is written
// NODE:NAME.
json merge_source(const std::string& src) {
  size_t colon = src.find(':');
  if (colon == std::string::npos) return src;
  return {{"node", src.substr(0, colon)}, {"name", src.substr(colon + 1)}};
}

int run_merge(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  std::string node = args.positional("NODE");
  std::string target = args.positional("TARGET");
  json sources = json::array();
  while (auto src = args.optional_positional()) sources.push_back(merge_source(*src));
  if (args.ok() && sources.empty()) args.fail("missing SRC");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto r = ctx.call("block-dirty-bitmap-merge",
                    {{"node", node}, {"target", target}, {"bitmaps", sources}});
  return r ? ctx.done(*r) : ctx.failure();
}

}  // namespace

void register_bitmap_subcommands(SubcommandTable& table) {
  table.add({{"bitmap", "list"},
             "bitmap list [NODE]",
             "list the dirty bitmaps (of NODE, or of every node): granularity, dirty bytes, "
             "flags (query-dirty-bitmaps)",
             run_list});
  table.add({{"bitmap", "add"},
             "bitmap add NODE NAME [--granularity N] [--persistent|--no-persistent] "
             "[--disabled]",
             "create dirty bitmap NAME on NODE; persistent by default when NODE can store "
             "bitmaps (a qcow2 image, or a node with a bitmap-file)",
             run_add});
  table.add({{"bitmap", "remove"},
             "bitmap remove NODE NAME",
             "delete the bitmap (from the image too when persistent)",
             run_simple});
  table.add({{"bitmap", "clear"}, "bitmap clear NODE NAME", "mark every block clean", run_simple});
  table.add(
      {{"bitmap", "enable"}, "bitmap enable NODE NAME", "start recording writes", run_simple});
  table.add(
      {{"bitmap", "disable"}, "bitmap disable NODE NAME", "stop recording writes", run_simple});
  table.add({{"bitmap", "merge"},
             "bitmap merge NODE TARGET SRC...",
             "add the dirty blocks of each SRC (NAME on NODE, or OTHER-NODE:NAME) to TARGET",
             run_merge});
}

}  // namespace fleecectl
