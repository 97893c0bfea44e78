#include "server/nbd/buffer_pool.h"

#include <bit>
#include <cassert>
#include <new>

namespace server::nbd {
namespace {

std::byte* allocate_aligned(size_t n) {
  return static_cast<std::byte*>(::operator new (n, std::align_val_t{BufferPool::kAlignment}));
}

void free_aligned(std::byte* p) { ::operator delete (p, std::align_val_t{BufferPool::kAlignment}); }

}  // namespace

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    pool_ = o.pool_;
    data_ = o.data_;
    capacity_ = o.capacity_;
    o.pool_ = nullptr;
    o.data_ = nullptr;
    o.capacity_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (data_) pool_->release(data_, capacity_);
  pool_ = nullptr;
  data_ = nullptr;
  capacity_ = 0;
}

BufferPool::BufferPool(size_t max_retained_bytes, size_t max_per_class)
    : max_retained_(max_retained_bytes), max_per_class_(max_per_class) {}

BufferPool::~BufferPool() {
  for (auto& list : free_) {
    for (std::byte* p : list) free_aligned(p);
  }
}

size_t BufferPool::class_of(size_t n) {
  if (n <= kMinSize) return 0;
  return static_cast<size_t>(std::bit_width(n - 1)) - 12;  // ceil(log2(n)) - log2(4096)
}

Buffer BufferPool::acquire(size_t n) {
  if (n == 0) return Buffer();
  assert(n <= kMaxSize);
  const size_t cls = class_of(n);
  const size_t capacity = kMinSize << cls;
  auto& list = free_[cls];
  if (!list.empty()) {
    std::byte* p = list.back();
    list.pop_back();
    retained_ -= capacity;
    return Buffer(this, p, capacity);
  }
  ++allocations_;
  return Buffer(this, allocate_aligned(capacity), capacity);
}

void BufferPool::release(std::byte* data, size_t capacity) {
  const size_t cls = class_of(capacity);
  auto& list = free_[cls];
  if (retained_ + capacity > max_retained_ || list.size() >= max_per_class_) {
    free_aligned(data);
    return;
  }
  // push_back may throw; the memory must not leak then.
  try {
    list.push_back(data);
  } catch (...) {
    free_aligned(data);
    return;
  }
  retained_ += capacity;
}

}  // namespace server::nbd
