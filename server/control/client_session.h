// ClientSession: one control-socket connection. A reader coroutine cuts the input into
// JSON texts (JsonStreamSplitter) and runs them one after another through a
// QmpDispatcher; a writer coroutine drains the outgoing queue (greeting, replies,
// events) in batches. Replies apply back-pressure: while more than kHighWaterBytes wait
// to be written, no further input is read. Events cannot wait, so a client that lets
// more than kMaxQueuedBytes pile up is disconnected. Events reach a client only after
// it negotiated capabilities.
// Threading: every method runs on the control server's strand (the socket's executor).
#pragma once

#include <asio/awaitable.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <string>

#include "server/control/json_stream_splitter.h"
#include "server/control/qmp_dispatcher.h"

namespace server::control {

// Completion handler for co_spawn'ed control coroutines: logs an escaped exception (a
// bug) instead of swallowing it.
void log_coroutine_exit(std::exception_ptr e, const char* what);

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  static constexpr size_t kHighWaterBytes = 1 << 20;
  static constexpr size_t kMaxQueuedBytes = 16 << 20;

  using Socket = asio::local::stream_protocol::socket;

  ClientSession(Socket socket, const CommandTable& table, CommandContext& ctx, uint64_t id);

  uint64_t id() const { return id_; }
  bool closed() const { return closed_; }

  // Serves the connection until the peer leaves or close() is called; `self` keeps the
  // session alive meanwhile. Spawns the writer.
  static asio::awaitable<void> run(std::shared_ptr<ClientSession> self);
  // Queues an encoded event line (dropped before negotiation).
  void deliver_event(const std::string& line);
  // Closes the connection at once; unsent output is dropped. Idempotent.
  void close();

 private:
  static asio::awaitable<void> write_loop(std::shared_ptr<ClientSession> self);
  void enqueue(std::string line);

  Socket socket_;
  QmpDispatcher dispatcher_;
  JsonStreamSplitter splitter_;
  uint64_t id_;
  std::deque<std::string> out_;
  size_t queued_bytes_ = 0;
  asio::steady_timer out_ready_;  // cancelled when out_ gains data or on close
  asio::steady_timer drained_;    // cancelled when queued_bytes_ drops below high water
  bool closed_ = false;
};

}  // namespace server::control
