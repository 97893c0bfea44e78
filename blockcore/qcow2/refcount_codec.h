// Reading and writing one refcount inside a qcow2 refcount block buffer, for every
// refcount width the format allows (refcount_order 0..6, i.e. 1..64 bits). Widths below
// a byte are packed LSB first within each byte (entry 0 is bit 0 of byte 0); 8, 16, 32
// and 64-bit refcounts are big-endian integers.
// The caller guarantees order <= 6 and index < block.size() * 8 >> order (asserted),
// which holds for every index derived from a validated Geometry.
// Threading: pure functions on caller-owned buffers.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>

#include "blockcore/base/big_endian.h"

namespace blockcore::qcow2 {

inline constexpr uint32_t kMaxRefcountOrder = 6;

// The largest refcount a width of 1 << order bits can hold.
constexpr uint64_t max_refcount(uint32_t order) {
  return order >= kMaxRefcountOrder ? ~uint64_t{0} : (uint64_t{1} << (1u << order)) - 1;
}

// Refcounts one block of `block_bytes` bytes holds.
constexpr uint64_t refcounts_per_block(uint64_t block_bytes, uint32_t order) {
  return (block_bytes * 8) >> order;
}

inline uint64_t get_refcount(std::span<const std::byte> block, uint32_t order, uint64_t index) {
  assert(order <= kMaxRefcountOrder);
  assert(index < refcounts_per_block(block.size(), order));
  switch (order) {
    case 3: return static_cast<uint64_t>(block[index]);
    case 4: return load_be16(block.data() + index * 2);
    case 5: return load_be32(block.data() + index * 4);
    case 6: return load_be64(block.data() + index * 8);
    default: {  // 1, 2 or 4 bits, LSB first
      const uint32_t bits = 1u << order;
      const uint64_t bit = index << order;
      const auto byte = static_cast<uint32_t>(block[bit / 8]);
      return (byte >> (bit % 8)) & ((1u << bits) - 1);
    }
  }
}

// Stores `value`, which must be <= max_refcount(order) (asserted; higher bits are cut).
inline void set_refcount(std::span<std::byte> block, uint32_t order, uint64_t index,
                         uint64_t value) {
  assert(order <= kMaxRefcountOrder);
  assert(index < refcounts_per_block(block.size(), order));
  assert(value <= max_refcount(order));
  switch (order) {
    case 3: block[index] = static_cast<std::byte>(value); return;
    case 4: store_be16(block.data() + index * 2, static_cast<uint16_t>(value)); return;
    case 5: store_be32(block.data() + index * 4, static_cast<uint32_t>(value)); return;
    case 6: store_be64(block.data() + index * 8, value); return;
    default: {
      const uint32_t bits = 1u << order;
      const uint64_t bit = index << order;
      const uint32_t shift = bit % 8;
      const uint32_t mask = ((1u << bits) - 1) << shift;
      auto byte = static_cast<uint32_t>(block[bit / 8]);
      byte = (byte & ~mask) | ((static_cast<uint32_t>(value) << shift) & mask);
      block[bit / 8] = static_cast<std::byte>(byte);
      return;
    }
  }
}

}  // namespace blockcore::qcow2
