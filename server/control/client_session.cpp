#include "server/control/client_session.h"

#include <spdlog/spdlog.h>

#include <array>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <vector>

namespace server::control {

using nlohmann::json;

namespace {

constexpr auto kAwait = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kReadChunk = 8192;
constexpr size_t kMaxBatchBytes = 256 << 10;

}  // namespace

void log_coroutine_exit(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("control: {} ended by an exception: {}", what, ex.what());
  } catch (...) {
    spdlog::error("control: {} ended by an unknown exception", what);
  }
}

ClientSession::ClientSession(Socket socket, const CommandTable& table, CommandContext& ctx,
                             uint64_t id)
    : socket_(std::move(socket)),
      dispatcher_(table, ctx),
      id_(id),
      out_ready_(socket_.get_executor()),
      drained_(socket_.get_executor()) {
  out_ready_.expires_at(asio::steady_timer::time_point::max());
  drained_.expires_at(asio::steady_timer::time_point::max());
}

void ClientSession::enqueue(std::string line) {
  if (closed_) return;
  queued_bytes_ += line.size();
  out_.push_back(std::move(line));
  out_ready_.cancel();
}

void ClientSession::deliver_event(const std::string& line) {
  if (closed_ || !dispatcher_.negotiated()) return;
  if (queued_bytes_ + line.size() > kMaxQueuedBytes) {
    spdlog::warn("control: client {} does not read its events; disconnecting it", id_);
    close();
    return;
  }
  enqueue(line);
}

void ClientSession::close() {
  if (closed_) return;
  closed_ = true;
  asio::error_code ec;
  socket_.shutdown(Socket::shutdown_both, ec);
  socket_.close(ec);
  for (const auto& line : out_) queued_bytes_ -= line.size();
  out_.clear();
  out_ready_.cancel();
  drained_.cancel();
}

asio::awaitable<void> ClientSession::run(std::shared_ptr<ClientSession> self) {
  asio::co_spawn(self->socket_.get_executor(), write_loop(self),
                 [](std::exception_ptr e) { log_coroutine_exit(e, "control writer"); });
  self->enqueue(QmpDispatcher::encode(QmpDispatcher::greeting()));

  std::array<char, kReadChunk> buf;
  std::vector<JsonStreamSplitter::Item> items;
  while (!self->closed_) {
    auto [ec, n] = co_await self->socket_.async_read_some(asio::buffer(buf), kAwait);
    if (ec) break;
    items.clear();
    self->splitter_.feed(std::string_view(buf.data(), n), items);
    for (const auto& item : items) {
      json reply;
      if (item.is_error) {
        reply = QmpDispatcher::parse_error_reply(item.text);
      } else {
        reply = co_await self->dispatcher_.handle(item.text);
      }
      if (self->closed_) break;
      self->enqueue(QmpDispatcher::encode(reply));
    }
    // Back-pressure: a client that does not read its replies stops being read.
    while (!self->closed_ && self->queued_bytes_ > kHighWaterBytes) {
      self->drained_.expires_at(asio::steady_timer::time_point::max());
      co_await self->drained_.async_wait(kAwait);
    }
  }
  self->close();
  spdlog::debug("control: client {} gone", self->id_);
}

asio::awaitable<void> ClientSession::write_loop(std::shared_ptr<ClientSession> self) {
  std::string batch;
  while (!self->closed_) {
    if (self->out_.empty()) {
      self->out_ready_.expires_at(asio::steady_timer::time_point::max());
      co_await self->out_ready_.async_wait(kAwait);
      continue;
    }
    batch.clear();
    while (!self->out_.empty() && batch.size() < kMaxBatchBytes) {
      batch += self->out_.front();
      self->out_.pop_front();
    }
    auto [ec, n] = co_await asio::async_write(self->socket_, asio::buffer(batch), kAwait);
    self->queued_bytes_ -= batch.size();
    if (self->queued_bytes_ <= kHighWaterBytes) self->drained_.cancel();
    if (ec) {
      self->close();
      break;
    }
  }
}

}  // namespace server::control
