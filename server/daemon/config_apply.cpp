#include "server/daemon/config_apply.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <set>

#include <spdlog/spdlog.h>

#include "blockcore/filters/throttle_node.h"
#include "server/export/export_bitmaps.h"

namespace server::daemon {

using blockcore::NodeSpec;
using blockcore::Result;
using blockcore::Status;

bool same_export(const config::ExportConfig& a, const config::ExportConfig& b) {
  return a.name == b.name && a.node == b.node && a.description == b.description &&
         a.writable == b.writable && a.bitmaps == b.bitmaps &&
         a.allocation_depth == b.allocation_depth && a.allow == b.allow;
}

ConfigApplier::ConfigApplier(blockcore::Graph& graph, ExportRegistry& exports)
    : graph_(graph), exports_(exports) {}

Result<ExportPtr> ConfigApplier::make_export(const config::ExportConfig& ec,
                                             blockcore::Graph& graph) {
  auto root = graph.find(ec.node);
  if (!root) {
    return Status::error(ENOENT, ec.where.to_string() + ": export '" + ec.name +
                                     "': node '" + ec.node + "' does not exist");
  }
  if (ec.writable && root->read_only()) {
    return Status::invalid(ec.where.to_string() + ": export '" + ec.name +
                           "' is writable but node '" + ec.node + "' is read-only");
  }
  auto e = std::make_shared<Export>();
  e->name = ec.name;
  e->description = ec.description;
  e->root = std::move(root);
  e->writable = ec.writable;
  e->bitmaps = ec.bitmaps;
  e->allocation_depth = ec.allocation_depth;
  e->allow = ec.allow;
  // ORDER: the bitmaps an export offers must exist when it is built, so the config's
  // top-level `bitmaps:` are ensured (created if missing) after the nodes open and
  // before any export is built, at start-up and on reload alike.
  if (Status s = bind_export_bitmaps(*e); !s.is_ok()) {
    std::string where = s.code() == ENOENT ? " on node '" + ec.node + "' or its backing chain" : "";
    return Status::error(s.code(), ec.where.to_string() + ": export '" + ec.name + "': " +
                                       s.message() + where);
  }
  return ExportPtr(std::move(e));
}

bool ConfigApplier::retune_throttle(const std::string& name, NodeSpec& applied,
                                    const NodeSpec& want, Status& error) {
  NodeSpec same_limits = applied;
  same_limits.throttle = want.throttle;
  if (applied.driver != "throttle" || !blockcore::equivalent(same_limits, want)) return false;
  auto* node = dynamic_cast<blockcore::ThrottleNode*>(graph_.find(name).get());
  if (!node) return false;
  error = node->set_limits(want.throttle);
  if (error.is_ok()) {
    applied.throttle = want.throttle;
    spdlog::info("reload: node '{}' has new throttle limits", name);
  } else {
    error = error.with_context("node '" + name + "'");
  }
  return true;
}

Status ConfigApplier::add_nodes(const std::vector<const NodeSpec*>& specs,
                                std::vector<std::string>& added) {
  std::vector<const NodeSpec*> pending = specs;
  while (!pending.empty()) {
    std::vector<const NodeSpec*> next;
    for (const NodeSpec* spec : pending) {
      std::vector<std::string> refs;
      blockcore::collect_references(*spec, refs);
      bool ready = true;
      for (const auto& r : refs) {
        if (!graph_.find(r)) ready = false;
      }
      if (!ready) {
        next.push_back(spec);
        continue;
      }
      auto node = graph_.add(*spec);
      if (!node.is_ok()) {
        return node.status().with_context(spec->origin.empty() ? spec->node_name : spec->origin);
      }
      added.push_back(spec->node_name);
    }
    if (next.size() == pending.size()) {
      return Status::error(ENOENT, "node '" + next.front()->node_name +
                                       "' refers to a node that does not exist (or a cycle)");
    }
    pending = std::move(next);
  }
  return Status::ok();
}

Status ConfigApplier::add_export(const config::ExportConfig& ec) {
  auto e = make_export(ec, graph_);
  if (!e.is_ok()) return e.status();
  const std::string user = graph_user_name(ec.name);
  if (Status s = graph_.add_user(ec.node, user, ec.writable); !s.is_ok()) {
    return s.with_context(ec.where.to_string() + ": export '" + ec.name + "'");
  }
  if (Status s = exports_.add(e.value()); !s.is_ok()) {
    (void)graph_.remove_user(ec.node, user);
    return s;
  }
  return Status::ok();
}

void ConfigApplier::remove_export(const std::string& name) {
  if (ExportPtr e = exports_.find(name)) {
    (void)exports_.remove(name);
    (void)graph_.remove_user(e->node_name(), graph_user_name(name));
  }
}

Status ConfigApplier::apply_initial(const config::Config& cfg) {
  std::vector<const NodeSpec*> specs;
  for (const auto& n : cfg.nodes) specs.push_back(&n);
  std::vector<std::string> added_nodes;
  std::vector<std::string> added_exports;
  auto undo = [&] {
    for (const auto& name : added_exports) remove_export(name);
    for (auto it = added_nodes.rbegin(); it != added_nodes.rend(); ++it) {
      (void)graph_.remove(*it);
    }
  };
  if (Status s = add_nodes(specs, added_nodes); !s.is_ok()) {
    undo();
    return s;
  }
  if (nodes_ready_) {
    if (Status s = nodes_ready_(cfg); !s.is_ok()) {
      undo();
      return s;
    }
  }
  for (const auto& ec : cfg.exports) {
    if (Status s = add_export(ec); !s.is_ok()) {
      undo();
      return s;
    }
    added_exports.push_back(ec.name);
  }
  for (const auto& n : cfg.nodes) applied_nodes_.emplace(n.node_name, n);
  for (const auto& ec : cfg.exports) applied_exports_.emplace(ec.name, ec);
  return Status::ok();
}

asio::awaitable<Status> ConfigApplier::apply_reload(const config::Config& cfg,
                                                    unsigned drain_ms) {
  std::map<std::string, const NodeSpec*> want_nodes;
  for (const auto& n : cfg.nodes) want_nodes.emplace(n.node_name, &n);
  std::map<std::string, const config::ExportConfig*> want_exports;
  for (const auto& e : cfg.exports) want_exports.emplace(e.name, &e);

  Status result;
  auto note = [&](const Status& s) {
    if (!s.is_ok()) {
      spdlog::error("reload: {}", s.to_string());
      if (result.is_ok()) result = s;
    }
  };

  // Nodes that go away or change (a changed node is closed and opened again) — except a
  // throttle node whose limits alone changed: they apply in place, no client drops.
  std::set<std::string> drop_nodes;
  for (auto& [name, spec] : applied_nodes_) {
    auto it = want_nodes.find(name);
    if (it != want_nodes.end() && !blockcore::equivalent(spec, *it->second)) {
      Status retuned;
      const bool in_place = retune_throttle(name, spec, *it->second, retuned);
      note(retuned);
      if (in_place) continue;
    }
    if (it == want_nodes.end() || !blockcore::equivalent(spec, *it->second)) {
      drop_nodes.insert(name);
    }
  }
  // Nodes that refer to a dropped node must be reopened too.
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [name, spec] : applied_nodes_) {
      if (drop_nodes.count(name)) continue;
      std::vector<std::string> refs;
      blockcore::collect_references(spec, refs);
      for (const auto& r : refs) {
        if (drop_nodes.count(r)) {
          drop_nodes.insert(name);
          grew = true;
          break;
        }
      }
    }
  }
  std::set<std::string> drop_exports;
  for (const auto& [name, ec] : applied_exports_) {
    auto it = want_exports.find(name);
    if (it == want_exports.end() || !same_export(ec, *it->second) || drop_nodes.count(ec.node) ||
        !exports_.find(name)) {  // deleted over the control socket: the config re-adds it
      drop_exports.insert(name);
    }
  }

  for (const auto& name : drop_exports) {
    remove_export(name);
    applied_exports_.erase(name);
    spdlog::info("reload: export '{}' removed", name);
  }
  // Close dropped nodes, parents before children; connections may still be draining,
  // so retry EBUSY for a while.
  auto executor = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms);
  std::vector<std::string> order(drop_nodes.begin(), drop_nodes.end());
  while (!order.empty()) {
    std::vector<std::string> still;
    Status last;
    for (const auto& name : order) {
      Status s = graph_.remove(name);
      if (s.is_ok() || s.code() == ENOENT) {
        applied_nodes_.erase(name);
        spdlog::info("reload: node '{}' closed", name);
      } else {
        still.push_back(name);
        last = s;
      }
    }
    if (still.empty()) break;
    if (still.size() == order.size() && std::chrono::steady_clock::now() >= deadline) {
      note(last);  // still in use: they stay open as they are
      break;
    }
    order = std::move(still);
    asio::steady_timer t(executor, std::chrono::milliseconds(20));
    co_await t.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }

  // Open new and changed nodes.
  std::vector<const NodeSpec*> to_add;
  for (const auto& n : cfg.nodes) {
    if (!applied_nodes_.count(n.node_name)) to_add.push_back(&n);
  }
  std::vector<std::string> added;
  note(add_nodes(to_add, added));
  for (const auto& name : added) {
    applied_nodes_.emplace(name, *want_nodes.at(name));
    spdlog::info("reload: node '{}' opened", name);
  }
  if (nodes_ready_) note(nodes_ready_(cfg));
  for (const auto& ec : cfg.exports) {
    if (applied_exports_.count(ec.name)) continue;
    Status s = add_export(ec);
    note(s);
    if (s.is_ok()) {
      applied_exports_.emplace(ec.name, ec);
      spdlog::info("reload: export '{}' added", ec.name);
    }
  }
  co_return result;
}

}  // namespace server::daemon
