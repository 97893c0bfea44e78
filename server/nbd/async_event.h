// AsyncEvent: a one-waiter wake-up signal for coroutines on one strand. Use it in a loop
// around a condition: `while (!cond) co_await ev.wait();` — since waiter and notifier
// share the strand, a notify can never fall between the check and the wait. The waiter
// is parked as a blockcore::Waiter and resumed by a post to its strand: no timer, so no
// reactor lock and no timerfd update per wake-up (the writer is woken once per batch of
// replies, the reader once per freed slot when it ran out).
// Threading: confined to one strand. The event must outlive its waiter.
#pragma once

#include <utility>

#include "blockcore/base/task.h"
#include "blockcore/base/waiter.h"

namespace server::nbd {

class AsyncEvent {
 public:
  AsyncEvent() = default;
  AsyncEvent(const AsyncEvent&) = delete;
  AsyncEvent& operator=(const AsyncEvent&) = delete;

  // Suspends until notify().
  blockcore::Task<void> wait() {
    co_await blockcore::suspend_until_woken(
        [this](blockcore::Waiter w) { waiter_ = std::move(w); });
  }

  // Wakes the waiter, if there is one (it resumes in a later turn of the strand).
  void notify() {
    if (waiter_) waiter_.wake();
  }

 private:
  blockcore::Waiter waiter_;
};

}  // namespace server::nbd
