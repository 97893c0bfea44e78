// HBitmap: a hierarchical bitmap of a fixed number of bits. Level 0 holds the bits in
// 64-bit words; each upper level holds one bit per word of the level below, set when
// that word has any bit set, up to a single top word. Finding the next set bit skips
// clean regions 64^k bits at a time, so scanning a huge mostly-clean map costs a few
// word reads per set run (QEMU's HBitmap, leveldb-style plain data). Memory is about
// one bit per bit plus 1/63 for the upper levels; the count of set bits is kept.
// Serialized form (the qcow2 bitmaps extension's data): bit i is bit (i % 8), least
// significant first, of byte i / 8.
// Threading: not thread-safe; DirtyBitmap wraps it with a lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace blockcore {

class HBitmap {
 public:
  explicit HBitmap(uint64_t bits = 0);

  uint64_t size() const { return bits_; }  // in bits
  uint64_t count() const { return count_; }  // bits set
  bool any() const { return count_ != 0; }
  bool get(uint64_t i) const;

  // Bit ranges are [first, first + n); REQUIRES: first + n <= size().
  void set(uint64_t first, uint64_t n);
  void reset(uint64_t first, uint64_t n);
  void set_all() { set(0, bits_); }
  void reset_all() { reset(0, bits_); }
  bool all_set(uint64_t first, uint64_t n) const;

  // The first set (clear) bit in [from, end), or end when there is none.
  // REQUIRES: from <= end <= size().
  uint64_t next_set(uint64_t from, uint64_t end) const;
  uint64_t next_clear(uint64_t from, uint64_t end) const;

  // this |= other, for maps of the same size (REQUIRES).
  void merge(const HBitmap& other);
  // Changes the size; new bits are clear.
  void resize(uint64_t bits);

  // Writes bits [first_bit, first_bit + 8 * out.size()) in serialized form; bits past
  // size() read as 0. REQUIRES: first_bit % 8 == 0.
  void serialize(uint64_t first_bit, std::span<std::byte> out) const;
  // Replaces bits [first_bit, first_bit + 8 * in.size()) (clipped to size()) with the
  // serialized bits in `in`. REQUIRES: first_bit % 8 == 0.
  void deserialize(uint64_t first_bit, std::span<const std::byte> in);

  size_t memory_bytes() const;
  bool operator==(const HBitmap& o) const { return bits_ == o.bits_ && levels_.front() == o.levels_.front(); }

 private:
  void update_upper(uint64_t first_word, uint64_t last_word);

  uint64_t bits_ = 0;
  uint64_t count_ = 0;
  std::vector<std::vector<uint64_t>> levels_;  // [0] = the bits; back() = one word
};

}  // namespace blockcore
