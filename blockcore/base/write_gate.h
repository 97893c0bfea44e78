// WriteGate: lets write-like requests of a node pass, or holds new ones back while
// someone needs a moment with no write in flight (a fleecing snapshot point, a bitmap
// rotation). Passing is one atomic increment when the gate is open; close() waits until
// every write that passed has left.
// Threading: enter/leave from any thread; close() from a coroutine on any executor;
// closers are served one at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "blockcore/base/async_mutex.h"
#include "blockcore/base/task.h"
#include "blockcore/base/waiter.h"

namespace blockcore {

class WriteGate {
 public:
  // Counts one write in flight until destroyed.
  class Pass {
   public:
    Pass() = default;
    explicit Pass(WriteGate* g) : g_(g) {}
    Pass(Pass&& o) noexcept : g_(std::exchange(o.g_, nullptr)) {}
    Pass& operator=(Pass&&) = delete;
    ~Pass() {
      if (g_) g_->leave();
    }

   private:
    WriteGate* g_ = nullptr;
  };

  // Keeps the gate closed (no write in flight, new ones waiting) until destroyed.
  class Closed {
   public:
    Closed() = default;
    Closed(WriteGate* g, AsyncMutex::Guard closer) : g_(g), closer_(std::move(closer)) {}
    Closed(Closed&& o) noexcept : g_(std::exchange(o.g_, nullptr)), closer_(std::move(o.closer_)) {}
    Closed& operator=(Closed&&) = delete;
    ~Closed() {
      if (g_) g_->open();
    }

   private:
    WriteGate* g_ = nullptr;
    AsyncMutex::Guard closer_;
  };

  // True (and counted in flight) when the gate is open; false: use enter().
  bool try_enter() {
    in_flight_.fetch_add(1, std::memory_order_seq_cst);
    if (!closed_.load(std::memory_order_seq_cst)) return true;
    leave();
    return false;
  }
  // Waits until the gate is open and passes (counted in flight).
  Task<void> enter() {
    while (!try_enter()) {
      co_await suspend_until_woken([this](Waiter w) {
        std::unique_lock g(mu_);
        if (!closed_.load(std::memory_order_seq_cst)) {
          g.unlock();
          w.wake();
          return;
        }
        entrants_.push_back(std::move(w));
      });
    }
  }
  void leave() {
    if (in_flight_.fetch_sub(1, std::memory_order_seq_cst) != 1) return;
    if (!closed_.load(std::memory_order_seq_cst)) return;
    Waiter w;
    {
      std::lock_guard g(mu_);
      w = std::move(closer_waiter_);
    }
    if (w) w.wake();
  }

  // Closes the gate and waits until no write is in flight.
  Task<Closed> close() {
    AsyncMutex::Guard closer = co_await closers_.lock();
    closed_.store(true, std::memory_order_seq_cst);
    while (in_flight_.load(std::memory_order_seq_cst) != 0) {
      co_await suspend_until_woken([this](Waiter w) {
        std::unique_lock g(mu_);
        if (in_flight_.load(std::memory_order_seq_cst) == 0) {
          g.unlock();
          w.wake();
          return;
        }
        closer_waiter_ = std::move(w);
      });
    }
    co_return Closed(this, std::move(closer));
  }

  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  void open() {
    std::vector<Waiter> wake;
    {
      std::lock_guard g(mu_);
      closed_.store(false, std::memory_order_seq_cst);
      wake.swap(entrants_);
    }
    for (Waiter& w : wake) w.wake();
  }

  std::atomic<uint64_t> in_flight_{0};
  std::atomic<bool> closed_{false};
  AsyncMutex closers_;
  std::mutex mu_;
  std::vector<Waiter> entrants_;  // GUARDED_BY(mu_)
  Waiter closer_waiter_;          // GUARDED_BY(mu_)
};

}  // namespace blockcore
