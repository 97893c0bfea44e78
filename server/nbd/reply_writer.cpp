#include "server/nbd/reply_writer.h"

#include <utility>

namespace server::nbd {

std::byte* RequestSlot::append_meta(size_t n) {
  const size_t at = meta.size();
  meta.resize(at + n);
  if (!pieces.empty() && pieces.back().source == Source::kMeta &&
      pieces.back().offset + pieces.back().length == at) {
    pieces.back().length += n;  // contiguous with the previous meta piece
  } else {
    pieces.push_back(Piece{Source::kMeta, at, n});
  }
  return meta.data() + at;
}

void RequestSlot::append_data(size_t offset, size_t length) {
  if (length) pieces.push_back(Piece{Source::kData, offset, length});
}

void RequestSlot::append_pipe(size_t length) {
  if (length) pieces.push_back(Piece{Source::kPipe, 0, length});
}

size_t RequestSlot::reply_size() const {
  size_t n = 0;
  for (const Piece& p : pieces) n += p.length;
  return n;
}

ReplyWriter::ReplyWriter(SocketIo& io, const asio::any_io_executor& strand, SlotFn done,
                         std::function<void(const std::error_code&)> failed)
    : io_(io), done_(std::move(done)), on_failed_(std::move(failed)), wake_(strand) {
  batch_.reserve(kMaxBatchSlots);
}

void ReplyWriter::enqueue(RequestSlot* slot) {
  if (dropped_) {
    done_(slot);
    return;
  }
  queue_.push_back(slot);
  wake_.notify();
}

void ReplyWriter::drop_all() {
  dropped_ = true;
  failed_ = true;
  std::vector<RequestSlot*> all(batch_.begin(), batch_.end());
  all.insert(all.end(), queue_.begin(), queue_.end());
  batch_.clear();
  queue_.clear();
  for (RequestSlot* s : all) done_(s);
}

void ReplyWriter::stop() {
  stopping_ = true;
  wake_.notify();
}

blockcore::Task<void> ReplyWriter::run() {
  for (;;) {
    if (queue_.empty()) {
      if (stopping_) break;
      co_await wake_.wait();
      continue;
    }
    batch_.clear();
    size_t bytes = 0;
    while (!queue_.empty() && batch_.size() < kMaxBatchSlots &&
           (batch_.empty() || bytes < kMaxBatchBytes)) {
      RequestSlot* s = queue_.front();
      queue_.pop_front();
      batch_.push_back(s);
      bytes += s->reply_size();
    }
    if (!failed_) {
      std::error_code ec = co_await write_batch();
      if (ec) {
        failed_ = true;
        on_failed_(ec);
      }
    }
    for (RequestSlot* s : batch_) done_(s);
    batch_.clear();
  }
}

blockcore::Task<std::error_code> ReplyWriter::write_batch() {
  iov_.clear();
  for (RequestSlot* s : batch_) {
    for (const RequestSlot::Piece& p : s->pieces) {
      if (p.source == RequestSlot::Source::kPipe) {
        if (!iov_.empty()) {
          std::error_code ec = co_await io_.write_all(iov_);
          if (ec) co_return ec;
          iov_.clear();
        }
        std::error_code ec = co_await io_.write_from_pipe(s->pipe, p.length);
        if (ec) co_return ec;
        continue;
      }
      const std::byte* base =
          p.source == RequestSlot::Source::kData ? s->data.data() : s->meta.data();
      iov_.emplace_back(base + p.offset, p.length);
    }
  }
  if (iov_.empty()) co_return std::error_code{};
  co_return co_await io_.write_all(iov_);
}

}  // namespace server::nbd
