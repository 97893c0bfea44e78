// with_timeout(): runs a coroutine on its own and waits for it at most a given time.
// The coroutine keeps running to completion when the time runs out (an I/O in a pool
// cannot be taken back), so it must own what it uses (capture shared_ptrs).
// Threading: call from a coroutine; the task runs on the caller's executor.
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <cerrno>
#include <chrono>
#include <memory>
#include <mutex>
#include <utility>

#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/base/waiter.h"

namespace blockcore {

// make_task() returns Task<Status>. Returns its status, or ETIMEDOUT when `timeout`
// passes first.
template <class MakeTask>
Task<Status> with_timeout(MakeTask make_task, std::chrono::milliseconds timeout) {
  struct State {
    std::mutex mu;
    bool done = false;
    Status status;
    Waiter waiter;
  };
  auto ex = co_await asio::this_coro::executor;
  auto state = std::make_shared<State>();
  // Whoever comes first (the task or the timer) takes the waiter and wakes it.
  auto wake = [](const std::shared_ptr<State>& st) {
    Waiter w;
    {
      std::lock_guard g(st->mu);
      w = std::move(st->waiter);
    }
    if (w) w.wake();
  };
  asio::co_spawn(
      ex,
      [state, wake, make_task = std::move(make_task)]() mutable -> Task<void> {
        Status s = co_await make_task();
        {
          std::lock_guard g(state->mu);
          state->done = true;
          state->status = std::move(s);
        }
        wake(state);
      },
      asio::detached);
  auto timer = std::make_shared<asio::steady_timer>(ex, timeout);
  co_await suspend_until_woken([&](Waiter w) {
    std::unique_lock g(state->mu);
    if (state->done) {
      g.unlock();
      w.wake();
      return;
    }
    // Armed before the waiter is published, under the lock: once the task can wake this
    // coroutine (on another thread of the executor), nothing here touches the timer or
    // this frame any more.
    timer->async_wait([state, timer, wake](const std::error_code& ec) {
      if (!ec) wake(state);
    });
    state->waiter = std::move(w);
  });
  timer->cancel();
  std::lock_guard g(state->mu);
  if (state->done) co_return state->status;
  co_return Status::error(ETIMEDOUT, "timed out");
}

}  // namespace blockcore
