#include "server/nbd/pipe_pool.h"

#include <spdlog/spdlog.h>

#include <utility>

namespace server::nbd {

using blockcore::io::PipeBuffer;

PipeBuffer PipePool::acquire() {
  if (!free_.empty()) {
    PipeBuffer p = std::move(free_.back());
    free_.pop_back();
    return p;
  }
  if (backoff_ > 0) {
    --backoff_;
    return {};
  }
  blockcore::Result<PipeBuffer> p = PipeBuffer::create(kCapacity);
  if (!p.is_ok() || p->capacity() < kCapacity) {
    if (refusals_++ == 0) {
      spdlog::info("nbd: large reads and writes are copied instead of spliced: {}",
                   p.is_ok() ? "pipe smaller than requested" : p.status().to_string());
    }
    backoff_ = kBackoffAcquires;
    return {};
  }
  return std::move(p.value());
}

void PipePool::release(PipeBuffer pipe) {
  if (!pipe || pipe.held() != 0 || free_.size() >= max_retained_) return;  // closed here
  free_.push_back(std::move(pipe));
}

void PipePool::trim(size_t keep) {
  if (free_.size() > keep) free_.resize(keep);
}

}  // namespace server::nbd
