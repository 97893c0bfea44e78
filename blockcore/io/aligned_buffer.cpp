#include "blockcore/io/aligned_buffer.h"

#include <cassert>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace blockcore::io {

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      alignment_(std::exchange(other.alignment_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    alignment_ = std::exchange(other.alignment_, 0);
  }
  return *this;
}

AlignedBuffer AlignedBuffer::allocate(size_t size, size_t alignment) {
  assert(alignment >= sizeof(void*) && (alignment & (alignment - 1)) == 0);
  AlignedBuffer b;
  void* p = nullptr;
  // posix_memalign accepts size 0 but may return nullptr; allocate one byte then.
  if (posix_memalign(&p, alignment, size == 0 ? 1 : size) != 0) return b;
  b.data_ = static_cast<std::byte*>(p);
  b.size_ = size;
  b.alignment_ = alignment;
  return b;
}

void AlignedBuffer::reset() {
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  alignment_ = 0;
}

AlignedBufferPool::Lease& AlignedBufferPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    give_back();
    pool_ = std::exchange(other.pool_, nullptr);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

void AlignedBufferPool::Lease::give_back() {
  if (pool_ != nullptr && !buffer_.empty()) pool_->release(std::move(buffer_));
  pool_ = nullptr;
}

AlignedBufferPool::AlignedBufferPool(size_t buffer_size, size_t alignment, size_t max_cached)
    : buffer_size_(buffer_size), alignment_(alignment), max_cached_(max_cached) {}

AlignedBufferPool::Lease AlignedBufferPool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      AlignedBuffer b = std::move(free_.back());
      free_.pop_back();
      return Lease(this, std::move(b));
    }
  }
  AlignedBuffer b = AlignedBuffer::allocate(buffer_size_, alignment_);
  if (b.empty()) return Lease();
  return Lease(this, std::move(b));
}

void AlignedBufferPool::release(AlignedBuffer buffer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.size() < max_cached_) free_.push_back(std::move(buffer));
  // Otherwise the buffer is freed here, outside the free list.
}

size_t AlignedBufferPool::cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return free_.size();
}

std::span<const std::byte> zero_buffer() {
  // Initialized once (thread-safe static init), read-only afterwards.
  static const std::byte* const kZeroes = [] {
    void* p = nullptr;
    if (posix_memalign(&p, kDirectIoAlignment, kZeroBufferSize) != 0) std::abort();
    std::memset(p, 0, kZeroBufferSize);
    return static_cast<const std::byte*>(p);
  }();
  return {kZeroes, kZeroBufferSize};
}

}  // namespace blockcore::io
