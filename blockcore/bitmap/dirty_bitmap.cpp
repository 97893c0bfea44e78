#include "blockcore/bitmap/dirty_bitmap.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <utility>

namespace blockcore {
namespace {

uint64_t granules_for(uint64_t disk_size, uint32_t granularity_bits) {
  return (disk_size + (uint64_t{1} << granularity_bits) - 1) >> granularity_bits;
}

}  // namespace

Status check_bitmap_granularity(uint64_t g) {
  if (g < kMinBitmapGranularity || g > kMaxBitmapGranularity || !std::has_single_bit(g)) {
    return Status::invalid("Granularity must be power of 2 between 512 and 2147483648 (got " +
                           std::to_string(g) + ")");
  }
  return Status::ok();
}

Status check_bitmap_name(const std::string& name) {
  if (name.empty()) return Status::invalid("Bitmap name cannot be empty");
  if (name.size() > kMaxBitmapNameLength) {
    return Status::invalid("Bitmap name is too long (" + std::to_string(name.size()) +
                           " bytes; at most " + std::to_string(kMaxBitmapNameLength) + ")");
  }
  return Status::ok();
}

DirtyBitmap::DirtyBitmap(std::string name, uint64_t disk_size, uint64_t granularity)
    : name_(std::move(name)),
      granularity_(granularity),
      granularity_bits_(static_cast<uint32_t>(std::countr_zero(granularity))),
      disk_size_(disk_size),
      bits_(granules_for(disk_size, granularity_bits_)) {
  assert(check_bitmap_granularity(granularity).is_ok());
}

uint64_t DirtyBitmap::disk_size() const {
  std::lock_guard g(mu_);
  return disk_size_;
}

uint64_t DirtyBitmap::granules() const {
  std::lock_guard g(mu_);
  return bits_.size();
}

void DirtyBitmap::set_inconsistent(bool on) {
  std::lock_guard g(mu_);
  if (on) bits_.set_all();
  inconsistent_.store(on, std::memory_order_release);
}

DirtyBitmap::BusyGuard::BusyGuard(std::shared_ptr<DirtyBitmap> b) : b_(std::move(b)) {
  if (b_) b_->busy_.fetch_add(1, std::memory_order_acq_rel);
}

DirtyBitmap::BusyGuard& DirtyBitmap::BusyGuard::operator=(BusyGuard&& o) noexcept {
  if (this != &o) {
    release();
    b_ = std::move(o.b_);
  }
  return *this;
}

DirtyBitmap::BusyGuard::~BusyGuard() { release(); }

void DirtyBitmap::BusyGuard::release() {
  if (b_) std::exchange(b_, nullptr)->busy_.fetch_sub(1, std::memory_order_acq_rel);
}

uint64_t DirtyBitmap::dirty_granules() const {
  std::lock_guard g(mu_);
  return bits_.count();
}

uint64_t DirtyBitmap::dirty_bytes() const {
  std::lock_guard g(mu_);
  uint64_t bytes = bits_.count() << granularity_bits_;
  // The last granule may be partial.
  const uint64_t n = bits_.size();
  if (n != 0 && bits_.get(n - 1)) bytes -= (n << granularity_bits_) - disk_size_;
  return bytes;
}

bool DirtyBitmap::all_dirty(uint64_t off, uint64_t len) const {
  std::lock_guard g(mu_);
  if (len == 0 || off >= disk_size_) return true;
  const uint64_t end = std::min(disk_size_, off + std::min(len, disk_size_ - off));
  const uint64_t first = off >> granularity_bits_;
  const uint64_t last = (end - 1) >> granularity_bits_;
  return bits_.all_set(first, last - first + 1);
}

void DirtyBitmap::mark(uint64_t off, uint64_t len) {
  std::lock_guard g(mu_);
  if (len == 0 || off >= disk_size_) return;
  const uint64_t end = off + std::min(len, disk_size_ - off);
  const uint64_t first = off >> granularity_bits_;
  const uint64_t last = (end - 1) >> granularity_bits_;
  bits_.set(first, last - first + 1);
}

void DirtyBitmap::reset(uint64_t off, uint64_t len) {
  std::lock_guard g(mu_);
  if (len == 0 || off >= disk_size_) return;
  const uint64_t end = off + std::min(len, disk_size_ - off);
  const uint64_t first = off >> granularity_bits_;
  const uint64_t last = (end - 1) >> granularity_bits_;
  bits_.reset(first, last - first + 1);
}

void DirtyBitmap::mark_granules(uint64_t first, uint64_t n) {
  std::lock_guard g(mu_);
  if (first >= bits_.size()) return;
  bits_.set(first, std::min(n, bits_.size() - first));
}

void DirtyBitmap::clear() {
  std::lock_guard g(mu_);
  bits_.reset_all();
  inconsistent_.store(false, std::memory_order_release);
}

HBitmap DirtyBitmap::take() {
  std::lock_guard g(mu_);
  HBitmap content = bits_;
  bits_.reset_all();
  inconsistent_.store(false, std::memory_order_release);
  return content;
}

void DirtyBitmap::set_all() {
  std::lock_guard g(mu_);
  bits_.set_all();
}

void DirtyBitmap::merge_from(const DirtyBitmap& other) {
  if (&other == this) return;
  const uint64_t other_granularity_bits = other.granularity_bits_;
  HBitmap src = other.snapshot();
  std::lock_guard g(mu_);
  if (other_granularity_bits == granularity_bits_ && src.size() == bits_.size()) {
    bits_.merge(src);
    return;
  }
  // Different granularities: each dirty run of `other` marks the granules it touches.
  for (uint64_t pos = src.next_set(0, src.size()); pos < src.size();) {
    const uint64_t run_end = src.next_clear(pos, src.size());
    const uint64_t off = pos << other_granularity_bits;
    const uint64_t end = std::min(disk_size_, run_end << other_granularity_bits);
    if (off < end) {
      const uint64_t first = off >> granularity_bits_;
      const uint64_t last = (end - 1) >> granularity_bits_;
      bits_.set(first, last - first + 1);
    }
    pos = src.next_set(run_end, src.size());
  }
}

void DirtyBitmap::merge_content(const HBitmap& bits) {
  std::lock_guard g(mu_);
  assert(bits.size() == bits_.size());
  bits_.merge(bits);
}

std::vector<DirtyExtent> DirtyBitmap::extents(uint64_t off, uint64_t len,
                                              size_t max_extents) const {
  std::vector<DirtyExtent> out;
  std::lock_guard g(mu_);
  if (len == 0 || off >= disk_size_ || max_extents == 0) return out;
  const uint64_t end = off + std::min(len, disk_size_ - off);
  const uint64_t limit = ((end - 1) >> granularity_bits_) + 1;  // granules in range end
  uint64_t pos = off;
  while (pos < end && out.size() < max_extents) {
    const uint64_t granule = pos >> granularity_bits_;
    const bool dirty = bits_.get(granule);
    const uint64_t next = dirty ? bits_.next_clear(granule + 1, limit)
                                : bits_.next_set(granule + 1, limit);
    const uint64_t run_end = std::min(end, next << granularity_bits_);
    out.push_back(DirtyExtent{run_end - pos, dirty});
    pos = run_end;
  }
  return out;
}

std::pair<uint64_t, uint64_t> DirtyBitmap::next_dirty_range(uint64_t off, uint64_t end) const {
  std::lock_guard g(mu_);
  end = std::min(end, disk_size_);
  if (off >= end) return {end, 0};
  const uint64_t limit = ((end - 1) >> granularity_bits_) + 1;
  const uint64_t first = bits_.next_set(off >> granularity_bits_, limit);
  if (first >= limit) return {end, 0};
  const uint64_t start = std::max(off, first << granularity_bits_);
  const uint64_t stop = std::min(end, bits_.next_clear(first, limit) << granularity_bits_);
  return {start, stop - start};
}

void DirtyBitmap::serialize(uint64_t first_granule, std::span<std::byte> out) const {
  std::lock_guard g(mu_);
  bits_.serialize(first_granule, out);
}

void DirtyBitmap::deserialize(uint64_t first_granule, std::span<const std::byte> in) {
  std::lock_guard g(mu_);
  bits_.deserialize(first_granule, in);
}

HBitmap DirtyBitmap::freeze() {
  std::lock_guard g(mu_);
  HBitmap content = bits_;
  if (retained_.size() != bits_.size()) {
    retained_ = bits_;
  } else {
    retained_.merge(bits_);
  }
  bits_.reset_all();
  return content;
}

void DirtyBitmap::drop_retained() {
  std::lock_guard g(mu_);
  retained_ = HBitmap();
}

HBitmap DirtyBitmap::stored_snapshot() const {
  std::lock_guard g(mu_);
  HBitmap content = bits_;
  if (retained_.size() == bits_.size()) content.merge(retained_);
  return content;
}

HBitmap DirtyBitmap::with_retained(HBitmap content) const {
  std::lock_guard g(mu_);
  if (retained_.size() == content.size()) content.merge(retained_);
  return content;
}

void DirtyBitmap::serialize_stored(uint64_t first_granule, std::span<std::byte> out) const {
  std::lock_guard g(mu_);
  bits_.serialize(first_granule, out);
  if (retained_.size() != bits_.size() || !retained_.any()) return;
  std::vector<std::byte> extra(out.size());
  retained_.serialize(first_granule, extra);
  for (size_t i = 0; i < out.size(); ++i) out[i] |= extra[i];
}

HBitmap DirtyBitmap::snapshot() const {
  std::lock_guard g(mu_);
  return bits_;
}

void DirtyBitmap::restore(const HBitmap& content) {
  std::lock_guard g(mu_);
  assert(content.size() == bits_.size());
  bits_ = content;
}

void DirtyBitmap::resize(uint64_t disk_size) {
  std::lock_guard g(mu_);
  disk_size_ = disk_size;
  bits_.resize(granules_for(disk_size, granularity_bits_));
  if (retained_.size() != 0) retained_.resize(bits_.size());
}

}  // namespace blockcore
