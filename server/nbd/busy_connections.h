// BusyConnections: how many of the server's connections have requests in flight right
// now. Large reads use it to choose between splicing file pages (least server CPU) and
// copying (warmest data for a client on the same host): see ZeroCopyPath.
// Threading: thread-safe (one atomic); shared by the server and its connections.
#pragma once

#include <atomic>

namespace server::nbd {

class BusyConnections {
 public:
  void became_busy() { busy_.fetch_add(1, std::memory_order_relaxed); }
  void became_idle() { busy_.fetch_sub(1, std::memory_order_relaxed); }
  unsigned busy() const { return busy_.load(std::memory_order_relaxed); }

 private:
  std::atomic<unsigned> busy_{0};
};

}  // namespace server::nbd
