#include "server/nbd/nbd_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "server/nbd/connection.h"
#include "server/nbd/use_tuple.h"

namespace server::nbd {

struct NbdServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(ExportRegistry& e, const MetaContextRegistry& c, NbdServerOptions o)
      : exports(e), contexts(c), opts(o) {}

  std::vector<std::shared_ptr<Connection>> snapshot() const {
    std::lock_guard lock(mu);
    std::vector<std::shared_ptr<Connection>> out;
    out.reserve(connections.size());
    for (const auto& [ptr, c] : connections) out.push_back(c);
    return out;
  }

  void export_removed(const ExportPtr& exp) {
    for (auto& c : snapshot()) c->drain_if_export(exp, "export '" + exp->name + "' removed");
  }

  void remove(Connection* c) {
    std::lock_guard lock(mu);
    connections.erase(c);
  }

  ExportRegistry& exports;
  const MetaContextRegistry& contexts;
  const NbdServerOptions opts;
  const std::shared_ptr<BusyConnections> busy = std::make_shared<BusyConnections>();
  mutable std::mutex mu;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections;  // GUARDED_BY(mu)
  bool shutting_down = false;                                                // GUARDED_BY(mu)
};

namespace {

// Small replies must not wait for Nagle on TCP; other families need nothing.
void tune_socket(asio::generic::stream_protocol::socket& s) {
  std::error_code ec;
  auto ep = s.local_endpoint(ec);
  if (ec) return;
  const int family = ep.protocol().family();
  if (family != AF_INET && family != AF_INET6) return;
  int one = 1;
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

NbdServer::NbdServer(ExportRegistry& exports, const MetaContextRegistry& contexts,
                     NbdServerOptions opts)
    : impl_(std::make_shared<Impl>(exports, contexts, opts)) {
  std::weak_ptr<Impl> weak = impl_;
  exports.on_removed([weak](const ExportPtr& exp) {
    if (auto impl = weak.lock()) impl->export_removed(exp);
  });
}

NbdServer::~NbdServer() = default;

void NbdServer::accept(asio::generic::stream_protocol::socket socket, std::string peer) {
  std::shared_ptr<Connection> conn;
  {
    std::lock_guard lock(impl_->mu);
    const char* refuse = nullptr;
    if (impl_->shutting_down) {
      refuse = "server is shutting down";
    } else if (impl_->connections.size() >= impl_->opts.max_connections) {
      refuse = "connection limit reached";
    }
    if (refuse) {
      spdlog::warn("nbd: refused connection from {}: {} ({} connections)", peer, refuse,
                   impl_->connections.size());
      std::error_code ignored;
      socket.close(ignored);
      return;
    }
    tune_socket(socket);
    conn = std::make_shared<Connection>(
        std::move(socket), std::move(peer), impl_->exports, impl_->contexts,
        ConnectionOptions{impl_->opts.handshake_timeout, impl_->opts.max_in_flight,
                          impl_->opts.tls, impl_->opts.zero_copy, impl_->busy});
    impl_->connections.emplace(conn.get(), conn);
  }
  asio::co_spawn(conn->strand(), conn->run(),
                 [impl = impl_, raw = conn.get()](std::exception_ptr) { impl->remove(raw); });
}

asio::awaitable<void> NbdServer::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->shutting_down = true;
  }
  for (auto& c : impl_->snapshot()) c->drain("server shutting down");

  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  const auto poll = std::chrono::milliseconds(5);
  auto wait_until = [&](std::chrono::steady_clock::time_point deadline) -> asio::awaitable<bool> {
    while (connection_count() > 0) {
      if (std::chrono::steady_clock::now() >= deadline) co_return false;
      timer.expires_after(poll);
      co_await timer.async_wait(kUseTuple);
    }
    co_return true;
  };
  if (co_await wait_until(std::chrono::steady_clock::now() + grace)) co_return;

  spdlog::warn("nbd: {} connection(s) still busy after {} ms; closing them", connection_count(),
               grace.count());
  for (auto& c : impl_->snapshot()) c->close("shutdown grace period expired");
  // Closed connections end as soon as their in-flight node calls return.
  co_await wait_until(std::chrono::steady_clock::now() + std::chrono::seconds(2));
}

size_t NbdServer::connection_count() const {
  std::lock_guard lock(impl_->mu);
  return impl_->connections.size();
}

size_t NbdServer::connection_count(const Export& exp) const {
  size_t n = 0;
  for (const auto& c : impl_->snapshot()) {
    if (c->serving() == &exp) ++n;
  }
  return n;
}

}  // namespace server::nbd
