#include "server/metrics/metrics_server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <utility>

#include "server/metrics/http_request.h"
#include "server/metrics/prometheus_text.h"
#include "server/net/unix_socket_path.h"

namespace server::metrics {

using blockcore::Result;
using blockcore::Status;
using Protocol = asio::generic::stream_protocol;
using Socket = Protocol::socket;

namespace {

constexpr auto kUseTuple = asio::experimental::as_tuple(asio::use_awaitable);

}  // namespace

struct MetricsServer::Shared {
  Shared(asio::io_context& io, Render r, std::chrono::milliseconds t)
      : acceptor(io), render(std::move(r)), timeout(t) {}
  asio::basic_socket_acceptor<Protocol> acceptor;
  Render render;
  std::chrono::milliseconds timeout;
  std::atomic<size_t> connections{0};
};

namespace {

// Serves one connection: reads the head (bounded, timed), answers, closes. The timer's
// handler may run after this coroutine ended, so what it touches is shared.
asio::awaitable<void> serve(std::shared_ptr<MetricsServer::Shared> shared, Socket accepted) {
  auto socket = std::make_shared<Socket>(std::move(accepted));
  auto timed_out = std::make_shared<bool>(false);
  asio::steady_timer timer(socket->get_executor(), shared->timeout);
  timer.async_wait([socket, timed_out](const asio::error_code& ec) {
    if (ec) return;  // cancelled: the request was answered
    *timed_out = true;
    asio::error_code ignored;
    socket->close(ignored);
  });
  std::string head;
  auto [ec, n] = co_await asio::async_read_until(
      *socket, asio::dynamic_buffer(head, MetricsServer::kMaxHead), "\r\n\r\n", kUseTuple);
  HttpResponse response;
  if (!ec) {
    head.resize(n);
    response = respond_to(head, [&](std::string& type) { return shared->render(type); });
  } else if (ec == asio::error::not_found) {
    response = error_response(431);  // no blank line within kMaxHead bytes
  } else if (ec == asio::error::eof && !head.empty()) {
    response = error_response(400);  // the client stopped sending mid-head
  } else {
    timer.cancel();
    if (*timed_out) spdlog::debug("metrics: a client sent no complete request in time");
    co_return;
  }
  const std::string bytes = serialize(response);
  auto [wec, written] = co_await asio::async_write(*socket, asio::buffer(bytes), kUseTuple);
  (void)written;
  timer.cancel();
  if (wec) spdlog::debug("metrics: writing the response: {}", wec.message());
  asio::error_code ignored;
  socket->shutdown(Socket::shutdown_both, ignored);
  socket->close(ignored);
}

asio::awaitable<void> accept_loop(std::shared_ptr<MetricsServer::Shared> shared,
                                  asio::io_context& io) {
  for (;;) {
    auto strand = asio::make_strand(io);
    auto [ec, socket] = co_await shared->acceptor.async_accept(strand, kUseTuple);
    if (ec == asio::error::operation_aborted || !shared->acceptor.is_open()) co_return;
    if (ec) {
      spdlog::warn("metrics: accept failed: {}", ec.message());
      asio::steady_timer pause(io, std::chrono::milliseconds(100));
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    if (shared->connections.fetch_add(1) >= MetricsServer::kMaxConnections) {
      shared->connections.fetch_sub(1);
      asio::error_code ignored;
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(strand, serve(shared, std::move(socket)),
                   [shared](std::exception_ptr e) {
                     shared->connections.fetch_sub(1);
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       spdlog::error("metrics: serving a request raised: {}", x.what());
                     }
                   });
  }
}

Status bind_unix(asio::basic_socket_acceptor<Protocol>& a, const std::string& path) {
  if (Status s = net::prepare_unix_socket_path(path); !s.is_ok()) return s;
  asio::local::stream_protocol::endpoint ep(path);
  asio::error_code ec;
  a.open(Protocol(ep.protocol()), ec);
  if (!ec) a.bind(Protocol::endpoint(ep), ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::error(ec.value(), "listen unix:" + path + ": " + ec.message());
  return Status::ok();
}

Result<std::string> bind_tcp(asio::io_context& io, asio::basic_socket_acceptor<Protocol>& a,
                             const config::ListenAddress& addr) {
  asio::ip::tcp::resolver resolver(io);
  asio::error_code ec;
  auto results = resolver.resolve(addr.host, std::to_string(addr.port),
                                  asio::ip::tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return Status::error(EINVAL, "cannot resolve metrics host '" + addr.host + "'");
  }
  const asio::ip::tcp::endpoint ep = results.begin()->endpoint();
  a.open(Protocol(ep.protocol()), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(Protocol::endpoint(ep), ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::error(ec.value(), "listen " + addr.to_string() + ": " + ec.message());
  return addr.to_string();
}

}  // namespace

MetricsServer::MetricsServer(std::string address, std::string unix_path,
                             std::shared_ptr<Shared> shared)
    : shared_(std::move(shared)), address_(std::move(address)), unix_path_(std::move(unix_path)) {}

MetricsServer::~MetricsServer() { stop(); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(asio::io_context& io,
                                                            const config::ListenAddress& addr,
                                                            Render render,
                                                            std::chrono::milliseconds timeout) {
  auto shared = std::make_shared<Shared>(io, std::move(render), timeout);
  std::string address;
  std::string unix_path;
  if (addr.kind == config::ListenAddress::Kind::kUnix) {
    if (Status s = bind_unix(shared->acceptor, addr.path); !s.is_ok()) return s;
    address = "unix:" + addr.path;
    unix_path = addr.path;
  } else {
    Result<std::string> bound = bind_tcp(io, shared->acceptor, addr);
    if (!bound.is_ok()) return bound.status();
    address = bound.value();
  }
  asio::co_spawn(io, accept_loop(shared, io), asio::detached);
  spdlog::info("metrics: serving GET /metrics on {}", address);
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(std::move(address), std::move(unix_path), std::move(shared)));
}

void MetricsServer::stop() {
  if (!shared_ || !shared_->acceptor.is_open()) return;
  asio::error_code ignored;
  shared_->acceptor.close(ignored);
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

MetricsServer::Render prometheus_renderer(StatsSources from) {
  return [from = std::move(from)](std::string& content_type) {
    content_type = std::string(kPrometheusContentType);
    return render_prometheus(collect_stats(from));
  };
}

}  // namespace server::metrics
