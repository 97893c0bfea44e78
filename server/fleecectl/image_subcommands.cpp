// Image subcommands: image create (a new raw or qcow2 image file, made by fleeced with
// blockdev-create, the way QEMU creates images at run time).
#include <unistd.h>

#include <filesystem>

#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

std::string absolute_filename(const std::string& name) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(name, ec);
  return ec ? name : p.lexically_normal().string();
}

// A size option: `--NAME N` with binary suffixes, recorded as a usage error when bad.
std::optional<uint64_t> size_option(ArgParser& args, const std::string& name) {
  auto text = args.option(name);
  if (!text) return std::nullopt;
  auto v = parse_size(*text);
  if (!v) args.fail("bad --" + name + " " + *text);
  return v;
}

// The qcow2 members of blockdev-create from the command line (everything but file/size).
struct Qcow2Flags {
  std::optional<uint64_t> cluster_size;
  bool extended_l2 = false;
  std::optional<std::string> backing, backing_format, backing_node, compat;
  std::optional<uint64_t> refcount_bits;
};

Qcow2Flags read_qcow2_flags(ArgParser& args) {
  Qcow2Flags f;
  f.cluster_size = size_option(args, "cluster-size");
  f.extended_l2 = args.flag("extended-l2");
  f.backing = args.option("backing");
  f.backing_format = args.option("backing-format");
  f.backing_node = args.option("backing-node");
  f.compat = args.option("compat");
  if (auto bits = args.option("refcount-bits")) {
    auto v = parse_size(*bits);
    if (!v) args.fail("bad --refcount-bits " + *bits);
    f.refcount_bits = v;
  }
  if (f.compat && *f.compat != "v2" && *f.compat != "v3") {
    args.fail("--compat must be v2 or v3");
  }
  if (f.backing_format && *f.backing_format != "raw" && *f.backing_format != "qcow2") {
    args.fail("--backing-format must be raw or qcow2");
  }
  if (f.backing && !f.backing_format) args.fail("--backing needs --backing-format raw|qcow2");
  if (f.backing_format && !f.backing) args.fail("--backing-format needs --backing");
  if (f.backing && f.backing_node) args.fail("--backing and --backing-node exclude each other");
  return f;
}

json qcow2_options(const Qcow2Flags& f, const std::string& file_node, uint64_t size) {
  json o = {{"driver", "qcow2"}, {"file", file_node}, {"size", size}};
  if (f.cluster_size) o["cluster-size"] = *f.cluster_size;
  if (f.extended_l2) o["extended-l2"] = true;
  // Stored as given: like qemu-img, a relative name is relative to the new image.
  if (f.backing) o["backing-file"] = *f.backing;
  if (f.backing_format) o["backing-fmt"] = *f.backing_format;
  if (f.backing_node) o["backing"] = *f.backing_node;
  if (f.compat) o["version"] = *f.compat;
  if (f.refcount_bits) o["refcount-bits"] = *f.refcount_bits;
  return o;
}

// blockdev-create (file) -> for qcow2: blockdev-add of a temporary file node,
// blockdev-create (qcow2) over it, blockdev-del. A failed qcow2 step removes the file.
int run_create(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  auto format = args.option("format").value_or("raw");
  Qcow2Flags q = read_qcow2_flags(args);
  std::string path_text = args.positional("PATH");
  std::string size_text = args.positional("SIZE");
  std::optional<uint64_t> size;
  if (args.ok() && !(size = parse_size(size_text))) args.fail("bad SIZE " + size_text);
  if (format != "raw" && format != "qcow2") args.fail("--format must be raw or qcow2");
  const bool qcow2_flags = q.cluster_size || q.extended_l2 || q.backing || q.backing_node ||
                           q.compat || q.refcount_bits;
  if (format == "raw" && qcow2_flags) args.fail("qcow2 options need --format qcow2");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);

  const std::string path = absolute_filename(path_text);
  const std::string tag = std::to_string(::getpid());
  const std::string job = "fleecectl-create-" + tag;
  json file_options = {
      {"driver", "file"}, {"filename", path}, {"size", format == "raw" ? *size : 0}};
  if (!ctx.call("blockdev-create", {{"job-id", job}, {"options", file_options}})) {
    return ctx.failure();
  }
  if (format == "qcow2") {
    const std::string node = "fleecectl-new-" + tag;
    bool ok = ctx.call("blockdev-add", {{"driver", "file"}, {"node-name", node},
                                        {"filename", path}})
                  .has_value();
    if (ok) {
      ok = ctx.call("blockdev-create",
                    {{"job-id", job}, {"options", qcow2_options(q, node, *size)}})
               .has_value();
      // The temporary node goes whatever happened; its failure is reported, too.
      if (!ctx.call("blockdev-del", {{"node-name", node}})) ok = false;
    }
    if (!ok) {
      // fleeced and fleecectl share the host (a Unix socket): the half-made file goes.
      std::error_code ec;
      std::filesystem::remove(path, ec);
      return ctx.failure();
    }
  }
  if (ctx.json_output()) {
    print_json(ctx.out(), {{"filename", path}, {"format", format}, {"virtual-size", *size}},
               false);
  } else {
    ctx.out() << path << '\n';
  }
  return kExitOk;
}

}  // namespace

void register_image_subcommands(SubcommandTable& table) {
  table.add({{"image", "create"},
             "image create PATH SIZE [--format raw|qcow2] [--cluster-size N] [--extended-l2] "
             "[--backing FILE --backing-format raw|qcow2] [--backing-node NODE] "
             "[--compat v2|v3] [--refcount-bits N]",
             "create a new image file through fleeced (blockdev-create); sizes take K, M, G, "
             "T; prints its path",
             run_create});
}

}  // namespace fleecectl
