#include "server/nbd/allocation_depth_context.h"

#include <algorithm>

#include "server/nbd/base_allocation_context.h"

namespace server::nbd {

namespace {
constexpr std::string_view kLeaf = "allocation-depth";
}  // namespace

void AllocationDepthProvider::list(const Export& exp, std::string_view leaf,
                                   std::vector<std::string>& out) const {
  if (!exp.root || !exp.allocation_depth) return;
  if (leaf.empty() || leaf == kLeaf) out.emplace_back(kAllocationDepth);
}

MetaContextPtr AllocationDepthProvider::resolve(const ExportPtr& exp,
                                                std::string_view leaf) const {
  if (!exp || !exp->root || !exp->allocation_depth || leaf != kLeaf) return nullptr;
  return std::make_shared<AllocationDepthContext>(exp);
}

AllocationDepthContext::AllocationDepthContext(ExportPtr exp)
    : MetaContext(std::string(kAllocationDepth)), exp_(std::move(exp)) {}

std::vector<MetaExtent> to_depth_extents(const blockcore::ExtentList& in) {
  std::vector<MetaExtent> out;
  out.reserve(in.size());
  for (const blockcore::Extent& e : in) {
    if (e.length == 0) continue;
    if (!out.empty() && out.back().flags == e.depth) {
      out.back().length += e.length;
    } else {
      out.push_back(MetaExtent{e.length, e.depth});
    }
  }
  return out;
}

uint32_t combine_depths(uint32_t a, uint32_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return std::min(a, b);
}

blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> AllocationDepthContext::extents(
    uint64_t off, uint64_t len, size_t max_extents) {
  const blockcore::BlockNode& root = *exp_->root;
  auto r = co_await exp_->root->block_status(off, len);
  if (!r.is_ok()) co_return r.status();
  std::vector<MetaExtent> out = to_depth_extents(*r);
  const uint32_t align = root.info().request_alignment;
  if (align > 1) {
    uint64_t covered = 0;
    for (const auto& e : out) covered += e.length;
    out = align_extents(out, align, off + covered == root.size(), &combine_depths);
  }
  if (out.size() > max_extents) out.resize(max_extents);
  co_return out;
}

}  // namespace server::nbd
