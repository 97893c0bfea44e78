// Fleecing subcommands: fleece start, fleece stop, fleece list (fleece-start,
// fleece-stop, query-fleeces). `fleece start NODE` names the fleece after its export
// (default "NODE-fleece"), so a second fleece of a node needs only --export; --id picks
// another id.
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>

#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

// "1048576", "64K", "512M", "2G", "1T" (binary units); nullopt when malformed.
std::optional<uint64_t> parse_size(const std::string& text) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return std::nullopt;
  size_t used = 0;
  uint64_t value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  int shift = 0;
  if (unit.empty()) {
    shift = 0;
  } else if (unit.size() == 1 || (unit.size() == 3 && unit.substr(1) == "iB")) {
    switch (std::toupper(static_cast<unsigned char>(unit[0]))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<uint64_t> parse_number(const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  try {
    return std::stoull(text);
  } catch (...) {
    return std::nullopt;
  }
}

int run_start(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  auto id = args.option("id");
  auto export_name = args.option("export");
  auto bitmap = args.option("bitmap");
  auto policy = args.option("on-cbw-error");
  auto timeout = args.option("cbw-timeout");
  auto overlay = args.option("overlay");
  auto limit = args.option("overlay-limit");
  bool discard = args.flag("discard");
  std::string node = args.positional("NODE");
  std::optional<uint64_t> timeout_s;
  std::optional<uint64_t> limit_bytes;
  if (timeout && !(timeout_s = parse_number(*timeout))) {
    args.fail("--cbw-timeout wants whole seconds, not '" + *timeout + "'");
  }
  if (limit && !(limit_bytes = parse_size(*limit))) {
    args.fail("--overlay-limit wants a size (bytes, or with K/M/G/T), not '" + *limit + "'");
  }
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  const std::string exp = export_name.value_or(node + "-fleece");
  json a = {{"id", id.value_or(exp)}, {"node", node}, {"export", exp}};
  if (bitmap) a["bitmap"] = *bitmap;
  if (policy) a["on-cbw-error"] = *policy;
  if (timeout_s) a["cbw-timeout"] = *timeout_s;
  if (overlay) a["overlay"] = *overlay;
  if (limit_bytes) a["overlay-limit"] = *limit_bytes;
  if (discard) a["discard"] = true;
  auto r = ctx.call("fleece-start", a);
  if (!r) return ctx.failure();
  if (!ctx.json_output()) {
    ctx.out() << "fleece '" << a["id"].get<std::string>() << "' of node '" << node
              << "' exported as '" << exp << "'\n";
    return kExitOk;
  }
  return ctx.done(*r);
}

int run_stop(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool rollback = args.flag("rollback");
  std::string id = args.positional("ID");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json a = {{"id", id}};
  if (rollback) a["rollback"] = true;
  auto r = ctx.call("fleece-stop", a);
  return r ? ctx.done(*r) : ctx.failure();
}

std::string size_cell(const json& f, const std::string& key) {
  auto it = f.find(key);
  return it != f.end() && it->is_number_unsigned() ? format_size(it->get<uint64_t>())
                                                   : cell(f, key);
}

int run_list(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto list = ctx.call("query-fleeces");
  if (!list) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *list, false);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& f : *list) {
    std::string state = cell(f, "state");
    if (f.contains("reason")) state += ": " + cell(f, "reason");
    rows.push_back({cell(f, "id"), cell(f, "node"), cell(f, "export"), cell(f, "bitmap"),
                    size_cell(f, "overlay-bytes"), size_cell(f, "copied-bytes"), state});
  }
  print_table(ctx.out(), {"ID", "NODE", "EXPORT", "BITMAP", "OVERLAY", "COPIED", "STATE"},
              rows);
  return kExitOk;
}

}  // namespace

void register_fleece_subcommands(SubcommandTable& table) {
  table.add({{"fleece", "start"},
             "fleece start NODE [--id ID] [--export NAME] [--bitmap B] "
             "[--on-cbw-error break-snapshot|break-guest-write] [--cbw-timeout SECONDS] "
             "[--overlay DIR] [--overlay-limit SIZE] [--discard]",
             "snapshot NODE and export the view read-only (default export and id: "
             "NODE-fleece)",
             run_start});
  table.add({{"fleece", "stop"},
             "fleece stop ID [--rollback]",
             "end fleece ID; --rollback: the backup failed, its bitmap changes go back",
             run_stop});
  table.add({{"fleece", "list"}, "fleece list", "list the fleeces", run_list});
}

}  // namespace fleecectl
