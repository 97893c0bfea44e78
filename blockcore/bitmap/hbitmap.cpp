#include "blockcore/bitmap/hbitmap.h"

#include <algorithm>
#include <bit>
#include <cassert>

namespace blockcore {
namespace {

constexpr uint64_t kNone = ~uint64_t{0};
constexpr uint64_t kAll = ~uint64_t{0};

uint64_t words_for(uint64_t bits) { return std::max<uint64_t>(1, (bits + 63) / 64); }

// Mask of bits [lo, hi] of one word (0 <= lo <= hi <= 63).
uint64_t span_mask(unsigned lo, unsigned hi) {
  const uint64_t upper = hi == 63 ? kAll : ((uint64_t{1} << (hi + 1)) - 1);
  return upper & (kAll << lo);
}

}  // namespace

HBitmap::HBitmap(uint64_t bits) { resize(bits); }

bool HBitmap::get(uint64_t i) const {
  assert(i < bits_);
  return (levels_[0][i / 64] >> (i % 64)) & 1;
}

void HBitmap::set(uint64_t first, uint64_t n) {
  assert(first <= bits_ && n <= bits_ - first);
  if (n == 0) return;
  const uint64_t last = first + n - 1;
  std::vector<uint64_t>& w = levels_[0];
  for (uint64_t i = first / 64; i <= last / 64; ++i) {
    const unsigned lo = i == first / 64 ? first % 64 : 0;
    const unsigned hi = i == last / 64 ? last % 64 : 63;
    const uint64_t before = w[i];
    w[i] |= span_mask(lo, hi);
    count_ += std::popcount(w[i]) - std::popcount(before);
  }
  update_upper(first / 64, last / 64);
}

void HBitmap::reset(uint64_t first, uint64_t n) {
  assert(first <= bits_ && n <= bits_ - first);
  if (n == 0) return;
  const uint64_t last = first + n - 1;
  std::vector<uint64_t>& w = levels_[0];
  for (uint64_t i = first / 64; i <= last / 64; ++i) {
    const unsigned lo = i == first / 64 ? first % 64 : 0;
    const unsigned hi = i == last / 64 ? last % 64 : 63;
    const uint64_t before = w[i];
    w[i] &= ~span_mask(lo, hi);
    count_ -= std::popcount(before) - std::popcount(w[i]);
  }
  update_upper(first / 64, last / 64);
}

void HBitmap::update_upper(uint64_t first_word, uint64_t last_word) {
  for (size_t level = 1; level < levels_.size(); ++level) {
    const std::vector<uint64_t>& below = levels_[level - 1];
    std::vector<uint64_t>& here = levels_[level];
    for (uint64_t c = first_word; c <= last_word; ++c) {
      const uint64_t bit = uint64_t{1} << (c % 64);
      if (below[c] != 0) {
        here[c / 64] |= bit;
      } else {
        here[c / 64] &= ~bit;
      }
    }
    first_word /= 64;
    last_word /= 64;
  }
}

bool HBitmap::all_set(uint64_t first, uint64_t n) const {
  return next_clear(first, first + n) == first + n;
}

uint64_t HBitmap::next_set(uint64_t from, uint64_t end) const {
  assert(from <= end && end <= bits_);
  if (from >= end) return end;
  // Finds the first set bit >= `bit` at `level`, using the level above to skip words
  // that are zero; kNone when there is none.
  auto find = [this](auto& self, size_t level, uint64_t bit) -> uint64_t {
    const std::vector<uint64_t>& words = levels_[level];
    uint64_t w = bit / 64;
    if (w >= words.size()) return kNone;
    const uint64_t m = words[w] & (kAll << (bit % 64));
    if (m != 0) return w * 64 + std::countr_zero(m);
    if (level + 1 == levels_.size()) {
      for (++w; w < words.size(); ++w) {
        if (words[w] != 0) return w * 64 + std::countr_zero(words[w]);
      }
      return kNone;
    }
    const uint64_t next_word = self(self, level + 1, w + 1);
    if (next_word == kNone || next_word >= words.size()) return kNone;
    return next_word * 64 + std::countr_zero(words[next_word]);
  };
  const uint64_t found = find(find, 0, from);
  return found == kNone ? end : std::min(found, end);
}

uint64_t HBitmap::next_clear(uint64_t from, uint64_t end) const {
  assert(from <= end && end <= bits_);
  const std::vector<uint64_t>& words = levels_[0];
  uint64_t pos = from;
  while (pos < end) {
    const uint64_t w = pos / 64;
    const uint64_t m = ~words[w] & (kAll << (pos % 64));
    if (m != 0) return std::min(end, w * 64 + std::countr_zero(m));
    pos = (w + 1) * 64;
  }
  return end;
}

void HBitmap::merge(const HBitmap& other) {
  assert(other.bits_ == bits_);
  std::vector<uint64_t>& w = levels_[0];
  const std::vector<uint64_t>& o = other.levels_[0];
  count_ = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] |= o[i];
    count_ += std::popcount(w[i]);
  }
  update_upper(0, w.size() - 1);
}

void HBitmap::resize(uint64_t bits) {
  std::vector<uint64_t> base = levels_.empty() ? std::vector<uint64_t>() : std::move(levels_[0]);
  base.resize(words_for(bits), 0);
  if (bits % 64 != 0) base.back() &= (uint64_t{1} << (bits % 64)) - 1;
  if (bits == 0) base.back() = 0;
  bits_ = bits;
  levels_.clear();
  levels_.push_back(std::move(base));
  while (levels_.back().size() > 1) levels_.emplace_back(words_for(levels_.back().size()), 0);
  count_ = 0;
  for (uint64_t word : levels_[0]) count_ += std::popcount(word);
  update_upper(0, levels_[0].size() - 1);
}

void HBitmap::serialize(uint64_t first_bit, std::span<std::byte> out) const {
  assert(first_bit % 8 == 0);
  const std::vector<uint64_t>& w = levels_[0];
  const uint64_t first_byte = first_bit / 8;
  for (size_t i = 0; i < out.size(); ++i) {
    const uint64_t byte = first_byte + i;
    const uint64_t word = byte / 8;
    out[i] = word < w.size() ? std::byte((w[word] >> ((byte % 8) * 8)) & 0xff) : std::byte{0};
  }
}

void HBitmap::deserialize(uint64_t first_bit, std::span<const std::byte> in) {
  assert(first_bit % 8 == 0);
  if (first_bit >= bits_ || in.empty()) return;
  std::vector<uint64_t>& w = levels_[0];
  const uint64_t first_byte = first_bit / 8;
  const uint64_t total_bytes = (bits_ + 7) / 8;
  const uint64_t n = std::min<uint64_t>(in.size(), total_bytes - first_byte);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t byte = first_byte + i;
    const uint64_t word = byte / 8;
    const unsigned shift = (byte % 8) * 8;
    const uint64_t before = w[word];
    w[word] = (w[word] & ~(uint64_t{0xff} << shift)) |
              (uint64_t(std::to_integer<uint8_t>(in[i])) << shift);
    count_ += std::popcount(w[word]);
    count_ -= std::popcount(before);
  }
  // Bits past the end stay clear.
  const uint64_t last_word = (first_byte + n - 1) / 8;
  if (last_word == w.size() - 1 && bits_ % 64 != 0) {
    const uint64_t before = w.back();
    w.back() &= (uint64_t{1} << (bits_ % 64)) - 1;
    count_ -= std::popcount(before) - std::popcount(w.back());
  }
  update_upper(first_byte / 8, last_word);
}

size_t HBitmap::memory_bytes() const {
  size_t total = sizeof(*this);
  for (const auto& l : levels_) total += l.capacity() * sizeof(uint64_t);
  return total;
}

}  // namespace blockcore
