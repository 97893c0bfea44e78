// run_task: drives one awaitable to completion on a private io_context and returns its
// result, so unit tests can call coroutine APIs synchronously. Work posted to other
// threads (a BlockingPool with threads) is awaited: the context runs until the task
// completes. Exceptions escaping the task are rethrown to the test.
// Threading: call from the test thread. The io_context is per thread and outlives the
// call: a BlockingPool thread may still be returning from its post() to the context
// after the task finished, so the context must not be destroyed right away (the same
// rule holds in the daemon: join the pool before destroying the io_context).
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "blockcore/base/task.h"

namespace fleece_test {

// The context run_task uses on this thread (lives until the thread exits).
inline asio::io_context& run_task_context() {
  static thread_local asio::io_context ctx;
  return ctx;
}

template <class T>
T run_task(blockcore::Task<T> task) {
  asio::io_context& ctx = run_task_context();
  ctx.restart();
  auto guard = asio::make_work_guard(ctx);
  std::exception_ptr error;
  if constexpr (std::is_void_v<T>) {
    bool done = false;
    asio::co_spawn(ctx, std::move(task), [&](std::exception_ptr e) {
      error = e;
      done = true;
      guard.reset();
    });
    ctx.run();
    if (error) std::rethrow_exception(error);
    (void)done;
  } else {
    // co_spawn needs a default-constructible result (Result<T> is not): wrap it.
    auto wrap = [](blockcore::Task<T> t) -> blockcore::Task<std::optional<T>> {
      co_return std::optional<T>(co_await std::move(t));
    };
    std::optional<T> result;
    asio::co_spawn(ctx, wrap(std::move(task)), [&](std::exception_ptr e, std::optional<T> value) {
      error = e;
      if (!e) result = std::move(value);
      guard.reset();
    });
    ctx.run();
    if (error) std::rethrow_exception(error);
    return std::move(*result);
  }
}

// Runs a callable returning an awaitable (e.g. a lambda coroutine) to completion.
template <class F>
auto run_task_fn(F&& fn) {
  return run_task(std::forward<F>(fn)());
}

}  // namespace fleece_test
