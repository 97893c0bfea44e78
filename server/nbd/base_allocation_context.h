// The standard `base:allocation` metadata context: NBD_STATE_HOLE / NBD_STATE_ZERO from
// the export root's block_status (kExtentHole → HOLE, kExtentZero → ZERO). Extent
// boundaries are aligned to the export's minimum block size, combining the flags of a
// block that straddles a boundary conservatively (a bit survives only if set throughout).
// Threading: the provider is stateless; a context may serve concurrent requests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "blockcore/extent.h"
#include "server/nbd/meta_context.h"

namespace server::nbd {

inline constexpr std::string_view kBaseAllocation = "base:allocation";

class BaseAllocationProvider final : public MetaContextProvider {
 public:
  std::string_view name_space() const override { return "base"; }
  void list(const Export& exp, std::string_view leaf, std::vector<std::string>& out) const override;
  MetaContextPtr resolve(const ExportPtr& exp, std::string_view leaf) const override;
};

class BaseAllocationContext final : public MetaContext {
 public:
  explicit BaseAllocationContext(ExportPtr exp);
  blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> extents(uint64_t off, uint64_t len,
                                                                      size_t max_extents) override;

 private:
  ExportPtr exp_;
};

// Maps block-layer extents to base:allocation flags, merging equal neighbours.
std::vector<MetaExtent> to_allocation_extents(const blockcore::ExtentList& in);

// Makes every boundary a multiple of `align` (relative to an aligned start): a block
// straddling a boundary becomes one extent whose flags are the AND of all extents
// overlapping it. The final extent may end unaligned only if `end_is_eof`; otherwise an
// unaligned tail is cut back to the last boundary when that leaves something.
// REQUIRES: align is a power of two.
std::vector<MetaExtent> align_extents_and(const std::vector<MetaExtent>& in, uint32_t align,
                                          bool end_is_eof);
// The same with another rule for a straddling block: its value is `combine` folded over
// the values of every extent overlapping it (align_extents_and folds with bitwise AND).
using MetaCombine = uint32_t (*)(uint32_t, uint32_t);
std::vector<MetaExtent> align_extents(const std::vector<MetaExtent>& in, uint32_t align,
                                      bool end_is_eof, MetaCombine combine);

}  // namespace server::nbd
