// BufferPool: reusable, 4 KiB-aligned data buffers for request payloads and read data,
// in power-of-two size classes from 4 KiB to 32 MiB. Released buffers are kept (up to a
// byte budget) and handed out again, so steady-state I/O never calls malloc/free for
// large buffers (glibc would mmap/munmap and page-fault every 1 MiB request).
// Buffer: move-only RAII handle that returns its memory to the pool.
// Threading: a pool and its buffers are confined to one connection's strand.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace server::nbd {

class BufferPool;

class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { reset(); }
  Buffer(Buffer&& o) noexcept : pool_(o.pool_), data_(o.data_), capacity_(o.capacity_) {
    o.pool_ = nullptr;
    o.data_ = nullptr;
    o.capacity_ = 0;
  }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::byte* data() const { return data_; }
  size_t capacity() const { return capacity_; }
  std::span<std::byte> span(size_t n) const { return {data_, n}; }
  explicit operator bool() const { return data_ != nullptr; }
  // Gives the memory back to the pool now.
  void reset();

 private:
  friend class BufferPool;
  Buffer(BufferPool* pool, std::byte* data, size_t capacity)
      : pool_(pool), data_(data), capacity_(capacity) {}

  BufferPool* pool_ = nullptr;
  std::byte* data_ = nullptr;
  size_t capacity_ = 0;
};

class BufferPool {
 public:
  static constexpr size_t kMinSize = 4096;
  static constexpr size_t kMaxSize = 32u << 20;
  static constexpr size_t kAlignment = 4096;

  // Keeps at most `max_retained_bytes` of free buffers and `max_per_class` per class.
  explicit BufferPool(size_t max_retained_bytes = 64u << 20, size_t max_per_class = 32);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of at least n bytes (n == 0 gives an empty handle).
  // REQUIRES: n <= kMaxSize. Throws std::bad_alloc when memory is exhausted.
  Buffer acquire(size_t n);

  size_t retained_bytes() const { return retained_; }
  uint64_t allocations() const { return allocations_; }  // fresh allocations so far

 private:
  friend class Buffer;
  static constexpr size_t kClasses = 14;  // 4 KiB .. 32 MiB
  static size_t class_of(size_t n);
  void release(std::byte* data, size_t capacity);

  std::array<std::vector<std::byte*>, kClasses> free_;
  size_t max_retained_;
  size_t max_per_class_;
  size_t retained_ = 0;
  uint64_t allocations_ = 0;
};

}  // namespace server::nbd
