// kUseTuple: the completion token for socket and timer operations whose errors are
// expected (EOF, reset, cancellation): `auto [ec, n] = co_await op(..., kUseTuple);`.
// Asio 1.22 (Debian 12) has as_tuple only under asio::experimental.
// Threading: a constant.
#pragma once

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

namespace server::nbd {

inline constexpr auto kUseTuple = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace server::nbd
