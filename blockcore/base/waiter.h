// Waiter: a suspended coroutine parked in a queue until another coroutine (on any
// thread) wakes it, and suspend_until_woken(), which parks the caller. The building block
// of AsyncMutex and RangeLock. A waiter resumes on its own executor (posted, never run
// inline), so the waker may hold its own std::mutex while waking.
// Threading: Waiter is move-only; wake() may be called from any thread, exactly once.
#pragma once

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <memory>
#include <utility>

#include "blockcore/base/task.h"

namespace blockcore {

class Waiter {
 public:
  Waiter() = default;
  template <class Handler>
  explicit Waiter(Handler&& h) : impl_(std::make_unique<Impl<std::decay_t<Handler>>>(std::move(h))) {}

  explicit operator bool() const { return impl_ != nullptr; }
  // Resumes the parked coroutine on its executor.
  void wake() {
    auto impl = std::move(impl_);
    if (impl) impl->post();
  }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void post() = 0;
  };
  template <class Handler>
  struct Impl final : Base {
    explicit Impl(Handler h) : handler(std::move(h)) {}
    void post() override {
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, std::move(handler));
    }
    Handler handler;
  };
  std::unique_ptr<Base> impl_;
};

// Suspends the calling coroutine; `park(Waiter)` is called once with the waiter that
// resumes it (typically it stores the waiter in a queue under a mutex).
template <class Park>
Task<void> suspend_until_woken(Park park) {
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&park](auto handler) { park(Waiter(std::move(handler))); }, asio::use_awaitable);
}

}  // namespace blockcore
