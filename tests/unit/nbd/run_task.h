// run_task: runs one awaitable to completion on a private io_context (unit tests).
#pragma once

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <exception>
#include <optional>

namespace nbd_test {

template <class T>
asio::awaitable<std::optional<T>> as_optional(asio::awaitable<T> task) {
  co_return co_await std::move(task);
}

// co_spawn needs a default-constructible result; Result<T> is not.
template <class T>
T run_task(asio::awaitable<T> task) {
  asio::io_context io;
  std::optional<T> out;
  std::exception_ptr err;
  asio::co_spawn(io, as_optional(std::move(task)), [&](std::exception_ptr e, std::optional<T> v) {
    err = e;
    if (!e) out = std::move(v);
  });
  io.run();
  if (err) std::rethrow_exception(err);
  return std::move(*out);
}

}  // namespace nbd_test
