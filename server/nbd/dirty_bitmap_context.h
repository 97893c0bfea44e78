// The `qemu:dirty-bitmap:NAME` metadata contexts (QEMU's nbd.rst): one per bitmap an
// export offers (Export::bitmaps, bound to the bitmaps by bind_export_bitmaps). Each
// descriptor's value is NBD_STATE_DIRTY (1) for written granules, 0 for clean ones.
//
// Names share the "qemu" namespace with qemu:allocation-depth, matched as QEMU does:
// LIST `qemu:` (or no queries) lists allocation-depth (where enabled) and every bitmap
// context; LIST `qemu:dirty-bitmap:` lists every bitmap context; LIST or SET
// `qemu:dirty-bitmap:NAME` names one; SET with a wildcard selects nothing.
//
// Extents come from DirtyBitmap::extents (cost proportional to the runs returned, not to
// the range, so a huge mostly-clean disk answers at once): boundaries on granule
// boundaries, equal neighbours merged, at most max_extents, never past the request.
// Where the export's minimum block is larger than the granularity a block is dirty if any
// granule in it is. An inconsistent bitmap reads dirty everywhere, and so does any part
// of the export past the end of the bitmap's disk (a bitmap of a smaller backing node):
// a block is never reported clean without a bitmap saying so.
// Threading: the provider is stateless; a context may serve concurrent requests (the
// bitmap is thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/bitmap/dirty_bitmap.h"
#include "server/nbd/meta_context.h"

namespace server::nbd {

inline constexpr std::string_view kDirtyBitmapPrefix = "qemu:dirty-bitmap:";
inline constexpr uint32_t kStateDirty = 1u << 0;  // NBD_STATE_DIRTY

class DirtyBitmapProvider final : public MetaContextProvider {
 public:
  std::string_view name_space() const override { return "qemu"; }
  std::string_view key() const override { return "qemu:dirty-bitmap"; }
  void list(const Export& exp, std::string_view leaf, std::vector<std::string>& out) const override;
  MetaContextPtr resolve(const ExportPtr& exp, std::string_view leaf) const override;
};

class DirtyBitmapContext final : public MetaContext {
 public:
  // `exp` keeps the bitmap busy for as long as the context lives.
  DirtyBitmapContext(ExportPtr exp, const std::string& name, blockcore::DirtyBitmapPtr bitmap);
  blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> extents(uint64_t off, uint64_t len,
                                                                      size_t max_extents) override;

 private:
  ExportPtr exp_;
  blockcore::DirtyBitmapPtr bitmap_;
};

// The descriptors of [off, off + len) of `bitmap` for an export whose minimum block is
// `align` (see above): the work of DirtyBitmapContext::extents, synchronous.
// REQUIRES: len > 0, max_extents >= 1, align a power of two, off a multiple of align.
std::vector<MetaExtent> dirty_bitmap_extents(const blockcore::DirtyBitmap& bitmap, uint64_t off,
                                             uint64_t len, size_t max_extents, uint32_t align);

}  // namespace server::nbd
