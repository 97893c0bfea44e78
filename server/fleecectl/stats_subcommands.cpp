// fleecectl stats [NODE]: query-blockstats as tables — per node the operations it has
// executed (requests, bytes, failed, invalid, mean latency), then the dirty bitmaps and
// fleeces of those nodes. --json prints the raw reply.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

uint64_t number(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// "850ns", "12.3us", "4.56ms", "1.20s".
std::string format_latency(uint64_t ns) {
  char buf[32];
  if (ns < 1000) {
    std::snprintf(buf, sizeof buf, "%lluns", static_cast<unsigned long long>(ns));
  } else if (ns < 1000000) {
    std::snprintf(buf, sizeof buf, "%.1fus", static_cast<double>(ns) / 1e3);
  } else if (ns < 1000000000) {
    std::snprintf(buf, sizeof buf, "%.2fms", static_cast<double>(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(ns) / 1e9);
  }
  return buf;
}

void add_operation_rows(const json& node, std::vector<std::vector<std::string>>& rows) {
  const std::string name = cell(node, "node-name");
  bool any = false;
  auto ops = node.find("operations");
  if (ops != node.end() && ops->is_object()) {
    for (const auto& [op, o] : ops->items()) {
      const uint64_t requests = number(o, "requests");
      const uint64_t invalid = number(o, "invalid");
      if (requests == 0 && invalid == 0) continue;
      any = true;
      const uint64_t mean = requests ? number(o, "total-time-ns") / requests : 0;
      rows.push_back({name, op, std::to_string(requests), format_size(number(o, "bytes")),
                      std::to_string(number(o, "failed")), std::to_string(invalid),
                      requests ? format_latency(mean) : "-"});
    }
  }
  if (!any) rows.push_back({name, "-", "0", "0", "0", "0", "-"});
}

int run_stats(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  std::optional<std::string> node = args.optional_positional();
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json a = json::object();
  if (node) a["node-name"] = *node;
  auto list = ctx.call("query-blockstats", a);
  if (!list) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *list, false);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> ops;
  std::vector<std::vector<std::string>> bitmaps;
  std::vector<std::vector<std::string>> fleeces;
  for (const json& n : *list) {
    add_operation_rows(n, ops);
    for (const json& b : n.value("dirty-bitmaps", json::array())) {
      bitmaps.push_back({cell(n, "node-name"), cell(b, "name"),
                         format_size(number(b, "dirty-bytes"))});
    }
    for (const json& f : n.value("fleeces", json::array())) {
      fleeces.push_back({cell(n, "node-name"), cell(f, "id"),
                         format_size(number(f, "overlay-bytes")),
                         format_size(number(f, "copied-bytes")),
                         f.value("broken", false) ? "broken" : "active"});
    }
  }
  print_table(ctx.out(), {"NODE", "OP", "REQUESTS", "BYTES", "FAILED", "INVALID", "MEAN"},
              ops);
  if (!bitmaps.empty()) {
    ctx.out() << "\n";
    print_table(ctx.out(), {"NODE", "BITMAP", "DIRTY"}, bitmaps);
  }
  if (!fleeces.empty()) {
    ctx.out() << "\n";
    print_table(ctx.out(), {"NODE", "FLEECE", "OVERLAY", "COPIED", "STATE"}, fleeces);
  }
  return kExitOk;
}

}  // namespace

void register_stats_subcommands(SubcommandTable& table) {
  table.add({{"stats"},
             "stats [NODE]",
             "I/O statistics per node (requests, bytes, errors, mean latency per operation), "
             "dirty bytes per bitmap, overlay bytes per fleece",
             run_stats});
}

}  // namespace fleecectl
