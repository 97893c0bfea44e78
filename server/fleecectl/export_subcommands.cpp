// NBD export subcommands: exports, export add, export del.
#include <cctype>

#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

// QMP ids: a letter, then letters, digits, '-', '.', '_'.
bool is_qmp_id(const std::string& s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return true;
}

int run_exports(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto list = ctx.call("query-block-exports");
  if (!list) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *list, false);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : *list) {
    std::string name = e.contains("name") ? cell(e, "name") : cell(e, "id");
    std::string mode = e.value("writable", false) ? "rw" : "ro";
    rows.push_back({name, cell(e, "id"), cell(e, "node-name"), mode, cell(e, "description")});
  }
  print_table(ctx.out(), {"NAME", "ID", "NODE", "MODE", "DESCRIPTION"}, rows);
  return kExitOk;
}

int run_add(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool writable = args.flag("writable");
  bool allocation_depth = args.flag("allocation-depth");
  auto node = args.option("node");
  auto description = args.option("description");
  auto id = args.option("id");
  std::vector<std::string> bitmaps = args.option_list("bitmap");
  std::string name = args.positional("NAME");
  if (!node) args.fail("missing --node NODE");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  if (!id && !is_qmp_id(name)) {
    return ctx.usage_error("export name '" + name +
                               "' is not a valid QMP id (a letter, then letters, digits, "
                               "'-', '.', '_'); give one with --id",
                           self.synopsis);
  }
  json a = {{"type", "nbd"},
            {"id", id.value_or(name)},
            {"node-name", *node},
            {"name", name},
            {"writable", writable}};
  if (description) a["description"] = *description;
  if (!bitmaps.empty()) a["bitmaps"] = bitmaps;
  if (allocation_depth) a["allocation-depth"] = true;
  auto r = ctx.call("block-export-add", a);
  return r ? ctx.done(*r) : ctx.failure();
}

// NAME is an export's id or its NBD name.
int run_del(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool hard = args.flag("hard");
  std::string name = args.positional("NAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto list = ctx.call("query-block-exports");
  if (!list) return ctx.failure();
  std::string id = name;
  bool found_id = false;
  for (const auto& e : *list) found_id = found_id || cell(e, "id") == name;
  if (!found_id) {
    for (const auto& e : *list) {
      if (cell(e, "name") == name) id = cell(e, "id");
    }
  }
  json a = {{"id", id}};
  if (hard) a["mode"] = "hard";
  auto r = ctx.call("block-export-del", a);
  return r ? ctx.done(*r) : ctx.failure();
}

}  // namespace

void register_export_subcommands(SubcommandTable& table) {
  table.add({{"exports"}, "exports", "list the NBD exports", run_exports});
  table.add({{"export", "add"},
             "export add NAME --node NODE [--writable] [--description TEXT] [--id ID] "
             "[--bitmap B]... [--allocation-depth]",
             "serve node NODE over NBD as export NAME (block-export-add)",
             run_add});
  table.add({{"export", "del"},
             "export del NAME [--hard]",
             "stop serving export NAME (its NBD name or id); --hard disconnects its clients",
             run_del});
}

}  // namespace fleecectl
