// The `qemu:allocation-depth` metadata context (QEMU's nbd.rst): the whole 32-bit value
// of each extent is the depth of the backing-chain layer that provides its data, taken
// from Extent::depth of the export root's block_status — 0 unallocated in the whole
// chain, 1 the root itself, 2 its first backing node, and so on (a raw image is 1
// everywhere). Offered only on exports with Export::allocation_depth. It shares the
// "qemu" namespace with the dirty-bitmap contexts: LIST `qemu:` or no queries lists it,
// LIST/SET `qemu:allocation-depth` names it, SET with a wildcard selects nothing.
// Threading: the provider is stateless; a context may serve concurrent requests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/extent.h"
#include "server/nbd/meta_context.h"

namespace server::nbd {

inline constexpr std::string_view kAllocationDepth = "qemu:allocation-depth";

class AllocationDepthProvider final : public MetaContextProvider {
 public:
  std::string_view name_space() const override { return "qemu"; }
  std::string_view key() const override { return kAllocationDepth; }
  void list(const Export& exp, std::string_view leaf, std::vector<std::string>& out) const override;
  MetaContextPtr resolve(const ExportPtr& exp, std::string_view leaf) const override;
};

class AllocationDepthContext final : public MetaContext {
 public:
  explicit AllocationDepthContext(ExportPtr exp);
  blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> extents(uint64_t off, uint64_t len,
                                                                      size_t max_extents) override;

 private:
  ExportPtr exp_;
};

// Maps block-layer extents to depth values, merging equal neighbours.
std::vector<MetaExtent> to_depth_extents(const blockcore::ExtentList& in);

// How a block straddling an extent boundary is reported when boundaries are aligned:
// the topmost layer that provides any of it (the smallest non-zero depth), 0 only if
// nothing in the block is allocated.
uint32_t combine_depths(uint32_t a, uint32_t b);

}  // namespace server::nbd
