// Backup subcommands: fleecectl backup full|incremental|restore|list — a reference
// backup client over the fleece API and NBD. `full` and `incremental` start a fleece of
// NODE with bitmap B (fleece-start), pull the view into a new qcow2 file of the folder's
// chain (backup_client/backup_pull) and end the fleece: fleece-stop when the point is
// stored, fleece-stop with rollback (the bitmap keeps the changes) on any failure,
// SIGINT/SIGTERM included. The folder's manifest.json records the chain. `restore`
// writes the disk as of a point without the daemon.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>

#include "server/fleecectl/backup_client/backup_pull.h"
#include "server/fleecectl/backup_client/extent_plan.h"
#include "server/fleecectl/backup_client/manifest.h"
#include "server/fleecectl/backup_client/progress.h"
#include "server/fleecectl/backup_client/restore.h"
#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr char kDefaultNbdUri[] = "nbd+unix:///?socket=/run/fleeced/nbd.sock";
constexpr int kExitInterrupted = 130;

// SIGINT, SIGTERM and SIGHUP held pending while a backup runs, so the pull can notice
// them (sigpending) and roll the fleece back instead of dying with it active.
class HeldSignals {
 public:
  HeldSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGHUP);
    sigprocmask(SIG_BLOCK, &set_, &old_);
  }
  // The signals stay blocked: fleecectl exits after the backup, a pending one must not
  // kill it halfway through its cleanup.
  bool pending() const {
    sigset_t p;
    sigemptyset(&p);
    sigpending(&p);
    return sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1 ||
           sigismember(&p, SIGHUP) == 1;
  }

 private:
  sigset_t set_;
  sigset_t old_;
};

struct PullArgs {
  std::string node, bitmap, dir, nbd_uri;
  std::optional<uint64_t> max_rate, overlay_limit;
};

std::optional<uint64_t> size_option(ArgParser& args, const std::string& name) {
  auto text = args.option(name);
  if (!text) return std::nullopt;
  auto v = parse_size(*text);
  if (!v) args.fail("--" + name + " wants a size (bytes, or with K/M/G/T), not '" + *text + "'");
  return v;
}

std::optional<PullArgs> read_pull_args(ArgParser& args) {
  PullArgs p;
  auto bitmap = args.option("bitmap");
  auto to = args.option("to");
  auto nbd = args.option("nbd");
  p.max_rate = size_option(args, "max-rate");
  p.overlay_limit = size_option(args, "overlay-limit");
  p.node = args.positional("NODE");
  if (!bitmap) args.fail("missing --bitmap B");
  if (!to) args.fail("missing --to DIR");
  if (!args.finish()) return std::nullopt;
  p.bitmap = *bitmap;
  p.dir = *to;
  const char* env = std::getenv("FLEECE_NBD_URI");
  p.nbd_uri = nbd ? *nbd : (env != nullptr && *env != '\0' ? env : kDefaultNbdUri);
  return p;
}

// The chain the new point extends (empty for a full backup), or an error message.
std::optional<backup::Manifest> chain_for(const PullArgs& p, bool incremental, std::string* error) {
  std::error_code ec;
  fs::create_directories(p.dir, ec);
  if (ec) {
    *error = "cannot create " + p.dir + ": " + ec.message();
    return std::nullopt;
  }
  auto m = backup::load_manifest(p.dir, error);
  if (!error->empty()) return std::nullopt;
  if (!incremental) {
    if (m && !m->points.empty()) {
      *error = p.dir + " already holds a backup chain; a full backup starts a new folder";
      return std::nullopt;
    }
    return backup::Manifest{};
  }
  if (!m || m->points.empty()) {
    *error = p.dir + " has no full backup: run `fleecectl backup full` into it first";
    return std::nullopt;
  }
  const backup::Point& last = m->points.back();
  if (last.node != p.node || last.bitmap != p.bitmap) {
    *error = "the chain in " + p.dir + " is of node '" + last.node + "' with bitmap '" +
             last.bitmap + "', not '" + p.node + "' with '" + p.bitmap + "'";
    return std::nullopt;
  }
  return m;
}

// Ends the fleece; on failure prints why and returns false.
bool stop_fleece(CliContext& ctx, const std::string& id, bool rollback) {
  json a = {{"id", id}};
  if (rollback) a["rollback"] = true;
  return ctx.call("fleece-stop", a).has_value();
}

int run_pull(CliContext& ctx, ArgParser& args, const Subcommand& self, bool incremental) {
  auto p = read_pull_args(args);
  if (!p) return ctx.usage_error(args.error(), self.synopsis);
  std::string error;
  auto chain = chain_for(*p, incremental, &error);
  if (!chain) {
    ctx.err() << "fleecectl: " << error << '\n';
    return kExitCommandFailed;
  }
  backup::Point point;
  point.index = static_cast<unsigned>(chain->points.size());
  point.kind = incremental ? "incremental" : "full";
  point.file = backup::point_file_name(point.index, point.kind);
  point.backing = incremental ? chain->points.back().file : "";
  point.node = p->node;
  point.bitmap = p->bitmap;
  const std::string target = (fs::path(p->dir) / point.file).string();
  if (fs::exists(target)) {
    ctx.err() << "fleecectl: " << target << " exists but is not in the manifest; remove it\n";
    return kExitCommandFailed;
  }

  HeldSignals signals;
  const std::string id = "backup-" + std::to_string(::getpid()) + "-" +
                         std::to_string(std::time(nullptr));
  json start = {{"id", id}, {"node", p->node}, {"export", id}, {"bitmap", p->bitmap}};
  if (p->overlay_limit) start["overlay-limit"] = *p->overlay_limit;
  point.time = backup::utc_now();
  if (!ctx.call("fleece-start", start)) return ctx.failure();

  backup::PullOptions o;
  o.uri = backup::uri_with_export(p->nbd_uri, id);
  o.bitmap_context = incremental ? "qemu:dirty-bitmap:" + p->bitmap : "";
  o.target_path = target;
  o.backing = point.backing;
  o.max_rate = p->max_rate.value_or(0);
  o.interrupted = [&signals] { return signals.pending(); };
  backup::Progress progress(backup::Progress::mode_for(ctx.json_output()), ctx.out(), ctx.err());
  backup::PullResult r;
  bool ok = !o.uri.empty();
  if (!ok) error = "bad --nbd URI '" + p->nbd_uri + "'";
  json info = {{"point", point.index}, {"kind", point.kind}, {"node", p->node},
               {"bitmap", p->bitmap}};
  if (ok) ok = backup::pull_point(o, progress, info, &r, &error);
  if (ok) {
    point.virtual_size = r.virtual_size;
    point.bytes_read = r.bytes_read;
    point.bytes_written = r.bytes_written;
    chain->points.push_back(point);
    ok = backup::save_manifest(p->dir, *chain, &error);
    // The point counts once the fleece ended well (its bitmap changes are then consumed).
    if (ok && !stop_fleece(ctx, id, false)) {
      chain->points.pop_back();
      std::string ignored;
      (void)backup::save_manifest(p->dir, *chain, &ignored);
      ok = false;
      error = "fleece-stop failed";
    }
    if (!ok) {
      std::error_code ec;
      fs::remove(target, ec);
    }
  }
  if (!ok) {
    const bool rolled_back = stop_fleece(ctx, id, true);
    progress.fail(error);
    ctx.err() << "fleecectl: backup failed: " << error << "; "
              << (rolled_back ? "the fleece was rolled back (bitmap '" + p->bitmap +
                                    "' keeps the changes)"
                              : "rolling back fleece '" + id + "' failed too")
              << ", no point was added to " << p->dir << '\n';
    return signals.pending() ? kExitInterrupted : kExitCommandFailed;
  }
  json summary = {{"point", point.index},          {"kind", point.kind},
                  {"file", target},                {"virtual-size", point.virtual_size},
                  {"bytes-read", point.bytes_read}, {"bytes-written", point.bytes_written}};
  progress.finish(summary);
  if (!ctx.json_output()) {
    ctx.out() << "point " << point.index << " (" << point.kind << "): " << target << ", "
              << format_size(point.bytes_read) << " read, " << format_size(point.bytes_written)
              << " stored\n";
  }
  return kExitOk;
}

int run_full(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  return run_pull(ctx, args, self, false);
}

int run_incremental(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  return run_pull(ctx, args, self, true);
}

std::optional<backup::Manifest> load_chain(CliContext& ctx, const std::string& dir) {
  std::string error;
  auto m = backup::load_manifest(dir, &error);
  if (!m && error.empty()) error = "no backup chain in " + dir + " (no " + backup::kManifestName + ")";
  if (!m) ctx.err() << "fleecectl: " << error << '\n';
  return m;
}

int run_restore(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  auto point_text = args.option("point");
  auto to = args.option("to");
  std::string format = args.option("format").value_or("raw");
  std::string dir = args.positional("DIR");
  std::optional<unsigned> index;
  if (point_text) {
    auto v = parse_size(*point_text);
    if (!v || point_text->find_first_not_of("0123456789") != std::string::npos || *v > 1u << 30) {
      args.fail("--point wants a point number, not '" + *point_text + "'");
    } else {
      index = static_cast<unsigned>(*v);
    }
  }
  if (!to) args.fail("missing --to FILE");
  if (format != "raw" && format != "qcow2") args.fail("--format must be raw or qcow2");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto m = load_chain(ctx, dir);
  if (!m) return kExitCommandFailed;
  const backup::Point* point = backup::find_point(*m, index);
  if (point == nullptr) {
    ctx.err() << "fleecectl: " << dir << " has no point "
              << (index ? std::to_string(*index) : std::string()) << '\n';
    return kExitCommandFailed;
  }
  const std::string chain_file = (fs::path(dir) / point->file).string();
  backup::Progress progress(backup::Progress::mode_for(ctx.json_output()), ctx.out(), ctx.err());
  backup::RestoreResult r;
  std::string error;
  json info = {{"point", point->index}, {"file", chain_file}, {"to", *to}, {"format", format}};
  if (!backup::restore_point(chain_file, *to, format, progress, info, &r, &error)) {
    progress.fail(error);
    ctx.err() << "fleecectl: restore failed: " << error << '\n';
    return kExitCommandFailed;
  }
  json summary = {{"point", point->index}, {"to", *to}, {"format", format},
                  {"virtual-size", r.virtual_size}, {"bytes-written", r.bytes_written}};
  progress.finish(summary);
  if (!ctx.json_output()) {
    ctx.out() << *to << ": the disk as of point " << point->index << " (" << point->time
              << ")\n";
  }
  return kExitOk;
}

int run_list(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  std::string dir = args.positional("DIR");
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto m = load_chain(ctx, dir);
  if (!m) return kExitCommandFailed;
  if (ctx.json_output()) {
    print_json(ctx.out(), backup::manifest_to_json(*m), false);
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  for (const backup::Point& p : m->points) {
    rows.push_back({std::to_string(p.index), p.kind, p.time, p.file,
                    format_size(p.bytes_read), format_size(p.bytes_written)});
  }
  print_table(ctx.out(), {"POINT", "KIND", "TIME", "FILE", "READ", "STORED"}, rows);
  return kExitOk;
}

constexpr char kPullOptions[] =
    " --bitmap B --to DIR [--nbd URI] [--max-rate SIZE] [--overlay-limit SIZE]";

}  // namespace

void register_backup_subcommands(SubcommandTable& table) {
  table.add({{"backup", "full"},
             std::string("backup full NODE") + kPullOptions,
             "snapshot NODE (fleece-start with bitmap B) and store all of it as point 0 of "
             "the chain in DIR; --nbd: fleeced's NBD socket (default $FLEECE_NBD_URI, else " +
                 std::string(kDefaultNbdUri) + ")",
             run_full});
  table.add({{"backup", "incremental"},
             std::string("backup incremental NODE") + kPullOptions,
             "store what bitmap B recorded since the last point as the next point of DIR's "
             "chain (a qcow2 file backed by the one before)",
             run_incremental});
  table.add({{"backup", "restore"},
             "backup restore DIR [--point N] --to FILE [--format raw|qcow2]",
             "write the disk as of point N (default: the latest) to the new FILE (raw by "
             "default); needs no daemon",
             run_restore});
  table.add({{"backup", "list"}, "backup list DIR", "list the points of the chain in DIR",
             run_list});
}

}  // namespace fleecectl
