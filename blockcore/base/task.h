// Task<T>: the coroutine type of every asynchronous operation in fleece (an Asio
// awaitable). A Task runs on the executor of the coroutine that awaits it.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/use_awaitable.hpp>

namespace blockcore {

template <class T>
using Task = asio::awaitable<T>;

}  // namespace blockcore
