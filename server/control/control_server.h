// ControlServer: the QMP control socket — a Unix socket (mode 0600, owner only) whose
// clients speak QMP (greeting, capabilities negotiation, commands from a CommandTable,
// asynchronous events). A stale socket file left by a dead process is replaced at
// start(); one that a live process still accepts on is refused. Each client is one
// coroutine pair (ClientSession); events from the context's EventSink are broadcast to
// every negotiated client.
// Threading: all socket work runs on a strand of `io`, so `io` may be run by any number
// of threads. start() and stop() are called from one thread at a time (the daemon's
// main thread); broadcast_event() from any thread. The table and the context must
// outlive the server and every coroutine it started (i.e. until `io` is destroyed or
// has run out of work after stop()).
#pragma once

#include <asio/io_context.hpp>
#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "blockcore/base/status.h"
#include "server/control/command_table.h"

namespace server::control {

class ControlServer {
 public:
  static constexpr size_t kMaxClients = 64;

  // Sets ctx.commands to `commands` if it is unset.
  ControlServer(asio::io_context& io, std::string socket_path, CommandTable& commands,
                CommandContext& ctx);
  ~ControlServer();  // stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds and starts accepting. EADDRINUSE if a live process serves the path, EEXIST if
  // the path is not a socket, or the bind/listen error.
  blockcore::Status start();
  // Serves on a listening Unix socket handed over by systemd (socket activation) instead
  // of binding socket_path; the socket file is systemd's, so stop() leaves it in place.
  // Takes ownership of `fd` (closed on error too).
  blockcore::Status adopt(int fd);
  // Closes the listener and every client, and removes the socket file (if it is still
  // the one this server bound). Idempotent.
  void stop();
  // Sends {"event": name, "data": data, "timestamp": ...} to every negotiated client
  // of every ControlServer on this context (it goes through ctx.events).
  void broadcast_event(const std::string& name, nlohmann::json data);

  const std::string& socket_path() const { return socket_path_; }
  // Connected clients (approximate when called off the strand; for tests and logs).
  size_t client_count() const;

 private:
  struct Shared;
  void begin_accepting();

  std::string socket_path_;
  CommandContext& ctx_;
  std::shared_ptr<Shared> shared_;
  uint64_t event_subscription_ = 0;
  bool started_ = false;
};

}  // namespace server::control
