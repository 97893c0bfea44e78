// AsyncMutex: a mutual-exclusion lock for coroutines. lock() suspends the coroutine
// (never the thread) while another holder has it; waiters are served first come, first
// served. Used to serialize a format driver's metadata updates, which may await I/O
// while holding the lock.
// Threading: lock()/unlock() from coroutines on any executor; the lock is not owned by
// a thread, so a coroutine that moves between threads may unlock it.
#pragma once

#include <deque>
#include <mutex>
#include <utility>

#include "blockcore/base/task.h"
#include "blockcore/base/waiter.h"

namespace blockcore {

class AsyncMutex {
 public:
  // Holds the lock until destroyed or unlock()ed.
  class Guard {
   public:
    Guard() = default;
    explicit Guard(AsyncMutex* m) : m_(m) {}
    Guard(Guard&& o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        m_ = std::exchange(o.m_, nullptr);
      }
      return *this;
    }
    ~Guard() { unlock(); }
    void unlock() {
      if (m_) std::exchange(m_, nullptr)->unlock();
    }
    bool owns_lock() const { return m_ != nullptr; }

   private:
    AsyncMutex* m_ = nullptr;
  };

  AsyncMutex() = default;
  AsyncMutex(const AsyncMutex&) = delete;
  AsyncMutex& operator=(const AsyncMutex&) = delete;

  Task<Guard> lock() {
    {
      std::lock_guard g(mu_);
      if (!locked_) {
        locked_ = true;
        co_return Guard(this);
      }
    }
    // Ownership is handed over by unlock() before the waiter is woken.
    co_await suspend_until_woken([this](Waiter w) {
      std::unique_lock g(mu_);
      if (!locked_) {
        locked_ = true;
        g.unlock();
        w.wake();
      } else {
        waiters_.push_back(std::move(w));
      }
    });
    co_return Guard(this);
  }

  bool try_lock() {
    std::lock_guard g(mu_);
    if (locked_) return false;
    locked_ = true;
    return true;
  }

  void unlock() {
    Waiter next;
    {
      std::lock_guard g(mu_);
      if (waiters_.empty()) {
        locked_ = false;
        return;
      }
      next = std::move(waiters_.front());
      waiters_.pop_front();  // stays locked: ownership passes to `next`
    }
    next.wake();
  }

 private:
  std::mutex mu_;
  bool locked_ = false;        // GUARDED_BY(mu_)
  std::deque<Waiter> waiters_;  // GUARDED_BY(mu_)
};

}  // namespace blockcore
