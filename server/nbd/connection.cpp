#include "server/nbd/connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <cassert>
#include <exception>

#include "server/nbd/protocol.h"
#include "server/net/peer_identity.h"
#include "server/net/tls_context.h"

namespace server::nbd {

using blockcore::Task;

Connection::Connection(Socket socket, std::string peer, const ExportRegistry& exports,
                       const MetaContextRegistry& contexts, ConnectionOptions options)
    : socket_(std::move(socket)),
      strand_(asio::make_strand(socket_.get_executor())),
      exports_(exports),
      contexts_(contexts),
      options_(options),
      io_(socket_),
      pool_(),
      pipes_(options.max_in_flight),
      slot_event_(strand_),
      handshake_timer_(strand_) {
  if (options_.max_in_flight == 0) options_.max_in_flight = 1;
  summary_.peer = std::move(peer);
}

Connection::~Connection() = default;

void Connection::set_reason(std::string reason) {
  if (summary_.reason.empty()) summary_.reason = std::move(reason);
}

void Connection::abort_now(std::string reason) {
  if (phase_ == Phase::kClosed) return;
  set_reason(std::move(reason));
  stop_reading_ = true;
  slot_event_.notify();
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.cancel(ignored);
}

void Connection::drain_now(std::string reason) {
  if (phase_ != Phase::kTransmission) {
    abort_now(std::move(reason));
    return;
  }
  set_reason(std::move(reason));
  stop_reading_ = true;
  slot_event_.notify();
  // Wakes a reader blocked on the socket; replies can still be written.
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_receive, ignored);
}

void Connection::close(std::string reason) {
  asio::post(strand_, [self = shared_from_this(), reason = std::move(reason)]() mutable {
    self->abort_now(std::move(reason));
  });
}

void Connection::drain(std::string reason) {
  asio::post(strand_, [self = shared_from_this(), reason = std::move(reason)]() mutable {
    self->drain_now(std::move(reason));
  });
}

void Connection::drain_if_export(ExportPtr exp, std::string reason) {
  asio::post(strand_, [self = shared_from_this(), exp = std::move(exp),
                       reason = std::move(reason)]() mutable {
    if (self->exp_ && self->exp_ == exp) self->drain_now(std::move(reason));
  });
}

Task<void> Connection::run() {
  auto self = shared_from_this();  // keeps *this alive however the coroutine ends
  start_ = std::chrono::steady_clock::now();
  try {
    co_await serve();
  } catch (const std::exception& e) {
    set_reason(std::string("internal error: ") + e.what());
    spdlog::error("nbd: connection from {} failed: {}", summary_.peer, e.what());
  }
  phase_ = Phase::kClosed;
  serving_.store(nullptr, std::memory_order_release);
  handshake_timer_.cancel();
  std::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
  log_end();
}

Task<void> Connection::serve() {
  if (stop_reading_) co_return;  // closed before it started
  phase_ = Phase::kHandshake;
  handshake_timer_.expires_after(options_.handshake_timeout);
  handshake_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec && self->phase_ == Phase::kHandshake) self->abort_now("handshake timeout");
  });
  const config::ClientIdentity who = net::peer_identity(socket_.native_handle());
  local_peer_ = net::is_local_peer(who);
  Handshake handshake(io_, exports_, contexts_, options_.tls.get(), who);
  handshake.on_export_chosen(
      [this](const ExportPtr& e) { serving_.store(e.get(), std::memory_order_release); });
  HandshakeResult r = co_await handshake.run();
  if (phase_ == Phase::kHandshake && r.transmission && !stop_reading_) {
    phase_ = Phase::kTransmission;  // before any suspension: the timer cannot fire now
  }
  handshake_timer_.cancel();
  if (phase_ != Phase::kTransmission) {
    serving_.store(nullptr, std::memory_order_release);
    set_reason(r.reason.empty() ? "handshake ended" : r.reason);
    co_return;
  }
  exp_ = r.session.exp;
  serving_.store(exp_.get(), std::memory_order_release);
  summary_.export_name = exp_->name;
  // The export may have been removed between the lookup and now; removal callbacks
  // that ran before exp_ was set could not see this connection.
  if (exports_.find(exp_->name) != exp_) {
    set_reason("export removed");
    co_return;
  }
  co_await transmission(r.session);
}

Task<void> Connection::transmission(const NegotiatedSession& session) {
  slots_.reserve(options_.max_in_flight);
  for (unsigned i = 0; i < options_.max_in_flight; ++i) {
    slots_.push_back(std::make_unique<RequestSlot>());
    free_slots_.push_back(slots_.back().get());
  }
  // TLS sessions copy: their data must pass through the TLS stream.
  const bool splice = !io_.tls() && options_.zero_copy != config::ZeroCopy::kNever;
  pipe_writes_ = splice && session.exp->root->can_write_from_pipe();
  const bool always = options_.zero_copy == config::ZeroCopy::kAlways;
  zero_copy_ = ZeroCopyPath{splice ? &pipes_ : nullptr, always ? nullptr : options_.busy.get(),
                            local_peer_};
  RequestHandler handler(session, pool_, zero_copy_);
  ReplyWriter writer(
      io_, strand_, [this](RequestSlot* s) { release_slot(s); },
      [this](const std::error_code& ec) { abort_now("reply write failed: " + ec.message()); });
  bool writer_done = false;
  AsyncEvent writer_event(strand_);
  asio::co_spawn(strand_, writer.run(), [&](std::exception_ptr e) {
    if (e) {
      abort_now("reply writer failed");
      writer.drop_all();  // its slots must come back, or the drain below never ends
    }
    writer_done = true;
    writer_event.notify();
  });

  try {
    co_await read_loop(session, handler, writer);
  } catch (const std::exception& e) {
    abort_now(std::string("internal error: ") + e.what());
  }
  if (reader_slot_) {  // the reader failed while it owned a slot
    release_slot(reader_slot_);
    reader_slot_ = nullptr;
  }
  // Let every in-flight request finish and its reply go out (or be dropped).
  stop_reading_ = true;
  while (free_slots_.size() != slots_.size()) co_await slot_event_.wait();
  writer.stop();
  while (!writer_done) co_await writer_event.wait();
  summary_.bytes_read = handler.stats().bytes_read;
  summary_.bytes_written = handler.stats().bytes_written;
}

Task<void> Connection::read_loop(const NegotiatedSession& session, RequestHandler& handler,
                                 ReplyWriter& writer) {
  const ValidationContext vctx{session.exp->root->size(),  session.eflags,
                               session.structured,         session.limits.min,
                               session.limits.max_payload, !session.contexts.empty()};
  std::array<std::byte, kRequestHeaderSize> hdr;
  for (;;) {
    while (free_slots_.empty() && !stop_reading_) co_await slot_event_.wait();
    if (stop_reading_) co_return;
    if (!io_.try_read_buffered(hdr)) {
      std::error_code ec = co_await io_.read_exact(hdr);
      if (ec) {
        set_reason(ec == asio::error::eof ? "client closed the connection"
                                          : "read failed: " + ec.message());
        co_return;
      }
    }
    const RequestHeader h = decode_request_header(hdr.data());
    if (const char* violation = request_violation(h, vctx)) {
      set_reason(std::string("protocol violation: ") + violation);
      co_return;
    }
    ++summary_.requests;
    if (h.type == kCmdDisc) {
      set_reason("client disconnected (NBD_CMD_DISC)");
      co_return;
    }
    RequestSlot* slot = reader_slot_ = take_slot();
    slot->req = h;
    if (h.type == kCmdWrite && h.length > 0) {
      std::error_code ec = co_await read_write_payload(*slot, vctx);
      if (ec) {
        set_reason("client closed the connection in the middle of a request");
        co_return;  // transmission() releases reader_slot_
      }
    }
    const ValidationResult v = validate_request(h, vctx);
    if (!v.ok()) {
      spdlog::debug("nbd: {}: invalid {} request: {}", summary_.peer, command_name(h.type),
                    v.message);
      handler.reply_error(*slot, v.error, v.message);
      reader_slot_ = nullptr;
      writer.enqueue(slot);
      continue;
    }
    reader_slot_ = nullptr;
    if (handler.handle_now(*slot)) {  // done on the spot: no coroutine to spawn
      writer.enqueue(slot);
      continue;
    }
    // If the handler throws, its slot was never queued: give it back here.
    asio::co_spawn(strand_, handle_one(shared_from_this(), slot, handler, writer),
                   [this, slot](std::exception_ptr e) {
                     if (!e) return;
                     abort_now("internal error in a request handler");
                     release_slot(slot);
                   });
  }
}

Task<void> Connection::handle_one(std::shared_ptr<Connection> self, RequestSlot* slot,
                                  RequestHandler& handler, ReplyWriter& writer) {
  co_await handler.handle(*slot);  // never throws
  writer.enqueue(slot);
  (void)self;
}

Task<std::error_code> Connection::read_write_payload(RequestSlot& slot,
                                                     const ValidationContext& vctx) {
  const uint32_t len = slot.req.length;
  if (pipe_writes_ && len >= kPipeWriteThreshold && len <= PipePool::kCapacity &&
      zero_copy_.use_pipe() && validate_request(slot.req, vctx).ok()) {
    slot.pipe = pipes_.acquire();
    if (slot.pipe) {
      bool full = false;
      std::error_code ec = co_await io_.read_into_pipe(slot.pipe, len, &full);
      if (ec || !full) co_return ec;
      // Out of pipe slots (small segments): the payload continues in memory.
      slot.data = pool_.acquire(len);
      const size_t have = slot.pipe.read_into(slot.data.span(len));
      pipes_.release(std::move(slot.pipe));
      co_return co_await io_.read_exact(slot.data.span(len).subspan(have));
    }
  }
  slot.data = pool_.acquire(len);
  if (io_.try_read_buffered(slot.data.span(len))) co_return std::error_code{};
  co_return co_await io_.read_exact(slot.data.span(len));
}

RequestSlot* Connection::take_slot() {
  if (free_slots_.size() == slots_.size() && options_.busy) options_.busy->became_busy();
  RequestSlot* slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void Connection::release_slot(RequestSlot* slot) {
  assert(std::find(free_slots_.begin(), free_slots_.end(), slot) == free_slots_.end() &&
         "request slot released twice");
  slot->data.reset();
  pipes_.release(std::move(slot->pipe));
  slot->clear_reply();
  if (slot->meta.capacity() > kMaxRetainedMeta) std::vector<std::byte>().swap(slot->meta);
  free_slots_.push_back(slot);
  if (free_slots_.size() == slots_.size()) {  // idle: nothing in flight
    if (options_.busy) options_.busy->became_idle();
    pipes_.trim(kIdlePipes);
  }
  slot_event_.notify();
}

void Connection::log_end() {
  summary_.duration = std::chrono::steady_clock::now() - start_;
  summary_.socket_in = io_.bytes_in();
  summary_.socket_out = io_.bytes_out();
  if (summary_.reason.empty()) summary_.reason = "closed";
  const double secs = std::chrono::duration<double>(summary_.duration).count();
  spdlog::info(
      "nbd: connection from {} closed: export '{}', {:.3f}s, {} requests, {} bytes read, "
      "{} bytes written (socket {} in, {} out); {}",
      summary_.peer, summary_.export_name, secs, summary_.requests, summary_.bytes_read,
      summary_.bytes_written, summary_.socket_in, summary_.socket_out, summary_.reason);
}

}  // namespace server::nbd
