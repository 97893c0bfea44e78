#include "server/export/export_registry.h"

#include <cerrno>

namespace server {

using blockcore::Status;

Status ExportRegistry::add(ExportPtr e) {
  std::lock_guard lock(mu_);
  if (exports_.count(e->name)) {
    return Status::error(EEXIST, "export '" + e->name + "' already exists");
  }
  exports_.emplace(e->name, std::move(e));
  return Status::ok();
}

Status ExportRegistry::remove(std::string_view name) {
  ExportPtr removed;
  std::vector<RemovedCallback> callbacks;
  {
    std::lock_guard lock(mu_);
    auto it = exports_.find(name);
    if (it == exports_.end()) {
      return Status::error(ENOENT, "export '" + std::string(name) + "' does not exist");
    }
    removed = std::move(it->second);
    exports_.erase(it);
    callbacks = removed_callbacks_;
  }
  for (auto& cb : callbacks) cb(removed);
  return Status::ok();
}

void ExportRegistry::replace(ExportPtr e) {
  ExportPtr old;
  std::vector<RemovedCallback> callbacks;
  {
    std::lock_guard lock(mu_);
    auto& slot = exports_[e->name];
    old = std::move(slot);
    slot = std::move(e);
    callbacks = removed_callbacks_;
  }
  if (old) {
    for (auto& cb : callbacks) cb(old);
  }
}

ExportPtr ExportRegistry::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = exports_.find(name);
  return it == exports_.end() ? nullptr : it->second;
}

std::vector<ExportPtr> ExportRegistry::list() const {
  std::lock_guard lock(mu_);
  std::vector<ExportPtr> out;
  out.reserve(exports_.size());
  for (const auto& [name, e] : exports_) out.push_back(e);
  return out;
}

std::vector<ExportPtr> ExportRegistry::using_node(const blockcore::BlockNode* node) const {
  std::lock_guard lock(mu_);
  std::vector<ExportPtr> out;
  for (const auto& [name, e] : exports_) {
    if (e->root.get() == node) out.push_back(e);
  }
  return out;
}

void ExportRegistry::on_removed(RemovedCallback cb) {
  std::lock_guard lock(mu_);
  removed_callbacks_.push_back(std::move(cb));
}

}  // namespace server
