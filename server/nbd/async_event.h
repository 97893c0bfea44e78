// AsyncEvent: a one-waiter wake-up signal for coroutines on one strand (a steady_timer
// that never expires, cancelled to wake the waiter). Use it in a loop around a
// condition: `while (!cond) co_await ev.wait();` — since waiter and notifier share the
// strand, a notify can never fall between the check and the wait.
// Threading: confined to one strand.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include "blockcore/base/task.h"
#include "server/nbd/use_tuple.h"

namespace server::nbd {

class AsyncEvent {
 public:
  explicit AsyncEvent(const asio::any_io_executor& ex) : timer_(ex) {
    timer_.expires_at(asio::steady_timer::time_point::max());
  }
  AsyncEvent(const AsyncEvent&) = delete;
  AsyncEvent& operator=(const AsyncEvent&) = delete;

  // Suspends until notify() (or until the timer is destroyed).
  blockcore::Task<void> wait() {
    waiting_ = true;
    co_await timer_.async_wait(kUseTuple);
    waiting_ = false;
    timer_.expires_at(asio::steady_timer::time_point::max());
  }

  // Wakes the waiter, if there is one.
  void notify() {
    if (waiting_) timer_.cancel();
  }

  bool waiting() const { return waiting_; }

 private:
  asio::steady_timer timer_;
  bool waiting_ = false;
};

}  // namespace server::nbd
