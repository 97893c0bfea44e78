#include "server/nbd/base_allocation_context.h"

#include <algorithm>

#include "server/nbd/protocol.h"

namespace server::nbd {
namespace {

void push_merged(std::vector<MetaExtent>& out, uint64_t length, uint32_t flags) {
  if (length == 0) return;
  if (!out.empty() && out.back().flags == flags) {
    out.back().length += length;
  } else {
    out.push_back(MetaExtent{length, flags});
  }
}

}  // namespace

void BaseAllocationProvider::list(const Export& exp, std::string_view leaf,
                                  std::vector<std::string>& out) const {
  if (!exp.root) return;
  if (leaf.empty() || leaf == "allocation") out.emplace_back(kBaseAllocation);
}

MetaContextPtr BaseAllocationProvider::resolve(const ExportPtr& exp, std::string_view leaf) const {
  if (!exp || !exp->root || leaf != "allocation") return nullptr;
  return std::make_shared<BaseAllocationContext>(exp);
}

BaseAllocationContext::BaseAllocationContext(ExportPtr exp)
    : MetaContext(std::string(kBaseAllocation)), exp_(std::move(exp)) {}

std::vector<MetaExtent> to_allocation_extents(const blockcore::ExtentList& in) {
  std::vector<MetaExtent> out;
  out.reserve(in.size());
  for (const blockcore::Extent& e : in) {
    uint32_t flags = 0;
    if (e.flags & blockcore::kExtentHole) flags |= kStateHole;
    if (e.flags & blockcore::kExtentZero) flags |= kStateZero;
    push_merged(out, e.length, flags);
  }
  return out;
}

std::vector<MetaExtent> align_extents_and(const std::vector<MetaExtent>& in, uint32_t align,
                                          bool end_is_eof) {
  return align_extents(in, align, end_is_eof, [](uint32_t a, uint32_t b) { return a & b; });
}

std::vector<MetaExtent> align_extents(const std::vector<MetaExtent>& in, uint32_t align,
                                      bool end_is_eof, MetaCombine combine) {
  if (align <= 1 || in.empty()) return in;
  std::vector<MetaExtent> out;
  uint64_t pos = 0;   // bytes emitted so far; always a multiple of align at loop start
  size_t i = 0;       // current input extent
  uint64_t used = 0;  // bytes of in[i] already emitted
  while (i < in.size()) {
    const uint32_t flags = in[i].flags;
    const uint64_t end = pos + (in[i].length - used);
    if (end % align == 0) {
      push_merged(out, end - pos, flags);
      pos = end;
      ++i;
      used = 0;
      continue;
    }
    const uint64_t down = end / align * align;  // >= pos because pos is aligned
    push_merged(out, down - pos, flags);
    pos = down;
    // The block [pos, pos + align) straddles a boundary: combine the values of every
    // extent overlapping it.
    const uint64_t block_end = pos + align;
    uint32_t f = flags;
    uint64_t p = end;
    ++i;
    used = 0;
    while (p < block_end && i < in.size()) {
      const uint64_t take = std::min(in[i].length - used, block_end - p);
      f = combine(f, in[i].flags);
      p += take;
      used += take;
      if (used == in[i].length) {
        ++i;
        used = 0;
      }
    }
    if (p < block_end) {
      // The answer ends inside this block. At end of file that is the real end; else
      // report only whole blocks (the client asks again), unless nothing is left.
      if (end_is_eof || out.empty()) push_merged(out, p - pos, f);
      break;
    }
    push_merged(out, align, f);
    pos = block_end;
  }
  return out;
}

blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> BaseAllocationContext::extents(
    uint64_t off, uint64_t len, size_t max_extents) {
  const blockcore::BlockNode& root = *exp_->root;
  auto r = co_await exp_->root->block_status(off, len);
  if (!r.is_ok()) co_return r.status();
  std::vector<MetaExtent> out = to_allocation_extents(*r);
  const uint32_t align = root.info().request_alignment;
  if (align > 1) {
    uint64_t covered = 0;
    for (const auto& e : out) covered += e.length;
    out = align_extents_and(out, align, off + covered == root.size());
  }
  if (out.size() > max_extents) out.resize(max_extents);
  co_return out;
}

}  // namespace server::nbd
