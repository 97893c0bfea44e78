// Big-endian loads and stores on byte buffers: every integer of the qcow2 format (and
// the NBD wire) is big-endian. memcpy-based, so unaligned addresses are fine.
// Threading: pure functions.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace blockcore {

template <class T>
inline T load_be(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::little) {
    if constexpr (sizeof(T) == 2) v = static_cast<T>(__builtin_bswap16(v));
    if constexpr (sizeof(T) == 4) v = static_cast<T>(__builtin_bswap32(v));
    if constexpr (sizeof(T) == 8) v = static_cast<T>(__builtin_bswap64(v));
  }
  return v;
}

template <class T>
inline void store_be(std::byte* p, T v) {
  if constexpr (std::endian::native == std::endian::little) {
    if constexpr (sizeof(T) == 2) v = static_cast<T>(__builtin_bswap16(v));
    if constexpr (sizeof(T) == 4) v = static_cast<T>(__builtin_bswap32(v));
    if constexpr (sizeof(T) == 8) v = static_cast<T>(__builtin_bswap64(v));
  }
  std::memcpy(p, &v, sizeof v);
}

inline uint16_t load_be16(const std::byte* p) { return load_be<uint16_t>(p); }
inline uint32_t load_be32(const std::byte* p) { return load_be<uint32_t>(p); }
inline uint64_t load_be64(const std::byte* p) { return load_be<uint64_t>(p); }
inline void store_be16(std::byte* p, uint16_t v) { store_be(p, v); }
inline void store_be32(std::byte* p, uint32_t v) { store_be(p, v); }
inline void store_be64(std::byte* p, uint64_t v) { store_be(p, v); }

}  // namespace blockcore
