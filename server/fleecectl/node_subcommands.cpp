// Block graph subcommands: nodes, node add file|raw|qcow2|throttle, node throttle, node del.
#include <filesystem>

#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

// The daemon has its own working directory: relative file names are made absolute here.
std::string absolute_filename(const std::string& name) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(name, ec);
  return ec ? name : p.lexically_normal().string();
}

int run_nodes(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto list = ctx.call("query-named-block-nodes");
  if (!list) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *list, false);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : *list) {
    std::string children;
    for (const auto& c : n.value("children", json::array())) {
      children += (children.empty() ? "" : ",") + cell(c, "child") + "=" + cell(c, "node-name");
    }
    std::string size;
    if (n.contains("image") && n["image"].contains("virtual-size")) {
      size = format_size(n["image"]["virtual-size"].get<uint64_t>());
    }
    rows.push_back({cell(n, "node-name"), cell(n, "drv"), size, n.value("ro", false) ? "ro" : "rw",
                    children.empty() ? "-" : children, cell(n, "file")});
  }
  print_table(ctx.out(), {"NAME", "DRIVER", "SIZE", "MODE", "CHILDREN", "FILE"}, rows);
  return kExitOk;
}

int run_add_file(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool read_only = args.flag("read-only");
  bool direct = args.flag("direct");
  auto locking = args.option("locking");
  auto bitmap_file = args.option("bitmap-file");
  std::string name = args.positional("NAME");
  std::string filename = args.positional("FILENAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json a = {{"driver", "file"},
            {"node-name", name},
            {"filename", absolute_filename(filename)},
            {"read-only", read_only}};
  if (direct) a["cache"] = {{"direct", true}};
  if (locking) a["locking"] = *locking;
  if (bitmap_file) a["bitmap-file"] = absolute_filename(*bitmap_file);
  auto r = ctx.call("blockdev-add", a);
  return r ? ctx.done(*r) : ctx.failure();
}

// A child given on the command line: an existing node's name, or else a file to open
// inline. Sets `out` and returns true, or false when the node list could not be read.
bool child_ref(CliContext& ctx, const std::string& text, json& out) {
  bool is_node = false;
  if (text.find('/') == std::string::npos) {
    auto nodes = ctx.call("query-named-block-nodes");
    if (!nodes) return false;
    for (const auto& n : *nodes) is_node = is_node || cell(n, "node-name") == text;
  }
  if (is_node) {
    out = text;
  } else {
    out = {{"driver", "file"}, {"filename", absolute_filename(text)}};
  }
  return true;
}

int run_add_raw(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool read_only = args.flag("read-only");
  bool direct = args.flag("direct");
  auto file = args.option("file");
  auto offset_text = args.option("offset");
  auto size_text = args.option("size");
  auto bitmap_file = args.option("bitmap-file");
  std::string name = args.positional("NAME");
  if (!file) args.fail("missing --file NODE|FILENAME");
  std::optional<uint64_t> offset, size;
  if (offset_text && !(offset = parse_size(*offset_text)))
    args.fail("bad --offset " + *offset_text);
  if (size_text && !(size = parse_size(*size_text))) args.fail("bad --size " + *size_text);
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);

  // --file names an existing node, or else a file to open inline.
  json a = {{"driver", "raw"}, {"node-name", name}, {"read-only", read_only}};
  if (!child_ref(ctx, *file, a["file"])) return ctx.failure();
  if (direct) a["cache"] = {{"direct", true}};
  if (offset) a["offset"] = *offset;
  if (size) a["size"] = *size;
  if (bitmap_file) a["bitmap-file"] = absolute_filename(*bitmap_file);
  auto r = ctx.call("blockdev-add", a);
  return r ? ctx.done(*r) : ctx.failure();
}

int run_add_qcow2(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool read_only = args.flag("read-only");
  bool direct = args.flag("direct");
  auto file = args.option("file");
  auto backing = args.option("backing");
  auto data_file = args.option("data-file");
  std::string name = args.positional("NAME");
  if (!file) args.fail("missing --file NODE|FILENAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);

  json a = {{"driver", "qcow2"}, {"node-name", name}, {"read-only", read_only}};
  if (!child_ref(ctx, *file, a["file"])) return ctx.failure();
  // Without --backing the chain comes from the image header; `none` means no backing.
  if (backing) a["backing"] = *backing == "none" ? json(nullptr) : json(*backing);
  if (data_file && !child_ref(ctx, *data_file, a["data-file"])) return ctx.failure();
  if (direct) a["cache"] = {{"direct", true}};
  auto r = ctx.call("blockdev-add", a);
  return r ? ctx.done(*r) : ctx.failure();
}

// The throttle limit options (--bps-read 10M ...), in the order of the limit keys.
constexpr const char* kThrottleOptions[] = {
    "bps-total",  "bps-total-max",  "bps-total-max-length",  "bps-read",  "bps-read-max",
    "bps-read-max-length",  "bps-write",  "bps-write-max",  "bps-write-max-length",
    "iops-total", "iops-total-max", "iops-total-max-length", "iops-read", "iops-read-max",
    "iops-read-max-length", "iops-write", "iops-write-max", "iops-write-max-length",
    "iops-size"};

// Reads the limit options given into `limits` (byte rates and iops-size take K, M, G, T;
// the others are plain numbers). False after recording a usage error.
bool throttle_options(ArgParser& args, json& limits) {
  for (const char* key : kThrottleOptions) {
    auto text = args.option(key);
    if (!text) continue;
    const std::string k = key;
    const bool bytes = (k.rfind("bps-", 0) == 0 && k.find("-length") == std::string::npos) ||
                       k == "iops-size";
    std::optional<uint64_t> v;
    if (bytes) {
      v = parse_size(*text);
    } else if (!text->empty() && text->find_first_not_of("0123456789") == std::string::npos &&
               text->size() < 19) {
      v = std::stoull(*text);
    }
    if (!v) {
      args.fail("bad --" + k + " " + *text + (bytes ? " (a size: 10M, 1G...)" : " (a number)"));
      return false;
    }
    limits[k] = *v;
  }
  return true;
}

int run_add_throttle(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool read_only = args.flag("read-only");
  auto file = args.option("file");
  json limits = json::object();
  throttle_options(args, limits);
  std::string name = args.positional("NAME");
  if (!file) args.fail("missing --file NODE|FILENAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json a = {{"driver", "throttle"}, {"node-name", name}, {"read-only", read_only},
            {"limits", limits}};
  if (!child_ref(ctx, *file, a["file"])) return ctx.failure();
  auto r = ctx.call("blockdev-add", a);
  return r ? ctx.done(*r) : ctx.failure();
}

// Changes the limits given and keeps the others (read back from the node); --clear
// starts from no limits.
int run_throttle(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  bool clear = args.flag("clear");
  json given = json::object();
  throttle_options(args, given);
  std::string name = args.positional("NAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json limits = json::object();
  if (!clear) {
    auto nodes = ctx.call("query-named-block-nodes", {{"flat", true}});
    if (!nodes) return ctx.failure();
    for (const auto& n : *nodes) {
      if (cell(n, "node-name") == name && n.contains("throttle-limits")) {
        limits = n["throttle-limits"];
      }
    }
  }
  for (const auto& [k, v] : given.items()) limits[k] = v;
  // Keys at their defaults are left out: the daemon's defaults apply.
  json sent = json::object();
  for (const auto& [k, v] : limits.items()) {
    const bool is_length = k.find("-max-length") != std::string::npos;
    if (v.is_number_unsigned() && v.get<uint64_t>() != (is_length ? 1u : 0u)) sent[k] = v;
  }
  auto r = ctx.call("block-set-throttle", {{"node-name", name}, {"limits", sent}});
  return r ? ctx.done(*r) : ctx.failure();
}

int run_del(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  std::string name = args.positional("NAME");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto r = ctx.call("blockdev-del", {{"node-name", name}});
  return r ? ctx.done(*r) : ctx.failure();
}

}  // namespace

void register_node_subcommands(SubcommandTable& table) {
  table.add({{"nodes"}, "nodes", "list the block graph's nodes", run_nodes});
  table.add({{"node", "add", "file"},
             "node add file NAME FILENAME [--read-only] [--direct] [--locking auto|on|off] "
             "[--bitmap-file FILENAME]",
             "open an image file as node NAME (blockdev-add driver=file)",
             run_add_file});
  table.add({{"node", "add", "raw"},
             "node add raw NAME --file NODE|FILENAME [--offset N] [--size N] [--read-only] "
             "[--direct] [--bitmap-file FILENAME]",
             "a raw node over an existing node or a file (sizes take K, M, G, T)",
             run_add_raw});
  table.add({{"node", "add", "qcow2"},
             "node add qcow2 NAME --file NODE|FILENAME [--backing NODE|none] "
             "[--data-file NODE|FILENAME] [--read-only] [--direct]",
             "a qcow2 node over an existing node or a file; without --backing the chain the "
             "image header names is opened",
             run_add_qcow2});
  table.add({{"node", "add", "throttle"},
             "node add throttle NAME --file NODE|FILENAME [--read-only] [--bps-read N] "
             "[--bps-write N] [--bps-total N] [--iops-read N] [--iops-write N] "
             "[--iops-total N] [--<limit>-max N] [--<limit>-max-length SECONDS] "
             "[--iops-size N]",
             "a throttle filter over an existing node or a file (byte rates take K, M, G, T)",
             run_add_throttle});
  table.add({{"node", "throttle"},
             "node throttle NAME [--clear] [--bps-read N] [--bps-write N] [--bps-total N] "
             "[--iops-read N] [--iops-write N] [--iops-total N] [--<limit>-max N] "
             "[--<limit>-max-length SECONDS] [--iops-size N]",
             "change a throttle node's limits now (block-set-throttle); limits not given "
             "stay as they are, --clear starts from none",
             run_throttle});
  table.add({{"node", "del"}, "node del NAME", "close node NAME (blockdev-del)", run_del});
}

}  // namespace fleecectl
