#include "blockcore/io/blocking_pool.h"

namespace blockcore::io {

BlockingPool::BlockingPool(unsigned threads) : threads_(threads) {
  if (threads_ > 0) pool_ = std::make_unique<asio::thread_pool>(threads_);
}

BlockingPool::~BlockingPool() { stop(); }

void BlockingPool::stop() {
  if (pool_) pool_->join();
  stopped_.store(true, std::memory_order_release);
}

}  // namespace blockcore::io
