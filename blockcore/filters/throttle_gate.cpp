#include "blockcore/filters/throttle_gate.h"

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "blockcore/base/waiter.h"
#include "blockcore/filters/throttle_limiter.h"

namespace blockcore {

struct ThrottleGate::State : std::enable_shared_from_this<ThrottleGate::State> {
  struct Pending {
    uint64_t bytes;
    Waiter waiter;
  };
  // The requests of one direction, oldest first, and the timer that wakes the head.
  struct Queue {
    std::deque<Pending> waiting;
    std::optional<asio::any_io_executor> executor;  // of the latest request that waited
    std::shared_ptr<asio::steady_timer> timer;
    uint64_t generation = 0;  // a timer fires for nothing unless it is the latest
  };

  State(const ThrottleLimits& limits, Clock c) : clock(std::move(c)), limiter(limits) {}

  std::chrono::nanoseconds now() const {
    if (clock) return clock();
    return std::chrono::steady_clock::now().time_since_epoch();
  }
  Queue& queue(ThrottleDirection d) { return queues[d == ThrottleDirection::kRead ? 0 : 1]; }

  // Starts the queued requests of `d` that may start now (collected in `wake`, woken by
  // the caller after unlocking) and arms the timer for the next one.
  // REQUIRES: mu held.
  void pump_locked(ThrottleDirection d, std::vector<Waiter>& wake) {
    Queue& q = queue(d);
    ++q.generation;
    if (q.timer) {
      q.timer->cancel();
      q.timer.reset();
    }
    while (!q.waiting.empty()) {
      const std::chrono::nanoseconds t = now();
      const std::chrono::nanoseconds wait = limiter.wait_time(d, t);
      if (wait.count() == 0) {
        limiter.account(d, q.waiting.front().bytes, t);
        wake.push_back(std::move(q.waiting.front().waiter));
        q.waiting.pop_front();
        continue;
      }
      auto timer = std::make_shared<asio::steady_timer>(*q.executor, wait);
      q.timer = timer;
      const uint64_t generation = q.generation;
      timer->async_wait([self = shared_from_this(), d, generation, timer](std::error_code ec) {
        if (ec) return;
        self->on_timer(d, generation);
      });
      return;
    }
  }

  void on_timer(ThrottleDirection d, uint64_t generation) {
    std::vector<Waiter> wake;
    {
      std::lock_guard g(mu);
      Queue& q = queue(d);
      if (q.generation != generation) return;
      q.timer.reset();
      pump_locked(d, wake);
    }
    for (Waiter& w : wake) w.wake();
  }

  const Clock clock;
  mutable std::mutex mu;
  ThrottleLimiter limiter;  // GUARDED_BY(mu)
  Queue queues[2];          // GUARDED_BY(mu) reads, writes
};

ThrottleGate::ThrottleGate(const ThrottleLimits& limits, Clock clock)
    : state_(std::make_shared<State>(limits, std::move(clock))) {}

ThrottleGate::~ThrottleGate() {
  std::lock_guard g(state_->mu);
  for (State::Queue& q : state_->queues) {
    ++q.generation;
    if (q.timer) q.timer->cancel();
    q.timer.reset();
  }
}

Task<void> ThrottleGate::admit(ThrottleDirection d, uint64_t bytes) {
  std::shared_ptr<State> state = state_;
  {
    std::lock_guard g(state->mu);
    State::Queue& q = state->queue(d);
    if (q.waiting.empty()) {
      const std::chrono::nanoseconds t = state->now();
      if (state->limiter.wait_time(d, t).count() == 0) {
        state->limiter.account(d, bytes, t);
        co_return;
      }
    }
  }
  asio::any_io_executor executor = co_await asio::this_coro::executor;
  auto park = [&state, &executor, d, bytes](Waiter w) {
    std::vector<Waiter> wake;
    {
      std::lock_guard g(state->mu);
      State::Queue& q = state->queue(d);
      q.executor = executor;
      q.waiting.push_back(State::Pending{bytes, std::move(w)});
      // The head arms the timer; later arrivals queue behind it.
      if (q.waiting.size() == 1) state->pump_locked(d, wake);
    }
    for (Waiter& x : wake) x.wake();
  };
  co_await suspend_until_woken(park);
}

void ThrottleGate::set_limits(const ThrottleLimits& limits) {
  std::vector<Waiter> wake;
  {
    std::lock_guard g(state_->mu);
    state_->limiter.set_limits(limits, state_->now());
    for (ThrottleDirection d : {ThrottleDirection::kRead, ThrottleDirection::kWrite}) {
      if (!state_->queue(d).waiting.empty()) state_->pump_locked(d, wake);
    }
  }
  for (Waiter& w : wake) w.wake();
}

ThrottleLimits ThrottleGate::limits() const {
  std::lock_guard g(state_->mu);
  return state_->limiter.limits();
}

size_t ThrottleGate::waiting(ThrottleDirection d) const {
  std::lock_guard g(state_->mu);
  return state_->queue(d).waiting.size();
}

}  // namespace blockcore
