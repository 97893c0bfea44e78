#include "backup/fleece_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "backup/fleece_overlay.h"

namespace backup {

using blockcore::DirtyBitmapPtr;
using blockcore::Result;
using blockcore::Status;
using blockcore::Task;

namespace {

// The default copy unit (see the header) keeps each granule map (copied, released)
// at 8 MiB at most.
constexpr uint64_t kMinGranularity = 4096;
constexpr uint64_t kMaxGranules = uint64_t{1} << 26;

}  // namespace

uint64_t default_copy_granularity(uint64_t disk_size, uint64_t request_alignment) {
  uint64_t g = std::max(kMinGranularity, request_alignment);
  while ((disk_size + g - 1) / g > kMaxGranules) g *= 2;
  return g;
}

uint64_t Fleece::overlay_bytes() const { return overlay ? overlay->allocated_bytes() : 0; }

FleeceManager::FleeceManager(blockcore::io::BlockingPool& pool, BrokenHandler on_broken)
    : pool_(pool), on_broken_(std::move(on_broken)) {}

FleeceManager::~FleeceManager() {
  for (const auto& [id, f] : fleeces_) f->filter->remove(*f->snapshot);
}

FleecePtr FleeceManager::find(const std::string& id) const {
  std::lock_guard g(mu_);
  auto it = fleeces_.find(id);
  return it == fleeces_.end() ? nullptr : it->second;
}

std::vector<FleecePtr> FleeceManager::list() const {
  std::lock_guard g(mu_);
  std::vector<FleecePtr> out;
  for (const auto& [id, f] : fleeces_) out.push_back(f);
  return out;
}

Task<Result<FleecePtr>> FleeceManager::start(const FleeceRequest& req) {
  if (req.id.empty()) co_return Status::invalid("a fleece needs an id");
  if (!req.live) co_return Status::invalid("a fleece needs a node");
  if (req.overlay_dir.empty()) {
    co_return Status::invalid("no overlay folder: give 'overlay' or set fleecing.overlay-dir");
  }
  blockcore::BlockNode& live = *req.live;
  if (live.read_only()) {
    co_return Status::invalid("node '" + live.name() + "' is read-only; it needs no fleecing "
                              "(export it read-only instead)");
  }
  {
    std::lock_guard g(mu_);
    FLEECE_CO_RETURN_IF_ERROR(check_free_locked(req.id, nullptr));
  }

  auto f = std::make_shared<Fleece>();
  f->id = req.id;
  f->live = req.live;
  if (req.bitmap) {
    Result<DirtyBitmapPtr> b = live.bitmaps().lookup(*req.bitmap);
    if (!b.is_ok()) co_return b.status();
    f->bitmap = *req.bitmap;
    f->live_bitmap = b.value();
    if (f->live_bitmap->inconsistent()) {
      co_return Status::invalid("Bitmap '" + f->bitmap + "' is inconsistent and cannot be used; "
                                "clear it (the next backup is then a full one) or remove it");
    }
    std::lock_guard g(mu_);
    FLEECE_CO_RETURN_IF_ERROR(check_free_locked(req.id, f->live_bitmap));
  }

  blockcore::CbwOptions cbw = req.cbw;
  if (cbw.granularity == 0) {
    cbw.granularity = default_copy_granularity(live.size(), live.info().request_alignment);
  }
  Result<std::shared_ptr<blockcore::FileNode>> overlay =
      create_overlay(req.overlay_dir, req.id, live.size(), pool_);
  if (!overlay.is_ok()) co_return overlay.status();
  f->overlay = overlay.value();
  f->snapshot = std::make_shared<blockcore::FleeceSnapshot>(
      req.id, req.live, f->overlay, cbw,
      [handler = on_broken_, id = req.id, node = live.name()](const std::string& reason) {
        if (handler) handler(id, node, reason);
      });
  f->view = std::make_shared<blockcore::SnapshotAccessNode>("fleece-" + req.id, f->snapshot);
  if (f->live_bitmap) {
    // A named variable, not a temporary in the co_await expression: gcc 12 frees the
    // std::string of such a temporary wrongly (invalid free at run time).
    const blockcore::BitmapOptions frozen_opts{
        .name = f->bitmap, .granularity = f->live_bitmap->granularity(), .disabled = true};
    Result<DirtyBitmapPtr> frozen = co_await f->view->bitmaps().create(frozen_opts, live.size());
    if (!frozen.is_ok()) co_return frozen.status();
    f->frozen = frozen.value();
  }

  {
    // The snapshot point: no write in flight while the filter and the bitmap switch.
    blockcore::WriteGate::Closed paused = co_await live.pause_writes();
    std::lock_guard g(mu_);
    // Checked again: another start may have taken the id or the bitmap while this one
    // created its overlay or waited for the writes to pause.
    FLEECE_CO_RETURN_IF_ERROR(check_free_locked(f->id, f->live_bitmap));
    f->filter = blockcore::CopyBeforeWrite::attach(live);
    f->filter->add(f->snapshot);
    if (f->live_bitmap) {
      f->live_busy = blockcore::DirtyBitmap::make_busy(f->live_bitmap);
      f->frozen->restore(f->live_bitmap->freeze());
    }
    f->started = std::chrono::system_clock::now();
    fleeces_[f->id] = f;
  }
  spdlog::info("fleece '{}' of node '{}' started{}", f->id, live.name(),
               f->bitmap.empty() ? "" : " (bitmap '" + f->bitmap + "' frozen)");
  co_return f;
}

Status FleeceManager::check_free_locked(const std::string& id,
                                        const DirtyBitmapPtr& bitmap) const {
  if (fleeces_.contains(id)) return Status::error(EEXIST, "fleece '" + id + "' already exists");
  if (!bitmap) return Status::ok();
  for (const auto& [other_id, other] : fleeces_) {
    if (other->live_bitmap == bitmap) {
      return Status::error(EBUSY, "Bitmap '" + bitmap->name() + "' is frozen by fleece '" +
                                      other_id + "'");
    }
  }
  return Status::ok();
}

Task<Status> FleeceManager::end_session(const FleecePtr& f, bool rollback) {
  f->filter->remove(*f->snapshot);
  Status s;
  if (f->live_bitmap) {
    s = co_await f->live->bitmaps().end_rotation(f->live_bitmap, f->frozen->snapshot(), rollback);
    f->live_busy = {};
  }
  spdlog::info("fleece '{}' of node '{}' stopped{}", f->id, f->live->name(),
               rollback ? " and rolled back" : "");
  co_return s;
}

Task<Status> FleeceManager::stop(const std::string& id, bool rollback) {
  FleecePtr f;
  {
    std::lock_guard g(mu_);
    auto it = fleeces_.find(id);
    if (it == fleeces_.end()) co_return Status::error(ENOENT, "fleece '" + id + "' not found");
    f = it->second;
    fleeces_.erase(it);
  }
  co_return co_await end_session(f, rollback);
}

Task<void> FleeceManager::stop_all() {
  for (const FleecePtr& f : list()) {
    Status s = co_await stop(f->id, /*rollback=*/true);
    if (!s.is_ok()) spdlog::error("fleece '{}': rollback at shutdown failed: {}", f->id, s.to_string());
  }
}

}  // namespace backup
