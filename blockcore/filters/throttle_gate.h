// ThrottleGate: where requests of a `throttle` node wait for their turn. admit() returns
// at once while the ThrottleLimiter lets requests start; otherwise the request joins a
// FIFO queue of its direction (reads and writes apart, so a large request at the head
// is never overtaken and starved by small ones), and one Asio timer per direction wakes
// the head when the buckets will let it start. Nothing sleeps a thread: waiting
// requests are suspended coroutines. set_limits() swaps the limits at once and
// re-evaluates the queued requests (they may start now, or wait on a new timer).
// Threading: thread-safe; admit() may be called from any executor concurrently, and a
// waiter resumes on its own executor. The gate's state outlives pending timers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "blockcore/base/task.h"
#include "blockcore/filters/throttle_limits.h"

namespace blockcore {

class ThrottleGate {
 public:
  using Clock = std::function<std::chrono::nanoseconds()>;

  // `clock` (for tests) defaults to std::chrono::steady_clock; timers always run in
  // real time, so a fake clock only changes what the limiter is told.
  explicit ThrottleGate(const ThrottleLimits& limits, Clock clock = {});
  ~ThrottleGate();
  ThrottleGate(const ThrottleGate&) = delete;
  ThrottleGate& operator=(const ThrottleGate&) = delete;

  // Returns once a request of `bytes` in direction `d` may start (and counts it).
  Task<void> admit(ThrottleDirection d, uint64_t bytes);

  // Takes effect for queued requests too. REQUIRES: check_throttle_limits(limits) ok.
  void set_limits(const ThrottleLimits& limits);
  ThrottleLimits limits() const;
  // Requests waiting in direction `d` now.
  size_t waiting(ThrottleDirection d) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace blockcore
