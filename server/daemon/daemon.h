// Daemon: the running fleeced — I/O threads, the blocking pool, the block graph, the
// exports, the fleecing sessions, the NBD server with its listeners, and the control
// socket. It starts from a Config, reloads on SIGHUP (only what changed), and on
// SIGTERM/SIGINT stops accepting, lets in-flight requests finish, rolls back every
// fleece, flushes every node and exits.
// Threading: construct, start() and run() on the main thread. The main io_context
// (run by run()) owns signals, listeners, the control socket and reloads; connections
// are spread over `io_threads` worker io_contexts.
#pragma once

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backup/fleece_manager.h"
#include "blockcore/base/status.h"
#include "blockcore/graph.h"
#include "blockcore/io/blocking_pool.h"
#include "config/config.h"
#include "server/daemon/config_apply.h"
#include "server/daemon/listener.h"
#include "server/daemon/service_status.h"
#include "server/daemon/socket_activation.h"
#include "server/control/event_sink.h"
#include "server/export/export_registry.h"
#include "server/metrics/metrics_server.h"

namespace server::nbd {
class NbdServer;
class MetaContextRegistry;
}  // namespace server::nbd
namespace server::control {
class ControlServer;
class CommandTable;
struct CommandContext;
}  // namespace server::control

namespace server::daemon {

struct DaemonOptions {
  std::string config_path;  // re-read on SIGHUP; empty = no reload (serve mode)
  bool log_level_from_cli = false;  // a --log-level given on the command line wins
};

class Daemon {
 public:
  Daemon(config::Config cfg, DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Opens the graph and exports, binds listeners and the control socket. Failures are
  // start-up errors (the caller prints them and exits 1).
  blockcore::Status start(std::vector<ActivatedSocket> activated);
  // Serves until SIGTERM/SIGINT; returns the process exit code.
  int run();

 private:
  asio::awaitable<void> handle_signals();
  asio::awaitable<void> reload();
  asio::awaitable<void> shutdown();
  // Keeps systemd's STATUS= line current (exports and fleeces change through the control
  // socket, connections come and go): recounts every second, sends only changes.
  asio::awaitable<void> refresh_status();
  ServiceCounts counts() const;
  asio::io_context& next_io_context();
  blockcore::Status start_listeners(std::vector<ActivatedSocket>& activated);
  blockcore::Status start_control(std::vector<ActivatedSocket>& activated);

  config::Config config_;
  DaemonOptions options_;

  // Declared before main_io_: operations pending on main_io_ (an accept) may own sockets
  // of these contexts, so these must outlive main_io_.
  std::vector<std::unique_ptr<asio::io_context>> io_contexts_;
  std::vector<std::thread> io_threads_;
  std::atomic<size_t> next_io_{0};
  asio::io_context main_io_;
  asio::signal_set signals_;
  asio::steady_timer status_timer_;
  ServiceNotifier notifier_;

  blockcore::io::BlockingPool pool_;
  // Before graph_: nodes report corruption to it from the first open on.
  std::shared_ptr<control::EventSink> events_ = std::make_shared<control::EventSink>();
  blockcore::Graph graph_;
  ExportRegistry exports_;
  // After events_ (its broken handler emits FLEECE_BROKEN) and graph_; stopped (rolled
  // back) in shutdown() before the final flush and bitmap store.
  std::unique_ptr<backup::FleeceManager> fleeces_;
  ConfigApplier applier_;
  std::unique_ptr<nbd::MetaContextRegistry> meta_contexts_;
  std::unique_ptr<nbd::NbdServer> nbd_server_;
  std::unique_ptr<control::CommandTable> commands_;
  std::unique_ptr<control::CommandContext> command_context_;
  std::unique_ptr<control::ControlServer> control_server_;
  std::unique_ptr<metrics::MetricsServer> metrics_server_;  // config `metrics:`
  std::vector<std::unique_ptr<Listener>> listeners_;
  bool stopping_ = false;
  int exit_code_ = 0;
};

}  // namespace server::daemon
