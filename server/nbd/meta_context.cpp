#include "server/nbd/meta_context.h"

#include <algorithm>

#include "server/nbd/allocation_depth_context.h"
#include "server/nbd/base_allocation_context.h"
#include "server/nbd/dirty_bitmap_context.h"

namespace server::nbd {

bool split_context_name(std::string_view name, std::string_view& ns, std::string_view& leaf) {
  const size_t colon = name.find(':');
  if (colon == std::string_view::npos) return false;
  ns = name.substr(0, colon);
  leaf = name.substr(colon + 1);
  return true;
}

MetaContextRegistry::MetaContextRegistry() {
  add(std::make_unique<BaseAllocationProvider>());
  add(std::make_unique<AllocationDepthProvider>());
  add(std::make_unique<DirtyBitmapProvider>());
}

MetaContextRegistry MetaContextRegistry::empty_registry() {
  return MetaContextRegistry(EmptyTag{});
}

void MetaContextRegistry::add(std::unique_ptr<MetaContextProvider> provider) {
  const std::string_view key = provider->key();
  auto it = std::find_if(providers_.begin(), providers_.end(),
                         [&](const auto& p) { return p->key() == key; });
  if (it != providers_.end()) {
    *it = std::move(provider);
  } else {
    providers_.push_back(std::move(provider));
  }
}

std::vector<std::string> MetaContextRegistry::list(const Export& exp,
                                                   std::span<const std::string> queries) const {
  std::vector<std::string> out;
  if (queries.empty()) {
    for (const auto& p : providers_) p->list(exp, {}, out);
  } else {
    for (const std::string& q : queries) {
      std::string_view ns, leaf;
      if (!split_context_name(q, ns, leaf)) continue;  // no namespace: ignored
      for (const auto& p : providers_) {
        if (p->name_space() == ns) p->list(exp, leaf, out);
      }
    }
  }
  // Several queries may match the same context; list it once, keeping the first place.
  std::vector<std::string> unique;
  unique.reserve(out.size());
  for (auto& name : out) {
    if (std::find(unique.begin(), unique.end(), name) == unique.end()) {
      unique.push_back(std::move(name));
    }
  }
  return unique;
}

MetaContextPtr MetaContextRegistry::resolve(const ExportPtr& exp, std::string_view name) const {
  std::string_view ns, leaf;
  if (!exp || !split_context_name(name, ns, leaf)) return nullptr;
  for (const auto& p : providers_) {
    if (p->name_space() != ns) continue;
    if (MetaContextPtr c = p->resolve(exp, leaf)) return c;
  }
  return nullptr;
}

std::vector<MetaContextPtr> MetaContextRegistry::select(
    const ExportPtr& exp, std::span<const std::string> queries) const {
  std::vector<MetaContextPtr> out;
  for (const std::string& q : queries) {
    MetaContextPtr c = resolve(exp, q);
    if (!c) continue;
    const bool dup = std::any_of(out.begin(), out.end(),
                                 [&](const MetaContextPtr& o) { return o->name() == c->name(); });
    if (!dup) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace server::nbd
