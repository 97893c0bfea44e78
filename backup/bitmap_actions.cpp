#include "backup/bitmap_actions.h"

#include <cerrno>
#include <memory>
#include <utility>

namespace backup {
namespace {

using blockcore::BlockNodePtr;
using blockcore::DirtyBitmap;
using blockcore::DirtyBitmapPtr;
using blockcore::HBitmap;
using blockcore::NodeBitmaps;
using blockcore::Result;
using blockcore::Status;
using blockcore::Task;

// ---- add ------------------------------------------------------------------------------

class AddAction : public TransactionAction {
 public:
  AddAction(NodeLookup lookup, BitmapAddParams p) : lookup_(std::move(lookup)), p_(std::move(p)) {}
  std::string type() const override { return kBitmapAddType; }

  Task<Status> prepare() override {
    if (p_.name.empty()) co_return Status::invalid("Bitmap name cannot be empty");
    Result<BlockNodePtr> node = find_node(lookup_, p_.node);
    if (!node.is_ok()) co_return node.status();
    if (p_.granularity) FLEECE_CO_RETURN_IF_ERROR(check_add_granularity(*p_.granularity));
    NodeBitmaps& bitmaps = (*node)->bitmaps();
    if (bitmaps.find(p_.name)) {
      co_return Status::error(EEXIST, "Bitmap already exists: " + p_.name);
    }
    FLEECE_CO_RETURN_IF_ERROR(blockcore::check_bitmap_name(p_.name));
    if (p_.persistent) FLEECE_CO_RETURN_IF_ERROR(check_can_store(**node, p_.name));

    blockcore::BitmapOptions opts;
    opts.name = p_.name;
    if (p_.granularity) opts.granularity = *p_.granularity;
    opts.persistent = p_.persistent;
    opts.disabled = p_.disabled;
    Result<DirtyBitmapPtr> created = co_await bitmaps.create(opts, (*node)->size());
    if (!created.is_ok()) co_return created.status();
    node_ = *node;
    co_return Status::ok();
  }

  Task<Status> abort() override {
    if (!node_) co_return Status::ok();
    co_return co_await node_->bitmaps().remove(p_.name);
  }

  void clean() override { node_.reset(); }

 private:
  NodeLookup lookup_;
  BitmapAddParams p_;
  BlockNodePtr node_;  // set once the bitmap exists
};

// ---- actions on one named bitmap --------------------------------------------------------

// What remove, clear, enable and disable share: the bitmap they act on, found and checked
// in prepare() before any side effect.
class OneBitmapAction : public TransactionAction {
 public:
  OneBitmapAction(NodeLookup lookup, BitmapParams p) : lookup_(std::move(lookup)), p_(std::move(p)) {}

  void clean() override {
    bitmap_.reset();
    node_.reset();
  }

 protected:
  // Finds the bitmap and makes QEMU's `checks` (kCheck* flags); sets node_ and bitmap_.
  Status locate(unsigned checks) {
    Result<NodeBitmap> found = find_bitmap(lookup_, p_.node, p_.name);
    if (!found.is_ok()) return found.status();
    FLEECE_RETURN_IF_ERROR(check_bitmap(*found->bitmap, checks));
    node_ = found->node;
    bitmap_ = found->bitmap;
    return Status::ok();
  }

  NodeLookup lookup_;
  BitmapParams p_;
  BlockNodePtr node_;
  DirtyBitmapPtr bitmap_;
};

// ---- remove ---------------------------------------------------------------------------

class RemoveAction : public OneBitmapAction {
 public:
  using OneBitmapAction::OneBitmapAction;
  std::string type() const override { return kBitmapRemoveType; }

  Task<Status> prepare() override {
    FLEECE_CO_RETURN_IF_ERROR(locate(kCheckBusy | kCheckReadOnly));
    // Busy until commit: later actions of the transaction cannot use it.
    hold_ = DirtyBitmap::make_busy(bitmap_);
    co_return Status::ok();
  }

  Task<Status> commit() override {
    hold_ = DirtyBitmap::BusyGuard();
    co_return co_await node_->bitmaps().remove(p_.name);
  }

  Task<Status> abort() override {
    hold_ = DirtyBitmap::BusyGuard();
    co_return Status::ok();
  }

  void clean() override {
    hold_ = DirtyBitmap::BusyGuard();
    OneBitmapAction::clean();
  }

 private:
  DirtyBitmap::BusyGuard hold_;
};

// ---- clear ----------------------------------------------------------------------------

class ClearAction : public OneBitmapAction {
 public:
  using OneBitmapAction::OneBitmapAction;
  std::string type() const override { return kBitmapClearType; }

  Task<Status> prepare() override {
    // Unlike QEMU, an inconsistent bitmap may be cleared (it becomes consistent).
    FLEECE_CO_RETURN_IF_ERROR(locate(kCheckBusy | kCheckReadOnly));
    was_inconsistent_ = bitmap_->inconsistent();
    // A failed clear leaves the bitmap as it was (NodeBitmaps' contract); saved_ gets
    // exactly what was cleared, taken atomically with the clear.
    FLEECE_CO_RETURN_IF_ERROR(co_await node_->bitmaps().clear(p_.name, &saved_));
    cleared_ = true;
    co_return Status::ok();
  }

  // Puts back what the clear took: a disabled bitmap gets its copy back; an enabled one
  // gets the saved bits merged in (stored first when durable), so granules it recorded
  // since the clear stay dirty.
  Task<Status> abort() override {
    if (!cleared_) co_return Status::ok();
    NodeBitmaps& bitmaps = node_->bitmaps();
    Status s;
    if (bitmap_->enabled()) {
      s = co_await bitmaps.add_content(bitmap_, saved_);
    } else {
      s = co_await bitmaps.restore(bitmap_, saved_);
    }
    if (was_inconsistent_) bitmap_->set_inconsistent(true);
    co_return s;
  }

  void clean() override {
    saved_ = HBitmap();
    OneBitmapAction::clean();
  }

 private:
  HBitmap saved_;
  bool was_inconsistent_ = false;
  bool cleared_ = false;
};

// ---- enable / disable -----------------------------------------------------------------

class EnableAction : public OneBitmapAction {
 public:
  using OneBitmapAction::OneBitmapAction;
  std::string type() const override { return kBitmapEnableType; }

  Task<Status> prepare() override {
    // As QEMU, a read-only bitmap may be toggled (in memory: its image is read-only).
    FLEECE_CO_RETURN_IF_ERROR(locate(kCheckBusy | kCheckInconsistent));
    if (bitmap_->enabled()) co_return Status::ok();
    saved_ = bitmap_->snapshot();
    FLEECE_CO_RETURN_IF_ERROR(co_await node_->bitmaps().set_enabled(p_.name, true));
    enabled_here_ = true;
    co_return Status::ok();
  }

  // A disable earlier in the same transaction committed first: the later enable wins.
  // Prepare made the checks; a later remove of the transaction may hold it busy by now.
  Task<Status> commit() override {
    if (bitmap_->enabled()) co_return Status::ok();
    co_return co_await node_->bitmaps().set_enabled(p_.name, true, /*checked=*/true);
  }

  // Stops recording, then drops what it recorded since prepare().
  Task<Status> abort() override {
    if (!enabled_here_) co_return Status::ok();
    FLEECE_CO_RETURN_IF_ERROR(
        co_await node_->bitmaps().set_enabled(p_.name, false, /*checked=*/true));
    if (bitmap_->snapshot() == saved_) co_return Status::ok();
    co_return co_await node_->bitmaps().restore(bitmap_, saved_);
  }

  void clean() override {
    saved_ = HBitmap();
    OneBitmapAction::clean();
  }

 private:
  HBitmap saved_;
  bool enabled_here_ = false;
};

class DisableAction : public OneBitmapAction {
 public:
  using OneBitmapAction::OneBitmapAction;
  std::string type() const override { return kBitmapDisableType; }

  Task<Status> prepare() override {
    co_return locate(kCheckBusy | kCheckInconsistent);
  }

  // The bitmap records until the transaction takes effect: nothing to undo. Prepare
  // made the checks; a later remove of the same transaction may hold it busy by now.
  Task<Status> commit() override {
    if (!bitmap_->enabled()) co_return Status::ok();
    co_return co_await node_->bitmaps().set_enabled(p_.name, false, /*checked=*/true);
  }
};

// ---- merge ----------------------------------------------------------------------------

class MergeAction : public TransactionAction {
 public:
  MergeAction(NodeLookup lookup, BitmapMergeParams p)
      : lookup_(std::move(lookup)), p_(std::move(p)) {}
  std::string type() const override { return kBitmapMergeType; }

  // QEMU's order: the target, then each source, then the target's state.
  Task<Status> prepare() override {
    Result<NodeBitmap> target = find_bitmap(lookup_, p_.node, p_.target);
    if (!target.is_ok()) co_return target.status();
    std::vector<DirtyBitmapPtr> sources;
    for (const BitmapMergeSource& src : p_.sources) {
      Result<NodeBitmap> found = find_bitmap(lookup_, src.node.value_or(p_.node), src.name);
      if (!found.is_ok()) co_return found.status();
      FLEECE_CO_RETURN_IF_ERROR(check_bitmap(*found->bitmap, kCheckInconsistent));
      sources.push_back(found->bitmap);
    }
    const DirtyBitmapPtr& t = target->bitmap;
    FLEECE_CO_RETURN_IF_ERROR(check_bitmap(*t, kCheckDefault));
    for (const DirtyBitmapPtr& s : sources) {
      if (s->disk_size() != t->disk_size()) {
        co_return Status::invalid("Bitmaps are incompatible and can't be merged");
      }
    }

    // One snapshot of the sources, so abort knows exactly which bits the merge added.
    union_ = std::make_shared<DirtyBitmap>(t->name(), t->disk_size(), t->granularity());
    for (const DirtyBitmapPtr& s : sources) union_->merge_from(*s);
    node_ = target->node;
    bitmap_ = t;
    // Writes from here on are recorded apart, so an undo never drops one of them.
    tracker_ = node_->bitmaps().add_write_tracker(t->granularity(), t->disk_size());
    saved_ = t->snapshot();
    const DirtyBitmapPtr merged[] = {union_};
    if (Status s = co_await node_->bitmaps().merge(p_.target, merged); !s.is_ok()) {
      node_->bitmaps().remove_write_tracker(tracker_);
      tracker_.reset();
      co_return s;
    }
    merged_ = true;
    co_return Status::ok();
  }

  Task<Status> abort() override {
    if (!merged_) co_return Status::ok();
    if (!bitmap_->enabled()) co_return co_await node_->bitmaps().restore(bitmap_, saved_);
    // Recording: clear only the granules the merge set and no write touched since
    // prepare. (The stored copy of a persistent bitmap keeps them: a superset is safe.)
    HBitmap added = union_->snapshot();
    const uint64_t bits = added.size();
    const HBitmap written = tracker_->snapshot();
    for (const HBitmap* keep : {static_cast<const HBitmap*>(&saved_), &written}) {
      for (uint64_t i = keep->next_set(0, bits); i < bits; i = keep->next_set(i, bits)) {
        const uint64_t end = keep->next_clear(i, bits);
        added.reset(i, end - i);
        i = end;
      }
    }
    const uint64_t g = bitmap_->granularity();
    for (uint64_t i = added.next_set(0, bits); i < bits; i = added.next_set(i, bits)) {
      const uint64_t end = added.next_clear(i, bits);
      bitmap_->reset(i * g, (end - i) * g);
      i = end;
    }
    co_return Status::ok();
  }

  void clean() override {
    if (tracker_) node_->bitmaps().remove_write_tracker(tracker_);
    tracker_.reset();
    saved_ = HBitmap();
    union_.reset();
    bitmap_.reset();
    node_.reset();
  }

 private:
  NodeLookup lookup_;
  BitmapMergeParams p_;
  DirtyBitmapPtr tracker_;
  BlockNodePtr node_;
  DirtyBitmapPtr bitmap_;
  DirtyBitmapPtr union_;
  HBitmap saved_;
  bool merged_ = false;
};

}  // namespace

TransactionActionPtr make_bitmap_add(NodeLookup lookup, BitmapAddParams params) {
  return std::make_unique<AddAction>(std::move(lookup), std::move(params));
}
TransactionActionPtr make_bitmap_remove(NodeLookup lookup, BitmapParams params) {
  return std::make_unique<RemoveAction>(std::move(lookup), std::move(params));
}
TransactionActionPtr make_bitmap_clear(NodeLookup lookup, BitmapParams params) {
  return std::make_unique<ClearAction>(std::move(lookup), std::move(params));
}
TransactionActionPtr make_bitmap_enable(NodeLookup lookup, BitmapParams params) {
  return std::make_unique<EnableAction>(std::move(lookup), std::move(params));
}
TransactionActionPtr make_bitmap_disable(NodeLookup lookup, BitmapParams params) {
  return std::make_unique<DisableAction>(std::move(lookup), std::move(params));
}
TransactionActionPtr make_bitmap_merge(NodeLookup lookup, BitmapMergeParams params) {
  return std::make_unique<MergeAction>(std::move(lookup), std::move(params));
}

}  // namespace backup
