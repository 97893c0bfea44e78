// Fleecing commands (DESIGN.md "Control socket"): fleece-start (also a `transaction`
// action type), fleece-stop and query-fleeces, over the daemon's backup::FleeceManager.
// fleece-start takes the snapshot and exports its view in one step: the export (default
// name "<node>-fleece") is read-only unless `discard` lets clients trim what they have
// stored, offers base:allocation, qemu:allocation-depth and, with `bitmap: B`,
// qemu:dirty-bitmap:B — the copy frozen at the snapshot point, which lives on the view
// node under B's name. fleece-stop removes the export (closing its connections) and
// then ends the session. fleece-start and fleece-stop rotate bitmaps, so they share the
// bitmap commands' management lock.
#include <asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backup/fleece_manager.h"
#include "server/control/arg_reader.h"
#include "server/control/blockdev_options.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/control/transaction_actions.h"
#include "server/export/export_bitmaps.h"

namespace server::control {
namespace {

using blockcore::Result;
using blockcore::Status;
using blockcore::Task;
using nlohmann::json;

constexpr char kFleeceStartType[] = "fleece-start";
// NBD's limit on export names (NBD_MAX_STRING_SIZE).
constexpr size_t kMaxNbdString = 4096;

Status fleecing_unavailable() { return generic_error("fleecing is not available in this server"); }

struct FleeceStartParams {
  std::string id;
  std::string node;
  std::string export_name;
  std::optional<std::string> bitmap;
  std::string overlay_dir;
  blockcore::CbwOptions cbw;
  bool discard = false;
};

// {id, node, export?, bitmap?, on-cbw-error?, cbw-timeout?, overlay?, overlay-limit?,
//  discard?}
FleeceStartParams read_start(ArgReader& r, const CommandContext& ctx) {
  FleeceStartParams p;
  p.id = r.required_string("id");
  p.node = r.required_string("node");
  p.export_name = r.optional_string("export").value_or(p.node + "-fleece");
  p.bitmap = r.optional_string("bitmap");
  p.cbw.granularity = 0;  // the manager's default
  p.cbw.break_guest_write =
      r.optional_enum("on-cbw-error", {"break-snapshot", "break-guest-write"})
          .value_or("break-snapshot") == "break-guest-write";
  if (std::optional<uint64_t> t = r.optional_uint64("cbw-timeout")) {
    if (*t > UINT32_MAX) r.fail(generic_error(parameter_expects(r.full_name("cbw-timeout"), "uint32")));
    p.cbw.timeout = std::chrono::seconds(*t);
  }
  p.overlay_dir = r.optional_string("overlay").value_or(ctx.overlay_dir);
  p.cbw.overlay_limit = r.optional_uint64("overlay-limit").value_or(0);
  p.discard = r.optional_bool("discard", false);
  return p;
}

// The export of a fleece's view (none when a client removed it with block-export-del).
ExportPtr view_export(const CommandContext& ctx, const backup::Fleece& f) {
  std::vector<ExportPtr> found = ctx.exports.using_node(f.view.get());
  return found.empty() ? nullptr : found.front();
}

// How a fleece names itself as a user of its live node in the graph, so blockdev-del
// of the node names it ("Node disk0 is in use: ... fleece 'backup'").
std::string graph_user(const std::string& fleece_id) { return "fleece '" + fleece_id + "'"; }

// Removes the view's export; its connections are closed by the NBD server.
void remove_view_export(CommandContext& ctx, const backup::Fleece& f) {
  for (const ExportPtr& e : ctx.exports.using_node(f.view.get())) {
    (void)ctx.exports.remove(e->name);
    ctx.export_ids->forget(e->name);
  }
}

Result<ExportPtr> make_view_export(const FleeceStartParams& p, const backup::Fleece& f) {
  auto e = std::make_shared<Export>();
  e->name = p.export_name;
  e->description = "fleecing snapshot '" + p.id + "' of node '" + p.node + "'";
  e->root = f.view;
  e->writable = p.discard;  // trims only: the view refuses writes with EROFS
  e->allocation_depth = true;
  if (p.bitmap) {
    Result<blockcore::DirtyBitmapPtr> frozen = find_export_bitmap(*f.view, *p.bitmap);
    if (!frozen.is_ok()) return frozen.status();
    if (Status s = add_export_bitmap(*e, *p.bitmap, *frozen); !s.is_ok()) return s;
  }
  return ExportPtr(e);
}

// fleece-start: prepare takes the snapshot and adds the export; abort removes the export
// and rolls the session back (a rotated bitmap gets its frozen bits back).
class FleeceStartAction final : public backup::TransactionAction {
 public:
  FleeceStartAction(CommandContext& ctx, FleeceStartParams p) : ctx_(ctx), p_(std::move(p)) {}

  std::string type() const override { return kFleeceStartType; }

  Task<Status> prepare() override {
    if (ctx_.fleeces == nullptr) co_return fleecing_unavailable();
    if (!id_wellformed(p_.id)) co_return generic_error("Invalid fleece id '" + p_.id + "'");
    blockcore::BlockNodePtr node = ctx_.graph.find(p_.node);
    if (!node) {
      co_return generic_error("Cannot find device='' nor node-name='" + p_.node + "'");
    }
    if (p_.export_name.empty() || p_.export_name.size() > kMaxNbdString) {
      co_return generic_error("Invalid export name '" + p_.export_name + "'");
    }
    if (ctx_.exports.find(p_.export_name)) {
      co_return generic_error("NBD server already has export named '" + p_.export_name + "'");
    }
    backup::FleeceRequest req;
    req.id = p_.id;
    req.live = node;
    req.bitmap = p_.bitmap;
    req.overlay_dir = p_.overlay_dir;
    req.cbw = p_.cbw;
    Result<backup::FleecePtr> started = co_await ctx_.fleeces->start(req);
    if (!started.is_ok()) co_return generic_error(error_desc_of(started.status()));
    fleece_ = started.value();

    Result<ExportPtr> e = make_view_export(p_, *fleece_);
    Status added = e.is_ok() ? ctx_.exports.add(e.value()) : e.status();
    if (added.is_ok()) {
      added = ctx_.graph.add_user(p_.node, graph_user(p_.id), /*write=*/false);
      if (!added.is_ok()) remove_view_export(ctx_, *fleece_);
    }
    if (!added.is_ok()) {
      (void)co_await ctx_.fleeces->stop(p_.id, /*rollback=*/true);
      fleece_ = nullptr;
      co_return generic_error("exporting fleece '" + p_.id + "': " + error_desc_of(added));
    }
    co_return Status::ok();
  }

  Task<Status> abort() override {
    if (!fleece_) co_return Status::ok();
    remove_view_export(ctx_, *fleece_);
    (void)ctx_.graph.remove_user(p_.node, graph_user(p_.id));
    Status s = co_await ctx_.fleeces->stop(p_.id, /*rollback=*/true);
    fleece_ = nullptr;
    co_return s;
  }

 private:
  CommandContext& ctx_;
  const FleeceStartParams p_;
  backup::FleecePtr fleece_;
};

backup::TransactionActionPtr parse_start(ArgReader& r, CommandContext& ctx) {
  return std::make_unique<FleeceStartAction>(ctx, read_start(r, ctx));
}

asio::awaitable<Result<json>> fleece_start(const json& args, CommandContext& ctx,
                                           std::shared_ptr<ManagementLock> lock) {
  ArgReader r(args);
  backup::TransactionActionPtr action = parse_start(r, ctx);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  backup::Transaction t;
  t.add(std::move(action));
  co_return co_await run_transaction(t, *lock);
}

// fleece-stop {id, rollback?}.
asio::awaitable<Result<json>> fleece_stop(const json& args, CommandContext& ctx,
                                          std::shared_ptr<ManagementLock> lock) {
  ArgReader r(args);
  std::string id = r.required_string("id");
  bool rollback = r.optional_bool("rollback", false);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  if (ctx.fleeces == nullptr) co_return fleecing_unavailable();

  blockcore::AsyncMutex::Guard held = co_await lock->lock();
  backup::FleecePtr f = ctx.fleeces->find(id);
  if (!f) co_return generic_error("Fleece '" + id + "' not found");
  remove_view_export(ctx, *f);
  (void)ctx.graph.remove_user(f->live->name(), graph_user(id));
  Status s = co_await ctx.fleeces->stop(id, rollback);
  if (!s.is_ok()) co_return generic_error("stopping fleece '" + id + "': " + error_desc_of(s));
  co_return json::object();
}

json fleece_info(const CommandContext& ctx, const backup::Fleece& f) {
  ExportPtr e = view_export(ctx, f);
  json info = {
      {"id", f.id},
      {"node", f.live->name()},
      {"export", e ? json(e->name) : json(nullptr)},
      {"state", f.state()},
      {"overlay-bytes", f.overlay_bytes()},
      {"copied-bytes", f.snapshot->copied_bytes()},
  };
  if (!f.bitmap.empty()) info["bitmap"] = f.bitmap;
  if (f.snapshot->broken()) info["reason"] = f.snapshot->broken_reason();
  return info;
}

asio::awaitable<Result<json>> query_fleeces(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  json list = json::array();
  if (ctx.fleeces == nullptr) co_return list;
  for (const backup::FleecePtr& f : ctx.fleeces->list()) list.push_back(fleece_info(ctx, *f));
  co_return list;
}

}  // namespace

void register_fleece_actions(TransactionActionTable& table) {
  table.add(kFleeceStartType, parse_start);
}

void register_fleece_commands(CommandTable& table, const std::shared_ptr<ManagementLock>& lock) {
  table.add("fleece-start", [lock](const json& args, CommandContext& ctx) {
    return fleece_start(args, ctx, lock);
  });
  table.add("fleece-stop", [lock](const json& args, CommandContext& ctx) {
    return fleece_stop(args, ctx, lock);
  });
  table.add("query-fleeces", query_fleeces);
}

}  // namespace server::control
