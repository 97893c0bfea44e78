#include "server/daemon/bitmap_setup.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <string>
#include <utility>

#include "blockcore/base/run_blocking.h"
#include "blockcore/bitmap/node_bitmaps.h"

namespace server::daemon {

using blockcore::BlockNodePtr;
using blockcore::Status;
using blockcore::Task;

namespace {

// "fleeced.yaml:30: bitmap 'nightly' of node 'disk0'"
std::string entry_label(const config::BitmapConfig& b) {
  return b.where.to_string() + ": bitmap '" + b.name + "' of node '" + b.node + "'";
}

const char* persistence(bool persistent) { return persistent ? "persistent" : "not persistent"; }

// One entry, resolved: its node, and whether the bitmap must be created.
struct Step {
  const config::BitmapConfig* entry = nullptr;
  BlockNodePtr node;
  bool create = false;
};

// Resolves `b` against the graph without changing anything.
Status plan_entry(const config::BitmapConfig& b, blockcore::Graph& graph, Step& step) {
  const std::string label = entry_label(b);
  step.entry = &b;
  step.node = graph.find(b.node);
  if (!step.node) return Status::error(ENOENT, label + ": node '" + b.node + "' does not exist");
  blockcore::NodeBitmaps& bitmaps = step.node->bitmaps();
  if (blockcore::DirtyBitmapPtr existing = bitmaps.find(b.name)) {
    if (existing->granularity() != b.granularity) {
      return Status::invalid(
          label + ": the bitmap exists with granularity " +
          std::to_string(existing->granularity()) + ", but the configuration asks for " +
          std::to_string(b.granularity) + " (a bitmap keeps its granularity: write " +
          std::to_string(existing->granularity()) +
          " in the configuration, or remove the bitmap to start it again)");
    }
    if (existing->persistent() != b.persistent) {
      return Status::invalid(label + ": the bitmap exists and is " +
                             persistence(existing->persistent()) +
                             ", but the configuration says persistent: " +
                             (b.persistent ? "true" : "false") +
                             " (change the configuration, or remove the bitmap to create it "
                             "again)");
    }
    if (existing->inconsistent()) {
      spdlog::warn("{}: the bitmap is inconsistent (it may be stale, so every block reads as "
                   "dirty); clear it after a full backup",
                   label);
    }
    return Status::ok();
  }
  if (b.persistent && bitmaps.store() == nullptr) {
    return Status::error(ENOTSUP, label + ": node '" + b.node + "' (driver " +
                                      step.node->driver() +
                                      ") has nowhere to store a persistent bitmap: give it a "
                                      "bitmap-file (a qcow2 container for its bitmaps), or set "
                                      "persistent: false");
  }
  if (b.persistent && !bitmaps.store()->writable()) {
    return Status::error(EROFS, label + ": the bitmap does not exist and node '" + b.node +
                                    "' is read-only, so a persistent bitmap cannot be created "
                                    "in it");
  }
  step.create = true;
  return Status::ok();
}

// Removes the bitmaps a failed call created (best effort; the error that caused the
// rollback is what the caller reports).
Task<void> roll_back(const std::vector<Step>& created) {
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    Status s = co_await it->node->bitmaps().remove(it->entry->name);
    if (!s.is_ok()) {
      spdlog::error("{}: could not remove the bitmap again: {}", entry_label(*it->entry),
                    s.to_string());
    }
  }
}

}  // namespace

Task<Status> ensure_config_bitmaps(const std::vector<config::BitmapConfig>& bitmaps,
                                   blockcore::Graph& graph) {
  std::vector<Step> steps;
  steps.reserve(bitmaps.size());
  for (const config::BitmapConfig& b : bitmaps) {
    Step step;
    if (Status s = plan_entry(b, graph, step); !s.is_ok()) co_return s;
    steps.push_back(std::move(step));
  }
  std::vector<Step> created;
  for (const Step& step : steps) {
    const config::BitmapConfig& b = *step.entry;
    if (!step.create) {
      spdlog::debug("{}: exists, kept as it is", entry_label(b));
      continue;
    }
    blockcore::BitmapOptions opts;
    opts.name = b.name;
    opts.granularity = b.granularity;
    opts.persistent = b.persistent;
    opts.disabled = b.disabled;
    auto made = co_await step.node->bitmaps().create(opts, step.node->size());
    if (!made.is_ok()) {
      co_await roll_back(created);
      co_return made.status().with_context(entry_label(b));
    }
    created.push_back(step);
    spdlog::info("{}: created (granularity {}, {}{})", entry_label(b), b.granularity,
                 persistence(b.persistent), b.disabled ? ", disabled" : "");
  }
  co_return Status::ok();
}

Status ensure_config_bitmaps_blocking(const std::vector<config::BitmapConfig>& bitmaps,
                                      blockcore::Graph& graph) {
  return blockcore::run_blocking<Status>(
      [&]() -> Task<Status> { return ensure_config_bitmaps(bitmaps, graph); });
}

}  // namespace server::daemon
