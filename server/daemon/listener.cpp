#include "server/daemon/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/experimental/as_tuple.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>

#include <spdlog/spdlog.h>

#include "server/net/unix_socket_path.h"

namespace server::daemon {

using blockcore::Result;
using blockcore::Status;

Listener::Listener(asio::io_context& io, std::string description, std::string unix_path)
    : acceptor_(io), description_(std::move(description)), unix_path_(std::move(unix_path)) {}

Listener::~Listener() { close(); }

Result<std::unique_ptr<Listener>> Listener::bind(asio::io_context& io,
                                                 const config::ListenAddress& addr) {
  asio::error_code ec;
  if (addr.kind == config::ListenAddress::Kind::kUnix) {
    if (Status s = net::prepare_unix_socket_path(addr.path); !s.is_ok()) return s;
    std::unique_ptr<Listener> l(new Listener(io, "unix:" + addr.path, addr.path));
    asio::local::stream_protocol::endpoint ep(addr.path);
    asio::generic::stream_protocol::endpoint gep(ep);
    l->acceptor_.open(gep.protocol(), ec);
    if (!ec) l->acceptor_.bind(gep, ec);
    if (ec) {
      l->unix_path_.clear();  // not ours
      return Status::error(ec.value(), "bind unix:" + addr.path + ": " + ec.message());
    }
    l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::error(ec.value(), "listen unix:" + addr.path + ": " + ec.message());
    return l;
  }

  asio::ip::address ip = asio::ip::make_address(addr.host, ec);
  if (ec) {
    // A host name: resolve it (start-up path, blocking is fine).
    asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(addr.host, std::to_string(addr.port), ec);
    if (ec || results.empty()) {
      return Status::error(EINVAL, "cannot resolve listen host '" + addr.host + "'");
    }
    ip = results.begin()->endpoint().address();
  }
  asio::ip::tcp::endpoint tep(ip, addr.port);
  std::unique_ptr<Listener> l(new Listener(io, addr.to_string(), ""));
  l->is_tcp_ = true;
  asio::generic::stream_protocol::endpoint gep(tep);
  l->acceptor_.open(gep.protocol(), ec);
  if (!ec) l->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec && ip.is_v6()) {
    int on = 1;  // [::] listens on IPv6 only; list 0.0.0.0 separately for IPv4
    setsockopt(l->acceptor_.native_handle(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
  }
  if (!ec) l->acceptor_.bind(gep, ec);
  if (!ec) l->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::error(ec.value(), "listen " + addr.to_string() + ": " + ec.message());
  return l;
}

Result<std::unique_ptr<Listener>> Listener::adopt(asio::io_context& io, int fd,
                                                  std::string name) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Status::from_errno(errno, "getsockname of activated fd " + std::to_string(fd));
  }
  const int family = ss.ss_family;
  const int proto = family == AF_UNIX ? 0 : IPPROTO_TCP;
  std::unique_ptr<Listener> l(
      new Listener(io, "activated:" + name + "(fd " + std::to_string(fd) + ")", ""));
  l->is_tcp_ = family != AF_UNIX;
  asio::error_code ec;
  l->acceptor_.assign(asio::generic::stream_protocol(family, proto), fd, ec);
  if (ec) return Status::error(ec.value(), "adopt fd " + std::to_string(fd) + ": " + ec.message());
  return l;
}

void Listener::start(PickContext pick, OnAccept on_accept) {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(std::move(pick), std::move(on_accept)),
                 asio::detached);
}

asio::awaitable<void> Listener::accept_loop(PickContext pick, OnAccept on_accept) {
  while (acceptor_.is_open()) {
    asio::io_context& target = pick();
    auto [ec, socket] = co_await acceptor_.async_accept(
        asio::any_io_executor(target.get_executor()), asio::experimental::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
    if (ec) {
      spdlog::warn("{}: accept failed: {}", description_, ec.message());
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      continue;
    }
    if (is_tcp_) {
      int on = 1;
      setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    std::string peer = describe_peer(socket);
    on_accept(std::move(socket), std::move(peer));
  }
}

void Listener::close() {
  asio::error_code ec;
  if (acceptor_.is_open()) acceptor_.close(ec);
  if (!unix_path_.empty()) {
    ::unlink(unix_path_.c_str());
    unix_path_.clear();
  }
}

std::string describe_peer(Listener::Socket& socket) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  const int fd = socket.native_handle();
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown";
  if (ss.ss_family == AF_UNIX) {
    ucred cred{};
    socklen_t clen = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
      return "unix:pid=" + std::to_string(cred.pid) + ",uid=" + std::to_string(cred.uid);
    }
    return "unix";
  }
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "unknown";
}

}  // namespace server::daemon

