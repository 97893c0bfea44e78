// run_blocking(): runs a coroutine to completion on a private io_context and returns
// its result, for the few places that must finish asynchronous block I/O from
// synchronous code — opening and closing an image on the control or start-up path.
// Completions posted by a BlockingPool land on the private context, so this works from
// any thread, including an io_context thread (which it blocks meanwhile).
// Threading: call from any thread; blocks it until the coroutine finishes.
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <exception>
#include <optional>
#include <utility>

#include "blockcore/base/task.h"

namespace blockcore {

template <class T, class MakeTask>
T run_blocking(MakeTask make_task) {
  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(
      ctx,
      [&]() -> Task<void> { result.emplace(co_await make_task()); },
      [&](std::exception_ptr e) {
        error = e;
        work.reset();
      });
  ctx.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

}  // namespace blockcore
