// Listener: one listening socket of the daemon — a Unix path, a TCP address (IPv4 or
// IPv6) or a socket inherited through systemd socket activation — and its accept loop.
// Each accepted connection is created on an io_context the caller picks (so
// connections spread over the I/O threads) and handed to a callback.
// Threading: bind/adopt/start/close run on the main io_context's thread; the accept
// callback runs there too.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/basic_socket_acceptor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "blockcore/base/result.h"
#include "config/config.h"

namespace server::daemon {

class Listener {
 public:
  using Socket = asio::generic::stream_protocol::socket;
  using PickContext = std::function<asio::io_context&()>;
  using OnAccept = std::function<void(Socket socket, std::string peer)>;

  // Binds and listens on addr. A stale Unix socket file is replaced; one a live daemon
  // serves is not (EADDRINUSE).
  static blockcore::Result<std::unique_ptr<Listener>> bind(asio::io_context& io,
                                                           const config::ListenAddress& addr);
  // Adopts an already-listening socket (socket activation). Never unlinks anything.
  static blockcore::Result<std::unique_ptr<Listener>> adopt(asio::io_context& io, int fd,
                                                            std::string name);

  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Starts the accept loop. Accept errors that concern one connection (EMFILE,
  // ECONNABORTED...) are logged and the loop continues after a short pause.
  void start(PickContext pick, OnAccept on_accept);
  // Stops accepting and removes a Unix socket file this listener created.
  void close();

  const std::string& description() const { return description_; }

 private:
  Listener(asio::io_context& io, std::string description, std::string unix_path);
  asio::awaitable<void> accept_loop(PickContext pick, OnAccept on_accept);

  asio::basic_socket_acceptor<asio::generic::stream_protocol> acceptor_;
  std::string description_;
  std::string unix_path_;  // set when we created the file (removed on close)
  bool is_tcp_ = false;
};

// Human-readable peer of an accepted socket: "unix:pid=N,uid=N" or "HOST:PORT".
std::string describe_peer(Listener::Socket& socket);

}  // namespace server::daemon
