// Connection: one NBD client from accept to close. run() performs the handshake (under
// a deadline), then the transmission phase: a reader loop takes a free request slot
// (none free = max_in_flight reached = stop reading the socket: back-pressure), reads
// and validates a request, and spawns a handler coroutine; handlers finish in any order
// and hand their slot to the ReplyWriter. A protocol violation ends this connection
// only. When it ends (DISC, EOF, violation, close/drain from the server) in-flight
// requests finish first, then one info line is logged with the connection's totals.
// Threading: everything runs on the connection's strand; close(), drain() and
// drain_if_export() may be called from any thread (they post to the strand).
#pragma once

#include <atomic>

#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "blockcore/base/task.h"
#include "config/config.h"
#include "server/export/export_registry.h"
#include "server/nbd/async_event.h"
#include "server/nbd/buffer_pool.h"
#include "server/nbd/busy_connections.h"
#include "server/nbd/handshake.h"
#include "server/nbd/meta_context.h"
#include "server/nbd/pipe_pool.h"
#include "server/nbd/reply_writer.h"
#include "server/nbd/request_handler.h"
#include "server/nbd/request_validation.h"
#include "server/nbd/socket_io.h"

namespace server::net {
class TlsContext;
}  // namespace server::net

namespace server::nbd {

struct ConnectionOptions {
  std::chrono::milliseconds handshake_timeout{10000};
  unsigned max_in_flight = 16;
  std::shared_ptr<net::TlsContext> tls;  // null: no STARTTLS
  config::ZeroCopy zero_copy = config::ZeroCopy::kAuto;
  // The server's count of busy connections (large-read path choice); may be null.
  std::shared_ptr<BusyConnections> busy;
};

// Totals reported when a connection ends.
struct ConnectionSummary {
  std::string peer;
  std::string export_name;
  std::chrono::steady_clock::duration duration{};
  uint64_t requests = 0;
  uint64_t bytes_read = 0;     // export data returned by READ
  uint64_t bytes_written = 0;  // export data accepted by WRITE
  uint64_t socket_in = 0;
  uint64_t socket_out = 0;
  std::string reason;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Reply headers of a released slot above this size are freed (a BLOCK_STATUS reply
  // can reach 1 MiB; keep only what ordinary replies need).
  static constexpr size_t kMaxRetainedMeta = 64 * 1024;
  // Pipes an idle connection keeps (each counts 1 MiB against the user's pipe budget).
  static constexpr size_t kIdlePipes = 2;

  using Strand = asio::strand<asio::any_io_executor>;

  // REQUIRES: exports and contexts outlive the connection.
  Connection(Socket socket, std::string peer, const ExportRegistry& exports,
             const MetaContextRegistry& contexts, ConnectionOptions options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Strand& strand() const { return strand_; }

  // Serves the client until the connection ends, then logs one line. Never throws.
  // REQUIRES: spawned on strand(), once, by a holder of a shared_ptr to this.
  blockcore::Task<void> run();

  // Ends the connection now (in-flight node calls still complete; replies are dropped).
  void close(std::string reason);
  // Stops reading requests, lets in-flight ones finish and their replies go out, then
  // closes. A connection still in the handshake is closed at once.
  void drain(std::string reason);
  // drain() if the connection serves exactly this export object.
  void drain_if_export(ExportPtr exp, std::string reason);

  // Valid once run() has completed.
  const ConnectionSummary& summary() const { return summary_; }
  // The export this connection opened (null during the handshake and after it ends).
  // Safe to call from any thread; only for identity comparisons.
  const Export* serving() const { return serving_.load(std::memory_order_acquire); }

 private:
  enum class Phase { kStarting, kHandshake, kTransmission, kClosed };

  blockcore::Task<void> serve();
  blockcore::Task<void> transmission(const NegotiatedSession& session);
  blockcore::Task<void> read_loop(const NegotiatedSession& session, RequestHandler& handler,
                                  ReplyWriter& writer);
  blockcore::Task<void> handle_one(std::shared_ptr<Connection> self, RequestSlot* slot,
                                   RequestHandler& handler, ReplyWriter& writer);
  // Reads a WRITE's payload into the slot: through a pipe when the node can take it,
  // zero_copy_ says so and the request is valid and large enough; else (or when the
  // pipe fills up) into memory.
  blockcore::Task<std::error_code> read_write_payload(RequestSlot& slot,
                                                      const ValidationContext& vctx);
  RequestSlot* take_slot();
  void release_slot(RequestSlot* slot);
  void set_reason(std::string reason);
  void abort_now(std::string reason);
  void drain_now(std::string reason);
  void log_end();

  Socket socket_;
  Strand strand_;
  const ExportRegistry& exports_;
  const MetaContextRegistry& contexts_;
  ConnectionOptions options_;
  SocketIo io_;
  BufferPool pool_;  // declared before the slots: buffers go back to it
  PipePool pipes_;   // likewise
  std::vector<std::unique_ptr<RequestSlot>> slots_;
  std::vector<RequestSlot*> free_slots_;
  RequestSlot* reader_slot_ = nullptr;  // taken by the reader, not yet handed on
  AsyncEvent slot_event_;               // a slot was released / reading must stop
  asio::steady_timer handshake_timer_;

  Phase phase_ = Phase::kStarting;
  bool stop_reading_ = false;
  bool local_peer_ = false;
  bool pipe_writes_ = false;  // the export's node can take WRITE payloads from pipes
  ZeroCopyPath zero_copy_;
  ExportPtr exp_;
  std::atomic<const Export*> serving_{nullptr};  // exp_.get() published for other threads
  std::chrono::steady_clock::time_point start_;
  ConnectionSummary summary_;
};

}  // namespace server::nbd
