#include "blockcore/bitmap/node_bitmaps.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "blockcore/base/run_blocking.h"

namespace blockcore {
namespace {

Status not_found(const std::string& name) {
  return Status::error(ENOENT, "Dirty bitmap '" + name + "' not found");
}
Status busy_error(const std::string& name) {
  return Status::error(EBUSY, "Bitmap '" + name +
                                  "' is currently in use by another operation and cannot be used");
}
Status read_only_error(const std::string& name) {
  return Status::read_only("Bitmap '" + name + "' is readonly and cannot be modified");
}
Status inconsistent_error(const std::string& name) {
  return Status::invalid("Bitmap '" + name +
                         "' is inconsistent and cannot be used; clear or remove it");
}

// The checks QEMU makes before a bitmap may be changed (BDRV_BITMAP_DEFAULT).
Status check_modifiable(const DirtyBitmap& b, bool allow_inconsistent) {
  if (b.busy()) return busy_error(b.name());
  if (b.read_only()) return read_only_error(b.name());
  if (!allow_inconsistent && b.inconsistent()) return inconsistent_error(b.name());
  return Status::ok();
}

}  // namespace

NodeBitmaps::NodeBitmaps(std::string node_name) : node_name_(std::move(node_name)) {}

NodeBitmaps::~NodeBitmaps() {
  if (store() == nullptr) return;
  Status s = run_blocking<Status>([this]() { return close_store(); });
  if (!s.is_ok()) spdlog::error("{}: storing dirty bitmaps failed: {}", node_name_, s.to_string());
}

bool NodeBitmaps::try_mark(uint64_t off, uint64_t len) {
  bool done = true;
  std::lock_guard g(mu_);
  for (const DirtyBitmapPtr& t : trackers_) t->mark(off, len);
  for (const DirtyBitmapPtr& b : bitmaps_) {
    if (!b->enabled()) continue;
    if (b->durable()) {
      if (done && !b->all_dirty(off, len)) done = false;
    } else {
      b->mark(off, len);
    }
  }
  return done;
}

Task<Status> NodeBitmaps::before_write(uint64_t off, uint64_t len) {
  std::vector<DirtyBitmapPtr> to_persist;
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    for (const DirtyBitmapPtr& t : trackers_) t->mark(off, len);
    for (const DirtyBitmapPtr& b : bitmaps_) {
      if (!b->enabled()) continue;
      if (b->durable() && store_) {
        if (!b->all_dirty(off, len)) to_persist.push_back(b);
      } else {
        b->mark(off, len);
      }
    }
    store = store_;
  }
  if (to_persist.empty()) co_return Status::ok();
  Status s = co_await store->persist_marks(to_persist, off, len);
  if (!s.is_ok()) {
    co_return s.with_context(node_name_ + ": recording the write in its dirty bitmaps");
  }
  co_return Status::ok();
}

void NodeBitmaps::attach_store(std::shared_ptr<BitmapStore> store,
                               std::vector<DirtyBitmapPtr> loaded) {
  if (store) has_store_.store(true, std::memory_order_release);
  {
    std::lock_guard g(mu_);
    store_ = std::move(store);
    for (DirtyBitmapPtr& b : loaded) {
      auto it = std::lower_bound(bitmaps_.begin(), bitmaps_.end(), b->name(),
                                 [](const DirtyBitmapPtr& x, const std::string& n) { return x->name() < n; });
      if (it != bitmaps_.end() && (*it)->name() == b->name()) {
        spdlog::warn("{}: bitmap '{}' is already defined; the stored one is ignored", node_name_,
                     b->name());
        continue;
      }
      bitmaps_.insert(it, std::move(b));
    }
  }
  update_tracking();
}

Task<Status> NodeBitmaps::close_store() {
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = std::move(store_);
    store_.reset();
  }
  if (!store) co_return Status::ok();
  Status s = co_await store->close();
  // Whatever happened, nothing is stored any more: the bitmaps live on in memory only.
  {
    std::lock_guard g(mu_);
    for (const DirtyBitmapPtr& b : bitmaps_) b->set_durable(false);
  }
  has_store_.store(false, std::memory_order_release);
  co_return s;
}

BitmapStore* NodeBitmaps::store() const {
  std::lock_guard g(mu_);
  return store_.get();
}

DirtyBitmapPtr NodeBitmaps::find(const std::string& name) const {
  std::lock_guard g(mu_);
  auto it = std::lower_bound(bitmaps_.begin(), bitmaps_.end(), name,
                             [](const DirtyBitmapPtr& x, const std::string& n) { return x->name() < n; });
  if (it != bitmaps_.end() && (*it)->name() == name) return *it;
  return nullptr;
}

Result<DirtyBitmapPtr> NodeBitmaps::lookup(const std::string& name) const {
  DirtyBitmapPtr b = find(name);
  if (!b) return not_found(name);
  return b;
}

std::vector<DirtyBitmapPtr> NodeBitmaps::list() const {
  std::lock_guard g(mu_);
  return bitmaps_;
}

Task<Result<DirtyBitmapPtr>> NodeBitmaps::create(const BitmapOptions& opts, uint64_t disk_size) {
  FLEECE_CO_RETURN_IF_ERROR(check_bitmap_name(opts.name));
  FLEECE_CO_RETURN_IF_ERROR(check_bitmap_granularity(opts.granularity));
  if (find(opts.name)) co_return Status::error(EEXIST, "Bitmap already exists: " + opts.name);
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  if (opts.persistent) {
    if (!store) {
      co_return Status::not_supported(
          "Node '" + node_name_ + "' cannot store persistent bitmaps (a qcow2 image stores "
          "them; a raw or file node needs a 'bitmap-file')");
    }
    if (!store->writable()) {
      co_return Status::read_only("Node '" + node_name_ +
                                  "' is read-only; cannot store a persistent bitmap");
    }
  }
  auto b = std::make_shared<DirtyBitmap>(opts.name, disk_size, opts.granularity);
  b->set_enabled(!opts.disabled);
  b->set_persistent(opts.persistent);
  if (opts.persistent) FLEECE_CO_RETURN_IF_ERROR(co_await store->create(b));
  {
    std::lock_guard g(mu_);
    auto it = std::lower_bound(bitmaps_.begin(), bitmaps_.end(), opts.name,
                               [](const DirtyBitmapPtr& x, const std::string& n) { return x->name() < n; });
    if (it != bitmaps_.end() && (*it)->name() == opts.name) {
      co_return Status::error(EEXIST, "Bitmap already exists: " + opts.name);
    }
    bitmaps_.insert(it, b);
  }
  update_tracking();
  co_return b;
}

Task<Status> NodeBitmaps::remove(const std::string& name) {
  DirtyBitmapPtr b = find(name);
  if (!b) co_return not_found(name);
  if (b->busy()) co_return busy_error(name);
  if (b->persistent()) {
    if (b->read_only()) co_return read_only_error(name);
    std::shared_ptr<BitmapStore> store;
    {
      std::lock_guard g(mu_);
      store = store_;
    }
    if (store) FLEECE_CO_RETURN_IF_ERROR(co_await store->remove(b));
  }
  {
    std::lock_guard g(mu_);
    std::erase(bitmaps_, b);
  }
  update_tracking();
  co_return Status::ok();
}

Task<Status> NodeBitmaps::clear(const std::string& name, HBitmap* cleared) {
  DirtyBitmapPtr b = find(name);
  if (!b) co_return not_found(name);
  FLEECE_CO_RETURN_IF_ERROR(check_modifiable(*b, /*allow_inconsistent=*/true));
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  if (b->persistent() && store) {
    const bool was_inconsistent = b->inconsistent();
    b->set_inconsistent(false);
    // The change runs under the store's lock: no mark lands between taking and clearing.
    Status s = co_await store->write_bitmap(b, [cleared](HBitmap& content) {
      if (cleared) *cleared = content;
      content.reset_all();
    });
    if (!s.is_ok()) {
      if (was_inconsistent) b->set_inconsistent(true);
      co_return s;
    }
    co_return Status::ok();
  }
  HBitmap taken = b->take();
  if (cleared) *cleared = std::move(taken);
  co_return Status::ok();
}

Task<Status> NodeBitmaps::set_enabled(const std::string& name, bool enabled, bool checked) {
  DirtyBitmapPtr b = find(name);
  if (!b) co_return not_found(name);
  if (!checked && b->busy()) co_return busy_error(name);
  if (!checked && b->inconsistent()) co_return inconsistent_error(name);
  if (b->enabled() == enabled) co_return Status::ok();
  b->set_enabled(enabled);
  update_tracking();
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  if (b->persistent() && !b->read_only() && store) {
    // The flag is stored after the change, so no write slips by unrecorded; a failure
    // puts the flag back.
    Status s = co_await store->write_bitmap(b);
    if (!s.is_ok()) {
      b->set_enabled(!enabled);
      update_tracking();
      co_return s;
    }
  }
  co_return Status::ok();
}

Task<Status> NodeBitmaps::merge(const std::string& target, std::span<const DirtyBitmapPtr> sources) {
  DirtyBitmapPtr b = find(target);
  if (!b) co_return not_found(target);
  FLEECE_CO_RETURN_IF_ERROR(check_modifiable(*b, /*allow_inconsistent=*/false));
  for (const DirtyBitmapPtr& src : sources) {
    if (src->inconsistent()) co_return inconsistent_error(src->name());
    if (src->disk_size() != b->disk_size()) {
      co_return Status::invalid("Bitmaps are of different sizes: '" + src->name() + "' and '" +
                                target + "'");
    }
  }
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  if (b->durable() && store) {
    // The merged bits are stored before they are set in memory.
    co_return co_await store->write_bitmap(b, [&](HBitmap& content) {
      DirtyBitmap scratch(b->name(), b->disk_size(), b->granularity());
      scratch.restore(content);
      for (const DirtyBitmapPtr& src : sources) scratch.merge_from(*src);
      content = scratch.snapshot();
    });
  }
  for (const DirtyBitmapPtr& src : sources) b->merge_from(*src);
  if (b->persistent() && store) FLEECE_CO_RETURN_IF_ERROR(co_await store->write_bitmap(b));
  co_return Status::ok();
}

Task<Status> NodeBitmaps::add_content(const DirtyBitmapPtr& b, const HBitmap& bits) {
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  Status s;
  if (b->durable() && store) {
    s = co_await store->write_bitmap(b, [&bits](HBitmap& c) { c.merge(bits); });
    if (s.is_ok()) co_return s;
  }
  // Not stored (or the store failed): memory gets the bits anyway, so this session still
  // reports them; only a crash before they are stored could lose them.
  b->merge_content(bits);
  co_return s;
}

Task<Status> NodeBitmaps::end_rotation(const DirtyBitmapPtr& b, const HBitmap& frozen,
                                       bool rollback) {
  Status s;
  if (rollback) s = co_await add_content(b, frozen);
  // The stored copy no longer needs the frozen bits (they are in memory, or done with).
  b->drop_retained();
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  if (!rollback && b->durable() && store) s = co_await store->write_bitmap(b);
  co_return s;
}

Task<Status> NodeBitmaps::restore(const DirtyBitmapPtr& b, const HBitmap& content) {
  std::shared_ptr<BitmapStore> store;
  {
    std::lock_guard g(mu_);
    store = store_;
  }
  Status s;
  if (b->persistent() && !b->read_only() && store) {
    s = co_await store->write_bitmap(b, [&content](HBitmap& c) { c = content; });
    if (s.is_ok()) co_return s;
  }
  // As in add_content: a store error still puts memory back.
  b->restore(content);
  co_return s;
}

DirtyBitmapPtr NodeBitmaps::add_write_tracker(uint64_t granularity, uint64_t disk_size) {
  auto t = std::make_shared<DirtyBitmap>("(write tracker)", disk_size, granularity);
  {
    std::lock_guard g(mu_);
    trackers_.push_back(t);
  }
  update_tracking();
  return t;
}

void NodeBitmaps::remove_write_tracker(const DirtyBitmapPtr& tracker) {
  {
    std::lock_guard g(mu_);
    std::erase(trackers_, tracker);
  }
  update_tracking();
}

void NodeBitmaps::update_tracking() {
  std::lock_guard g(mu_);
  bool any = !trackers_.empty();
  for (const DirtyBitmapPtr& b : bitmaps_) any = any || b->enabled();
  tracking_.store(any, std::memory_order_release);
}

}  // namespace blockcore
