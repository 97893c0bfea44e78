// ExportIds: QMP's block-export `id` beside the NBD export name. QEMU keeps them apart
// (`id` names the export object, `name` is what NBD clients open; `name` defaults to the
// node name), so block-export-add may register export "disk0" under id "exp0". Exports
// that never got an id (from the config file) are known by their NBD name. An id stays
// bound to the exact Export object it was given for; if that export is removed or
// replaced (SIGHUP), the binding lapses.
// Threading: thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "server/export/export_registry.h"

namespace server::control {

class ExportIds {
 public:
  // Binds `id` to export `e` (replacing an earlier binding of `id`).
  void assign(const std::string& id, const ExportPtr& e);
  void forget(std::string_view id);

  // The id of `e`: the one bound to it, else its NBD name.
  std::string id_of(const ExportPtr& e) const;
  // The registered export that `id` names, or nullptr.
  ExportPtr resolve(const ExportRegistry& registry, std::string_view id) const;

 private:
  struct Binding {
    std::string name;
    std::weak_ptr<const Export> exp;
  };
  void prune_locked();

  mutable std::mutex mu_;
  std::map<std::string, Binding, std::less<>> by_id_;  // GUARDED_BY(mu_)
};

}  // namespace server::control
