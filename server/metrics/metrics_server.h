// MetricsServer: the optional Prometheus endpoint (config `metrics:`) — a minimal
// HTTP/1.1 responder on a Unix socket or a local TCP address serving GET /metrics in the
// text exposition format. One request per connection, then the connection closes; a
// request head is bounded (kMaxHead bytes, else 431) and must arrive within the
// timeout (else the connection is dropped); at most kMaxConnections are served at once
// (others are closed at once). A bad request never affects the daemon.
// Threading: start/stop on the io_context's thread; each connection runs on its own
// strand; render() is called from those strands (collect_stats is thread-safe).
#pragma once

#include <asio/basic_socket_acceptor.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "blockcore/base/result.h"
#include "config/config.h"
#include "server/metrics/stats_snapshot.h"

namespace server::metrics {

class MetricsServer {
 public:
  // The body of GET /metrics (sets the content type).
  using Render = std::function<std::string(std::string& content_type)>;
  static constexpr size_t kMaxHead = 8192;
  static constexpr size_t kMaxConnections = 16;
  static constexpr std::chrono::milliseconds kDefaultTimeout{5000};

  // Binds `addr` (a stale Unix socket file is replaced, a live one is EADDRINUSE) and
  // starts accepting.
  static blockcore::Result<std::unique_ptr<MetricsServer>> start(
      asio::io_context& io, const config::ListenAddress& addr, Render render,
      std::chrono::milliseconds timeout = kDefaultTimeout);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Stops accepting and removes the Unix socket file; connections being served finish.
  void stop();
  // "unix:PATH" or "tcp:HOST:PORT" as bound.
  const std::string& address() const { return address_; }

  struct Shared;  // the acceptor and what connections need (metrics_server.cpp)

 private:
  MetricsServer(std::string address, std::string unix_path, std::shared_ptr<Shared> shared);

  std::shared_ptr<Shared> shared_;
  std::string address_;
  std::string unix_path_;
};

// A Render that collects `from` and renders it as Prometheus text.
MetricsServer::Render prometheus_renderer(StatsSources from);

}  // namespace server::metrics
