#include "server/daemon/daemon.h"

#include <asio/experimental/as_tuple.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/use_awaitable.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "backup/fleece_overlay.h"
#include "config/yaml_loader.h"
#include "server/control/command_table.h"
#include "server/control/control_server.h"
#include "server/daemon/bitmap_setup.h"
#include "server/daemon/logging.h"
#include "server/nbd/meta_context.h"
#include "server/nbd/nbd_server.h"
#include "server/net/tls_context.h"

namespace server::daemon {

using blockcore::Status;

namespace {

constexpr auto kShutdownGrace = std::chrono::milliseconds(30000);
constexpr unsigned kReloadDrainMs = 10000;
constexpr auto kStatusRefresh = std::chrono::seconds(1);

// Connections, images and the pipes of zero-copy I/O (two fds each, up to max-in-flight
// per connection) all take descriptors; the soft limit of a shell (often 1024) would run
// out long before max-connections. Raise it to the hard limit, as a service should.
void raise_open_file_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  const rlim_t old = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) == 0) {
    spdlog::debug("open file limit raised from {} to {}", old, lim.rlim_cur);
  }
}

unsigned io_thread_count(const config::ServerConfig& s) {
  if (s.io_threads > 0) return s.io_threads;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

nbd::NbdServerOptions nbd_options(const config::ServerConfig& s) {
  nbd::NbdServerOptions o;
  o.max_connections = s.max_connections;
  o.handshake_timeout = std::chrono::milliseconds(uint64_t{s.handshake_timeout_s} * 1000);
  o.max_in_flight = s.max_in_flight;
  o.zero_copy = s.zero_copy;
  return o;
}

}  // namespace

Daemon::Daemon(config::Config cfg, DaemonOptions options)
    : config_(std::move(cfg)),
      options_(std::move(options)),
      signals_(main_io_),
      status_timer_(main_io_),
      pool_(config_.server.blocking_threads),
      graph_(pool_),
      fleeces_(std::make_unique<backup::FleeceManager>(
          pool_,
          [events = events_](const std::string& id, const std::string& node,
                             const std::string& reason) {
            // From an I/O thread: EventSink is thread-safe and its listeners only post.
            events->emit("FLEECE_BROKEN", {{"id", id}, {"node", node}, {"reason", reason}});
          })),
      applier_(graph_, exports_) {
  // The config's `bitmaps:` exist before any export offers them (start-up and reload).
  applier_.set_nodes_ready_hook([this](const config::Config& applied) {
    return ensure_config_bitmaps_blocking(applied.bitmaps, graph_);
  });
  // QEMU's event for an image found corrupt (fatal: the node turned read-only).
  graph_.set_corruption_handler([events = events_](const std::string& node, const std::string& msg) {
    events->emit("BLOCK_IMAGE_CORRUPTED",
                 {{"device", ""}, {"node-name", node}, {"msg", msg}, {"fatal", true}});
  });
}

Daemon::~Daemon() {
  for (auto& io : io_contexts_) io->stop();
  for (auto& t : io_threads_) {
    if (t.joinable()) t.join();
  }
}

asio::io_context& Daemon::next_io_context() {
  size_t i = next_io_.fetch_add(1, std::memory_order_relaxed);
  return *io_contexts_[i % io_contexts_.size()];
}

Status Daemon::start(std::vector<ActivatedSocket> activated) {
  std::signal(SIGPIPE, SIG_IGN);
  raise_open_file_limit();
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  signals_.add(SIGHUP);

  if (Status s = applier_.apply_initial(config_); !s.is_ok()) return s;
  // Overlays are unlinked when created; this removes any a crash left between create
  // and unlink.
  if (config_.fleecing && !config_.fleecing->overlay_dir.empty()) {
    backup::sweep_overlays(config_.fleecing->overlay_dir);
  }

  meta_contexts_ = std::make_unique<nbd::MetaContextRegistry>();
  nbd::NbdServerOptions nbd_opts = nbd_options(config_.server);
  if (config_.tls) {  // TLS credentials are read once, at start-up
    auto tls = net::TlsContext::create(*config_.tls);
    if (!tls) return tls.status();
    nbd_opts.tls = *tls;
    spdlog::info("nbd: TLS: {}", nbd_opts.tls->describe());
  }
  nbd_server_ = std::make_unique<nbd::NbdServer>(exports_, *meta_contexts_, nbd_opts);

  const unsigned n = io_thread_count(config_.server);
  for (unsigned i = 0; i < n; ++i) io_contexts_.push_back(std::make_unique<asio::io_context>(1));

  if (Status s = start_listeners(activated); !s.is_ok()) return s;

  commands_ = std::make_unique<control::CommandTable>(control::make_default_command_table());
  command_context_ = std::make_unique<control::CommandContext>(
      control::CommandContext{graph_, exports_});
  command_context_->events = events_;
  command_context_->fleeces = fleeces_.get();
  if (config_.fleecing) command_context_->overlay_dir = config_.fleecing->overlay_dir;
  // block-export-del in QEMU's default "safe" mode refuses exports with clients.
  command_context_->export_clients = [server = nbd_server_.get()](const Export& e) {
    return server->connection_count(e);
  };
  if (config_.metrics) {  // the Prometheus endpoint (server/metrics/metrics_server.h)
    metrics::StatsSources from{graph_, exports_, fleeces_.get(), command_context_->export_clients};
    auto m = metrics::MetricsServer::start(main_io_, config_.metrics->address,
                                           metrics::prometheus_renderer(std::move(from)));
    if (!m.is_ok()) return m.status().with_context("metrics endpoint");
    metrics_server_ = std::move(m).value();
  }
  return start_control(activated);
}

Status Daemon::start_control(std::vector<ActivatedSocket>& activated) {
  // A socket systemd passed under the name "control" wins over the config's path (the
  // unit's fleeced.socket and the config normally name the same file).
  auto adopted = std::find_if(activated.begin(), activated.end(),
                              [](const ActivatedSocket& a) { return a.is_control(); });
  const std::string& configured = config_.control.unix_path;
  if (adopted != activated.end()) {
    for (auto it = std::next(adopted); it != activated.end(); ++it) {
      if (it->is_control()) {
        spdlog::warn("socket activation: a second control socket (fd {}) ignored", it->fd);
      }
    }
    if (!configured.empty() && configured != adopted->unix_path) {
      spdlog::warn("control socket {} from the config not bound: systemd passed one ({})",
                   configured, adopted->unix_path.empty() ? "unnamed" : adopted->unix_path);
    }
    control_server_ = std::make_unique<control::ControlServer>(main_io_, adopted->unix_path,
                                                               *commands_, *command_context_);
    int fd = adopted->fd;
    adopted->fd = -1;
    if (Status s = control_server_->adopt(fd); !s.is_ok()) return s.with_context("control socket");
    return Status::ok();
  }
  if (configured.empty()) return Status::ok();
  control_server_ = std::make_unique<control::ControlServer>(main_io_, configured, *commands_,
                                                             *command_context_);
  if (Status s = control_server_->start(); !s.is_ok()) {
    return s.with_context("control socket " + configured);
  }
  return Status::ok();
}

Status Daemon::start_listeners(std::vector<ActivatedSocket>& activated) {
  auto pick = [this]() -> asio::io_context& { return next_io_context(); };
  auto on_accept = [this](Listener::Socket socket, std::string peer) {
    nbd_server_->accept(std::move(socket), std::move(peer));
  };
  std::vector<std::string> activated_paths;
  for (auto& a : activated) {
    if (a.is_control()) continue;
    auto l = Listener::adopt(main_io_, a.fd, a.name);
    if (!l.is_ok()) return l.status();
    listeners_.push_back(std::move(l.value()));
    if (!a.unix_path.empty()) activated_paths.push_back(a.unix_path);
  }
  for (const auto& addr : config_.listen) {
    // systemd already listens there for us (fleeced.socket naming the same path).
    if (addr.kind == config::ListenAddress::Kind::kUnix &&
        std::find(activated_paths.begin(), activated_paths.end(), addr.path) !=
            activated_paths.end()) {
      continue;
    }
    auto l = Listener::bind(main_io_, addr);
    if (!l.is_ok()) return l.status();
    listeners_.push_back(std::move(l.value()));
  }
  if (listeners_.empty()) return Status::invalid("nothing to listen on (no listen: addresses)");
  for (auto& l : listeners_) {
    l->start(pick, on_accept);
    spdlog::info("listening on {}", l->description());
  }
  return Status::ok();
}

int Daemon::run() {
  for (auto& io : io_contexts_) {
    io_threads_.emplace_back([ctx = io.get()] {
      auto guard = asio::make_work_guard(*ctx);
      ctx->run();
    });
  }
  asio::co_spawn(main_io_, handle_signals(), asio::detached);
  std::vector<std::string> names;
  for (const auto& e : exports_.list()) names.push_back("'" + e->name + "'");
  spdlog::info("fleeced ready: {} export(s) {}", names.size(), fmt::join(names, ", "));
  // start() has opened every image and bound every listener: clients can connect now.
  notifier_.ready(counts());
  asio::co_spawn(main_io_, refresh_status(), asio::detached);
  main_io_.run();
  for (auto& io : io_contexts_) io->stop();
  for (auto& t : io_threads_) t.join();
  io_threads_.clear();
  pool_.stop();
  spdlog::info("fleeced stopped");
  return exit_code_;
}

asio::awaitable<void> Daemon::handle_signals() {
  while (!stopping_) {
    auto [ec, sig] = co_await signals_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) break;
    if (sig == SIGHUP) {
      co_await reload();
      continue;
    }
    spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    co_await shutdown();
  }
}

asio::awaitable<void> Daemon::reload() {
  if (options_.config_path.empty()) {
    spdlog::warn("SIGHUP: no config file to reload (serve mode)");
    co_return;
  }
  notifier_.reloading();
  spdlog::info("SIGHUP: reloading {}", options_.config_path);
  auto loaded = config::load_config_file(options_.config_path);
  if (!loaded.is_ok()) {
    spdlog::error("reload failed, keeping the running configuration:\n{}",
                  loaded.status().to_string());
    notifier_.ready(counts());
    co_return;
  }
  config::Config next = std::move(loaded.value());
  if (!options_.log_level_from_cli) {
    if (auto level = parse_log_level(next.log.level)) set_log_level(*level);
  }
  Status s = co_await applier_.apply_reload(next, kReloadDrainMs);
  if (s.is_ok()) {
    spdlog::info("reload done");
  } else {
    spdlog::error("reload finished with errors; see above");
  }
  config_.nodes = std::move(next.nodes);
  config_.exports = std::move(next.exports);
  notifier_.ready(counts());
}

ServiceCounts Daemon::counts() const {
  ServiceCounts c;
  c.exports = exports_.list().size();
  c.connections = nbd_server_ ? nbd_server_->connection_count() : 0;
  for (const auto& f : fleeces_->list()) {
    ++c.fleeces;
    if (f->state() == "broken") ++c.broken_fleeces;
  }
  return c;
}

asio::awaitable<void> Daemon::refresh_status() {
  while (!stopping_) {
    status_timer_.expires_after(kStatusRefresh);
    auto [ec] = co_await status_timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec || stopping_) break;
    notifier_.update_status(counts());
  }
}

asio::awaitable<void> Daemon::shutdown() {
  if (stopping_) co_return;
  stopping_ = true;
  notifier_.stopping();
  status_timer_.cancel();
  for (auto& l : listeners_) l->close();
  if (control_server_) control_server_->stop();
  if (metrics_server_) metrics_server_->stop();
  co_await nbd_server_->shutdown(kShutdownGrace);
  // A fleece that dies with the daemon counts as a failed backup: its frozen bitmap bits
  // go back into the live bitmaps before those are stored below.
  co_await fleeces_->stop_all();
  // Everything acknowledged must be on disk before we exit.
  for (const auto& node : graph_.nodes()) {
    if (node->read_only()) continue;
    Status s = co_await node->flush();
    if (!s.is_ok()) {
      spdlog::error("flush of node '{}' at shutdown failed: {}", node->name(), s.to_string());
      exit_code_ = 1;
    }
    // Persistent bitmaps written exactly and marked consistent for QEMU (not in use).
    s = co_await node->bitmaps().close_store();
    if (!s.is_ok()) {
      spdlog::error("storing the dirty bitmaps of node '{}' at shutdown failed: {}",
                    node->name(), s.to_string());
      exit_code_ = 1;
    }
  }
  signals_.cancel();
  main_io_.stop();
}

}  // namespace server::daemon
