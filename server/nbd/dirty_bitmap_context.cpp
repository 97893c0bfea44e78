#include "server/nbd/dirty_bitmap_context.h"

#include <algorithm>

namespace server::nbd {
namespace {

constexpr std::string_view kLeafPrefix = "dirty-bitmap:";  // the leaf after "qemu:"

// Appends a run, merging it into an equal last one.
void push_merged(std::vector<MetaExtent>& out, uint64_t length, uint32_t flags) {
  if (length == 0) return;
  if (!out.empty() && out.back().flags == flags) {
    out.back().length += length;
  } else {
    out.push_back(MetaExtent{length, flags});
  }
}

// Runs of [off, stop) at granule boundaries, from the bitmap's own run finder.
void granule_runs(const blockcore::DirtyBitmap& b, uint64_t off, uint64_t stop, size_t max_extents,
                  std::vector<MetaExtent>& out) {
  for (const blockcore::DirtyExtent& e : b.extents(off, stop - off, max_extents)) {
    push_merged(out, e.length, e.dirty ? kStateDirty : 0);
  }
}

// Runs of [off, stop) at `align` boundaries (align > granularity): a block is dirty when
// any of its granules is. Walks the dirty ranges, so the cost follows the runs too.
// Stops once more than max_extents runs exist (the caller trims the last).
void block_runs(const blockcore::DirtyBitmap& b, uint64_t off, uint64_t stop, size_t max_extents,
                uint64_t align, std::vector<MetaExtent>& out) {
  uint64_t pos = off;
  while (pos < stop && out.size() <= max_extents) {
    const auto [dirty_start, dirty_len] = b.next_dirty_range(pos, stop);
    if (dirty_len == 0) {
      push_merged(out, stop - pos, 0);
      break;
    }
    const uint64_t block_start = std::max(pos, dirty_start / align * align);
    const uint64_t dirty_end = dirty_start + dirty_len;
    const uint64_t block_end = std::min(stop, (dirty_end + align - 1) / align * align);
    push_merged(out, block_start - pos, 0);
    push_merged(out, block_end - block_start, kStateDirty);
    pos = block_end;
  }
}

}  // namespace

void DirtyBitmapProvider::list(const Export& exp, std::string_view leaf,
                               std::vector<std::string>& out) const {
  // "qemu:" (empty leaf) and "qemu:dirty-bitmap:" list every bitmap; a full name one.
  const bool all = leaf.empty() || leaf == kLeafPrefix;
  if (!all && !leaf.starts_with(kLeafPrefix)) return;
  const std::string_view wanted = leaf.substr(std::min(leaf.size(), kLeafPrefix.size()));
  for (const std::string& name : exp.bitmaps) {
    if (!exp.bitmap(name)) continue;  // not bound: not offered
    if (all || name == wanted) out.push_back(std::string(kDirtyBitmapPrefix) + name);
  }
}

MetaContextPtr DirtyBitmapProvider::resolve(const ExportPtr& exp, std::string_view leaf) const {
  if (!exp || !leaf.starts_with(kLeafPrefix)) return nullptr;
  const std::string_view name = leaf.substr(kLeafPrefix.size());
  if (name.empty()) return nullptr;  // the wildcard selects nothing
  blockcore::DirtyBitmapPtr b = exp->bitmap(name);
  if (!b) return nullptr;
  return std::make_shared<DirtyBitmapContext>(exp, std::string(name), std::move(b));
}

DirtyBitmapContext::DirtyBitmapContext(ExportPtr exp, const std::string& name,
                                       blockcore::DirtyBitmapPtr bitmap)
    : MetaContext(std::string(kDirtyBitmapPrefix) + name),
      exp_(std::move(exp)),
      bitmap_(std::move(bitmap)) {}

std::vector<MetaExtent> dirty_bitmap_extents(const blockcore::DirtyBitmap& bitmap, uint64_t off,
                                             uint64_t len, size_t max_extents, uint32_t align) {
  std::vector<MetaExtent> out;
  const uint64_t end = off + len;
  if (bitmap.inconsistent()) {
    out.push_back(MetaExtent{len, kStateDirty});
    return out;
  }
  // The part the bitmap covers; past its disk nothing says a block is clean.
  const uint64_t stop = std::min(end, std::max(off, bitmap.disk_size()));
  if (off < stop) {
    if (align <= bitmap.granularity()) {
      granule_runs(bitmap, off, stop, max_extents, out);
    } else {
      block_runs(bitmap, off, stop, max_extents, align, out);
    }
  }
  uint64_t covered = 0;
  for (const MetaExtent& e : out) covered += e.length;
  if (off + covered == stop && stop < end) {
    // Past the bitmap's disk: dirty to the end of the request.
    if (out.size() < max_extents || out.back().flags == kStateDirty) {
      push_merged(out, end - stop, kStateDirty);
    }
  }
  if (out.size() > max_extents) out.resize(max_extents);
  return out;
}

blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> DirtyBitmapContext::extents(
    uint64_t off, uint64_t len, size_t max_extents) {
  const blockcore::BlockNode& root = *exp_->root;
  co_return dirty_bitmap_extents(*bitmap_, off, len, max_extents, root.info().request_alignment);
}

}  // namespace server::nbd
