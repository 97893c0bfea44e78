#include "server/control/export_ids.h"

namespace server::control {

void ExportIds::prune_locked() {
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    if (it->second.exp.expired()) {
      it = by_id_.erase(it);
    } else {
      ++it;
    }
  }
}

void ExportIds::assign(const std::string& id, const ExportPtr& e) {
  std::lock_guard lock(mu_);
  prune_locked();
  by_id_[id] = Binding{e->name, e};
}

void ExportIds::forget(std::string_view id) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it != by_id_.end()) by_id_.erase(it);
}

std::string ExportIds::id_of(const ExportPtr& e) const {
  std::lock_guard lock(mu_);
  for (const auto& [id, b] : by_id_) {
    if (b.exp.lock() == e) return id;
  }
  return e->name;
}

ExportPtr ExportIds::resolve(const ExportRegistry& registry, std::string_view id) const {
  {
    std::lock_guard lock(mu_);
    auto it = by_id_.find(id);
    if (it != by_id_.end()) {
      ExportPtr bound = it->second.exp.lock();
      if (bound && registry.find(it->second.name) == bound) return bound;
    }
  }
  ExportPtr by_name = registry.find(id);
  if (by_name && id_of(by_name) == id) return by_name;
  return nullptr;
}

}  // namespace server::control
