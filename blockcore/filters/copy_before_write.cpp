#include "blockcore/filters/copy_before_write.h"

#include <algorithm>

namespace blockcore {

std::shared_ptr<CopyBeforeWrite> CopyBeforeWrite::attach(BlockNode& live) {
  auto existing = std::dynamic_pointer_cast<CopyBeforeWrite>(live.write_interceptor());
  if (existing) return existing;
  std::shared_ptr<CopyBeforeWrite> filter(new CopyBeforeWrite(live));
  live.set_write_interceptor(filter);
  return filter;
}

void CopyBeforeWrite::add(FleeceSnapshotPtr snapshot) {
  std::lock_guard g(mu_);
  snapshots_.push_back(std::move(snapshot));
}

void CopyBeforeWrite::remove(const FleeceSnapshot& snapshot) {
  bool empty;
  {
    std::lock_guard g(mu_);
    std::erase_if(snapshots_, [&](const FleeceSnapshotPtr& s) { return s.get() == &snapshot; });
    empty = snapshots_.empty();
  }
  if (empty && live_.write_interceptor().get() == this) live_.set_write_interceptor(nullptr);
}

size_t CopyBeforeWrite::snapshots() const {
  std::lock_guard g(mu_);
  return snapshots_.size();
}

Task<Status> CopyBeforeWrite::before_write(uint64_t off, uint64_t len) {
  std::vector<FleeceSnapshotPtr> snapshots;
  {
    std::lock_guard g(mu_);
    snapshots = snapshots_;
  }
  for (const FleeceSnapshotPtr& s : snapshots) {
    FLEECE_CO_RETURN_IF_ERROR(co_await s->before_live_write(off, len));
  }
  co_return Status::ok();
}

}  // namespace blockcore
