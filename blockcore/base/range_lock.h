// RangeLock: shared/exclusive locks over ranges [begin, end) of a number line (guest
// clusters of an image, bytes of a disk) for coroutines. Shared holders of overlapping
// ranges run together; an exclusive holder excludes every overlapping holder. Requests
// are served in arrival order among those that overlap, so writers are not starved;
// requests on disjoint ranges never wait for each other.
// Threading: lock() from coroutines on any executor; guards may be released anywhere.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <utility>

#include "blockcore/base/task.h"
#include "blockcore/base/waiter.h"

namespace blockcore {

class RangeLock {
 public:
  enum class Mode { kShared, kExclusive };

 private:
  struct Entry {
    uint64_t begin;
    uint64_t end;
    Mode mode;
    bool granted = false;
    Waiter waiter;
  };
  using Iter = std::list<Entry>::iterator;

 public:
  class Guard {
   public:
    Guard() = default;
    Guard(RangeLock* l, Iter it) : l_(l), it_(it) {}
    Guard(Guard&& o) noexcept : l_(std::exchange(o.l_, nullptr)), it_(o.it_) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        release();
        l_ = std::exchange(o.l_, nullptr);
        it_ = o.it_;
      }
      return *this;
    }
    ~Guard() { release(); }
    void release() {
      if (l_) std::exchange(l_, nullptr)->release(it_);
    }
    bool owns_lock() const { return l_ != nullptr; }

   private:
    RangeLock* l_ = nullptr;
    Iter it_{};
  };

  RangeLock() = default;
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  // REQUIRES: begin < end.
  Task<Guard> lock(uint64_t begin, uint64_t end, Mode mode) {
    Iter it;
    bool granted;
    {
      std::lock_guard g(mu_);
      it = entries_.insert(entries_.end(), Entry{begin, end, mode});
      granted = grantable_locked(it);
      it->granted = granted;
    }
    if (!granted) {
      co_await suspend_until_woken([this, it](Waiter w) {
        std::unique_lock g(mu_);
        if (it->granted) {  // released meanwhile and granted before we parked
          g.unlock();
          w.wake();
        } else {
          it->waiter = std::move(w);
        }
      });
    }
    co_return Guard(this, it);
  }

  // Holders and waiters, for tests and diagnostics.
  size_t size() const {
    std::lock_guard g(mu_);
    return entries_.size();
  }

 private:
  static bool conflicts(const Entry& a, const Entry& b) {
    const bool overlap = a.begin < b.end && b.begin < a.end;
    return overlap && (a.mode == Mode::kExclusive || b.mode == Mode::kExclusive);
  }

  // REQUIRES: mu_ held. True when nothing before `it` conflicts with it.
  bool grantable_locked(Iter it) const {
    for (auto e = entries_.begin(); e != it; ++e) {
      if (conflicts(*e, *it)) return false;
    }
    return true;
  }

  void release(Iter it) {
    std::list<Waiter> wake;
    {
      std::lock_guard g(mu_);
      entries_.erase(it);
      for (auto e = entries_.begin(); e != entries_.end(); ++e) {
        if (e->granted || !grantable_locked(e)) continue;
        e->granted = true;
        if (e->waiter) wake.push_back(std::move(e->waiter));
      }
    }
    for (Waiter& w : wake) w.wake();
  }

  mutable std::mutex mu_;
  std::list<Entry> entries_;  // GUARDED_BY(mu_) holders and waiters in arrival order
};

}  // namespace blockcore
