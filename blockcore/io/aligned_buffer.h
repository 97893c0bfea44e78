// Aligned buffers for O_DIRECT I/O: AlignedBuffer owns one aligned allocation,
// AlignedBufferPool recycles fixed-size buffers so the I/O path does not allocate per
// request, and zero_buffer() is a process-wide read-only region of zeroes.
// Threading: an AlignedBuffer is a move-only value owned by one user at a time;
// AlignedBufferPool is thread-safe (an internal mutex guards the free list);
// zero_buffer() may be called from any thread and is never written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace blockcore::io {

// Alignment that satisfies every O_DIRECT device we meet (logical blocks up to 4 KiB,
// page-aligned memory).
inline constexpr size_t kDirectIoAlignment = 4096;

// True when p is a multiple of alignment (a power of two).
inline bool is_aligned(const void* p, size_t alignment) {
  return (reinterpret_cast<uintptr_t>(p) & (alignment - 1)) == 0;
}
inline bool is_aligned(uint64_t v, uint64_t alignment) { return (v & (alignment - 1)) == 0; }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer() { reset(); }
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Allocates size bytes aligned to alignment (a power of two, at least
  // sizeof(void*)). Returns an empty buffer when memory is exhausted, so callers on the
  // I/O path can answer ENOMEM instead of throwing. The contents are uninitialized.
  static AlignedBuffer allocate(size_t size, size_t alignment = kDirectIoAlignment);

  bool empty() const { return data_ == nullptr; }
  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  size_t alignment() const { return alignment_; }
  std::span<std::byte> span() { return {data_, size_}; }
  std::span<const std::byte> span() const { return {data_, size_}; }

  // Frees the memory; the buffer becomes empty.
  void reset();

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  size_t alignment_ = 0;
};

// A free list of equally sized aligned buffers. acquire() hands out a Lease that gives
// its buffer back when destroyed; at most max_cached idle buffers are kept.
class AlignedBufferPool {
 public:
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept : pool_(other.pool_), buffer_(std::move(other.buffer_)) {
      other.pool_ = nullptr;
    }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease() { give_back(); }

    bool empty() const { return buffer_.empty(); }
    std::byte* data() { return buffer_.data(); }
    size_t size() const { return buffer_.size(); }
    std::span<std::byte> span() { return buffer_.span(); }

   private:
    friend class AlignedBufferPool;
    Lease(AlignedBufferPool* pool, AlignedBuffer buffer)
        : pool_(pool), buffer_(std::move(buffer)) {}
    void give_back();

    AlignedBufferPool* pool_ = nullptr;
    AlignedBuffer buffer_;
  };

  AlignedBufferPool(size_t buffer_size, size_t alignment, size_t max_cached);
  AlignedBufferPool(const AlignedBufferPool&) = delete;
  AlignedBufferPool& operator=(const AlignedBufferPool&) = delete;

  size_t buffer_size() const { return buffer_size_; }
  // A buffer of buffer_size() bytes, recycled when possible. Empty when out of memory.
  Lease acquire();
  // Idle buffers currently cached (for tests and diagnostics).
  size_t cached() const;

 private:
  void release(AlignedBuffer buffer);

  const size_t buffer_size_;
  const size_t alignment_;
  const size_t max_cached_;
  mutable std::mutex mu_;
  std::vector<AlignedBuffer> free_;  // GUARDED_BY(mu_)
};

// Size of the shared zero region.
inline constexpr size_t kZeroBufferSize = 1u << 20;

// kZeroBufferSize bytes of zeroes aligned to kDirectIoAlignment, allocated on first use
// and never written (a constant, not mutable global state).
std::span<const std::byte> zero_buffer();

}  // namespace blockcore::io
