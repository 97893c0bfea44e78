// NbdServer: the NBD protocol server the daemon's listeners hand accepted sockets to.
// It runs one Connection per socket on that socket's executor (through a strand), keeps
// the set of live connections, refuses connections beyond max_connections, drops
// clients that have not finished the handshake within handshake_timeout (a deadline
// from accept, so a slow trickle of options cannot hold a slot), drains the connections of an
// export removed from the ExportRegistry (others are untouched), and shuts down
// gracefully. Each connection logs one info line when it ends.
// Threading: every public method is thread-safe; connections may live on several
// io_context threads. The registries must outlive every connection: destroy them only
// after shutdown() has completed (or after the io_contexts have stopped).
#pragma once

#include <asio/generic/stream_protocol.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "blockcore/base/task.h"
#include "config/config.h"
#include "server/export/export_registry.h"
#include "server/nbd/meta_context.h"

namespace server::net {
class TlsContext;
}  // namespace server::net

namespace server::nbd {

struct NbdServerOptions {
  unsigned max_connections = 256;
  std::chrono::milliseconds handshake_timeout{10000};
  unsigned max_in_flight = 16;  // per connection; memory bound = this × 32 MiB
  std::shared_ptr<net::TlsContext> tls;  // STARTTLS credentials; null: plain only
  config::ZeroCopy zero_copy = config::ZeroCopy::kAuto;
};

class NbdServer {
 public:
  NbdServer(ExportRegistry& exports, const MetaContextRegistry& contexts, NbdServerOptions opts);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // Serves one accepted connection on the socket's executor until it closes.
  void accept(asio::generic::stream_protocol::socket socket, std::string peer);

  // Stops new connections and handshakes, lets in-flight requests finish and replies go
  // out, then closes every connection; completes when all are gone (or after `grace`,
  // forcing close).
  asio::awaitable<void> shutdown(std::chrono::milliseconds grace);

  size_t connection_count() const;
  // Connections that opened exactly this export (past the handshake, not yet closed).
  size_t connection_count(const Export& exp) const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace server::nbd
