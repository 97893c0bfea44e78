#include "server/control/control_server.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/dispatch.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <map>

#include "server/control/client_session.h"
#include "server/control/qmp_error.h"
#include "server/net/unix_socket_path.h"

namespace server::control {

using blockcore::Status;
using nlohmann::json;

namespace {
constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);
}  // namespace

// What the coroutines share; it outlives the ControlServer until they have finished.
struct ControlServer::Shared {
  Shared(asio::io_context& io, const CommandTable& t, CommandContext& c)
      : strand(asio::make_strand(io)), acceptor(strand), table(t), ctx(c) {}

  asio::strand<asio::io_context::executor_type> strand;
  asio::local::stream_protocol::acceptor acceptor;  // strand only
  const CommandTable& table;
  CommandContext& ctx;
  std::map<uint64_t, std::weak_ptr<ClientSession>> sessions;  // strand only
  uint64_t next_id = 1;                                       // strand only
  bool stopped = false;                                       // strand only
  std::atomic<size_t> clients{0};
  dev_t dev = 0;  // the socket file this server bound (start/stop thread)
  ino_t ino = 0;

  void broadcast(const std::string& line) {
    for (auto& [id, weak] : sessions) {
      if (auto s = weak.lock()) s->deliver_event(line);
    }
  }

  void close_all() {
    stopped = true;
    asio::error_code ec;
    acceptor.close(ec);
    for (auto& [id, weak] : sessions) {
      if (auto s = weak.lock()) s->close();
    }
  }

  static asio::awaitable<void> serve(std::shared_ptr<Shared> self,
                                     std::shared_ptr<ClientSession> session) {
    std::exception_ptr failure;
    try {
      co_await ClientSession::run(session);
    } catch (...) {
      failure = std::current_exception();
    }
    self->sessions.erase(session->id());
    self->clients.fetch_sub(1, std::memory_order_relaxed);
    if (failure) std::rethrow_exception(failure);
  }

  static asio::awaitable<void> accept_loop(std::shared_ptr<Shared> self) {
    while (!self->stopped) {
      auto [ec, socket] = co_await self->acceptor.async_accept(kAwait);
      if (self->stopped || ec == asio::error::operation_aborted) break;
      if (ec) {
        // EMFILE and friends: wait a little instead of spinning.
        spdlog::warn("control: accept failed: {}", ec.message());
        asio::steady_timer delay(self->strand, kAcceptRetryDelay);
        co_await delay.async_wait(kAwait);
        continue;
      }
      if (self->sessions.size() >= kMaxClients) {
        spdlog::warn("control: refusing a client: {} already connected", kMaxClients);
        std::string line = QmpDispatcher::encode(QmpDispatcher::parse_error_reply(
            "too many control connections (" + std::to_string(kMaxClients) + ")"));
        co_await asio::async_write(socket, asio::buffer(line), kAwait);
        continue;  // the socket closes here
      }
      uint64_t id = self->next_id++;
      auto session = std::make_shared<ClientSession>(std::move(socket), self->table, self->ctx, id);
      self->sessions.emplace(id, session);
      self->clients.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("control: client {} connected", id);
      asio::co_spawn(self->strand, serve(self, std::move(session)),
                     [](std::exception_ptr e) { log_coroutine_exit(e, "control client"); });
    }
  }
};

ControlServer::ControlServer(asio::io_context& io, std::string socket_path, CommandTable& commands,
                             CommandContext& ctx)
    : socket_path_(std::move(socket_path)),
      ctx_(ctx),
      shared_(std::make_shared<Shared>(io, commands, ctx)) {
  if (ctx_.commands == nullptr) ctx_.commands = &commands;
}

ControlServer::~ControlServer() { stop(); }

size_t ControlServer::client_count() const {
  return shared_->clients.load(std::memory_order_relaxed);
}

Status ControlServer::start() {
  if (started_) return Status::invalid("control server already started");
  if (Status s = net::prepare_unix_socket_path(socket_path_); !s.is_ok()) return s;

  auto& acceptor = shared_->acceptor;
  asio::error_code ec;
  acceptor.open(asio::local::stream_protocol(), ec);
  if (ec) return Status::from_errno(ec.value(), "socket");
  acceptor.bind(asio::local::stream_protocol::endpoint(socket_path_), ec);
  if (ec) {
    acceptor.close();
    return Status::from_errno(ec.value(), "bind " + socket_path_);
  }
  // Owner only, and before listen(): nobody can connect while the mode is wider.
  struct stat st {};
  if (::chmod(socket_path_.c_str(), S_IRUSR | S_IWUSR) != 0 ||
      ::lstat(socket_path_.c_str(), &st) != 0) {
    Status s = Status::from_errno(errno, "chmod " + socket_path_);
    acceptor.close();
    ::unlink(socket_path_.c_str());
    return s;
  }
  shared_->dev = st.st_dev;
  shared_->ino = st.st_ino;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor.close();
    ::unlink(socket_path_.c_str());
    return Status::from_errno(ec.value(), "listen " + socket_path_);
  }

  begin_accepting();
  spdlog::info("control socket listening on {}", socket_path_);
  return Status::ok();
}

Status ControlServer::adopt(int fd) {
  if (started_) {
    ::close(fd);
    return Status::invalid("control server already started");
  }
  asio::error_code ec;
  shared_->acceptor.assign(asio::local::stream_protocol(), fd, ec);
  if (ec) {
    ::close(fd);
    return Status::from_errno(ec.value(), "adopt control socket fd " + std::to_string(fd));
  }
  // dev/ino stay 0: stop() never unlinks a socket file systemd created.
  begin_accepting();
  spdlog::info("control socket listening on {} (socket activation)", socket_path_);
  return Status::ok();
}

void ControlServer::begin_accepting() {
  std::shared_ptr<Shared> shared = shared_;
  event_subscription_ = ctx_.events->subscribe([shared](const QmpEvent& e) {
    asio::post(shared->strand,
               [shared, line = QmpDispatcher::encode(e.to_json())] { shared->broadcast(line); });
  });
  asio::co_spawn(shared_->strand, Shared::accept_loop(shared_),
                 [](std::exception_ptr e) { log_coroutine_exit(e, "control listener"); });
  started_ = true;
}

void ControlServer::stop() {
  if (!started_) return;
  started_ = false;
  ctx_.events->unsubscribe(event_subscription_);
  // Remove the path only if it is still our socket (not one a newer daemon bound).
  struct stat st {};
  if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == shared_->dev &&
      st.st_ino == shared_->ino) {
    ::unlink(socket_path_.c_str());
  }
  std::shared_ptr<Shared> shared = shared_;
  asio::dispatch(shared_->strand, [shared] { shared->close_all(); });
}

void ControlServer::broadcast_event(const std::string& name, json data) {
  ctx_.events->emit(name, std::move(data));
}

}  // namespace server::control
