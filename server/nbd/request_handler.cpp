#include "server/nbd/request_handler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "server/nbd/errno_map.h"
#include "server/nbd/protocol.h"

namespace server::nbd {

using blockcore::IoFlags;
using blockcore::Status;
using blockcore::Task;

namespace {

// True if n bytes at p are all zero (memcmp against itself shifted by one is SIMD-fast).
bool all_zero(const std::byte* p, size_t n) {
  return n == 0 || (p[0] == std::byte{0} && std::memcmp(p, p + 1, n - 1) == 0);
}

}  // namespace

RequestHandler::RequestHandler(const NegotiatedSession& session, BufferPool& pool,
                               ZeroCopyPath zero_copy)
    : session_(session), pool_(pool), zero_copy_(zero_copy), root_(*session.exp->root) {
  session.exp->counters->connection();
}

size_t RequestHandler::append_chunk_header(RequestSlot& slot, uint16_t flags, uint16_t type,
                                           uint32_t length) {
  const size_t at = slot.meta.size();
  encode_chunk_header(slot.append_meta(kChunkHeaderSize), flags, type, slot.req.cookie, length);
  return at;
}

void RequestHandler::reply_ok(RequestSlot& slot) {
  slot.clear_reply();
  slot.data.reset();
  encode_simple_reply(slot.append_meta(kSimpleReplySize), 0, slot.req.cookie);
}

void RequestHandler::reply_error(RequestSlot& slot, uint32_t nbd_error, std::string_view message) {
  session_.exp->counters->error(slot.req.type);
  slot.clear_reply();
  slot.data.reset();
  if (!session_.structured) {
    encode_simple_reply(slot.append_meta(kSimpleReplySize), nbd_error, slot.req.cookie);
    return;
  }
  message = message.substr(0, kMaxStringLength);
  const auto msg_len = static_cast<uint16_t>(message.size());
  append_chunk_header(slot, kReplyFlagDone, kReplyTypeError, 6u + msg_len);
  std::byte* p = slot.append_meta(6u + msg_len);
  store_be32(p, nbd_error);
  store_be16(p + 4, msg_len);
  if (msg_len) std::memcpy(p + 6, message.data(), msg_len);
}

void RequestHandler::reply_status(RequestSlot& slot, const Status& s) {
  if (s.is_ok()) {
    reply_ok(slot);
    return;
  }
  const uint32_t err = nbd_error_from_status(s, slot.req.flags);
  spdlog::debug("nbd: {} at {} (+{}) failed: {}", command_name(slot.req.type), slot.req.offset,
                slot.req.length, s.to_string());
  // The client learns the error class, not server-side details such as file names.
  reply_error(slot, err,
              std::string(command_name(slot.req.type)) + " failed: " + nbd_error_name(err));
}

IoFlags RequestHandler::fua_flag(const RequestSlot& slot) const {
  return (slot.req.flags & kCmdFlagFua) && root_.info().can_fua ? IoFlags::kFua : IoFlags::kNone;
}

Task<Status> RequestHandler::finish_fua(const RequestSlot& slot, Status s) {
  if (s.is_ok() && (slot.req.flags & kCmdFlagFua) && !root_.info().can_fua) {
    co_return co_await root_.flush();
  }
  co_return s;
}

Task<Status> RequestHandler::read_range(uint64_t off, std::span<std::byte> buf) {
  const size_t max = std::max<uint32_t>(root_.info().max_transfer, 1);
  while (!buf.empty()) {
    const size_t n = std::min(buf.size(), max);
    Status s = co_await root_.read(off, buf.first(n));
    if (!s.is_ok()) co_return s;
    off += n;
    buf = buf.subspan(n);
  }
  co_return Status::ok();
}

Task<Status> RequestHandler::write_range(uint64_t off, std::span<const std::byte> buf,
                                         IoFlags flags) {
  const size_t max = std::max<uint32_t>(root_.info().max_transfer, 1);
  while (!buf.empty()) {
    const size_t n = std::min(buf.size(), max);
    Status s = co_await root_.write(off, buf.first(n), flags);
    if (!s.is_ok()) co_return s;
    off += n;
    buf = buf.subspan(n);
  }
  co_return Status::ok();
}

Task<void> RequestHandler::handle(RequestSlot& slot) {
  session_.exp->counters->request(slot.req.type);
  int failure = 0;
  try {
    co_await dispatch(slot);
  } catch (const std::bad_alloc&) {
    failure = ENOMEM;
  } catch (const std::exception& e) {
    spdlog::error("nbd: {} request raised: {}", command_name(slot.req.type), e.what());
    failure = EIO;
  }
  if (failure) reply_failure(slot, failure);
}

void RequestHandler::reply_failure(RequestSlot& slot, int err) {
  reply_error(slot, nbd_error_from_errno(err, 0),
              err == ENOMEM ? "out of memory" : "internal error");
}

bool RequestHandler::handle_now(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  // Requests the node splits by max_transfer are left to handle().
  if (r.length == 0 || r.length > root_.info().max_transfer) return false;
  if (r.type != kCmdRead && r.type != kCmdWrite) return false;
  std::optional<Status> s;
  try {
    s = r.type == kCmdRead ? read_now(slot) : write_now(slot);
  } catch (const std::exception&) {
    return false;  // handle() tries again and reports what it meets
  }
  if (!s) return false;
  session_.exp->counters->request(r.type);
  try {
    if (r.type == kCmdRead) {
      reply_read(slot, *s);
    } else {
      reply_write(slot, *s, false);
    }
  } catch (const std::bad_alloc&) {
    reply_failure(slot, ENOMEM);
  } catch (const std::exception& e) {
    spdlog::error("nbd: {} request raised: {}", command_name(r.type), e.what());
    reply_failure(slot, EIO);
  }
  return true;
}

std::optional<Status> RequestHandler::read_now(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  if (r.length >= kPipeReadThreshold && zero_copy_.use_pipe()) return std::nullopt;
  slot.clear_reply();
  slot.data = pool_.acquire(r.length);  // kept for handle_read() if this returns nullopt
  return root_.read_now(r.offset, slot.data.span(r.length));
}

std::optional<Status> RequestHandler::write_now(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  // A spliced payload, and FUA that needs a flush after the write, are left to handle().
  if (slot.pipe.held() > 0 || ((r.flags & kCmdFlagFua) && !root_.info().can_fua)) {
    return std::nullopt;
  }
  return root_.write_now(r.offset, slot.data.span(r.length), fua_flag(slot));
}

Task<void> RequestHandler::dispatch(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  switch (r.type) {
    case kCmdRead:
      co_await handle_read(slot);
      co_return;
    case kCmdWrite: {
      Status s = Status::ok();
      const bool piped = slot.pipe.held() > 0;
      if (piped) {
        s = co_await root_.write_from_pipe(r.offset, r.length, slot.pipe, fua_flag(slot));
        if (zero_copy_.pipes) zero_copy_.pipes->release(std::move(slot.pipe));
      } else {
        s = co_await write_range(r.offset, slot.data.span(r.length), fua_flag(slot));
      }
      s = co_await finish_fua(slot, std::move(s));
      reply_write(slot, s, piped);
      co_return;
    }
    case kCmdFlush:
      reply_status(slot, co_await root_.flush());
      co_return;
    case kCmdTrim: {
      Status s = co_await root_.discard(r.offset, r.length, fua_flag(slot));
      reply_status(slot, co_await finish_fua(slot, std::move(s)));
      co_return;
    }
    case kCmdWriteZeroes: {
      IoFlags f = fua_flag(slot);
      if (!(r.flags & kCmdFlagNoHole)) f = f | IoFlags::kMayTrim;
      if (r.flags & kCmdFlagFastZero) f = f | IoFlags::kFastZero;
      Status s = co_await root_.write_zeroes(r.offset, r.length, f);
      reply_status(slot, co_await finish_fua(slot, std::move(s)));
      co_return;
    }
    case kCmdCache:
      reply_status(slot, co_await root_.cache(r.offset, r.length));
      co_return;
    case kCmdBlockStatus:
      co_await handle_block_status(slot);
      co_return;
  }
  reply_error(slot, kNbdEinval, "unknown command");
}

void RequestHandler::reply_write(RequestSlot& slot, const Status& s, bool spliced) {
  slot.data.reset();  // back to the pool before the reply is even queued
  if (s.is_ok()) {
    stats_.bytes_written += slot.req.length;
    session_.exp->counters->written(slot.req.length);
    if (spliced) session_.exp->counters->written_zero_copy(slot.req.length);
  }
  reply_status(slot, s);
}

Task<void> RequestHandler::handle_read(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  slot.clear_reply();
  if (r.length == 0) {
    if (session_.structured) {
      append_chunk_header(slot, kReplyFlagDone, kReplyTypeNone, 0);
    } else {
      encode_simple_reply(slot.append_meta(kSimpleReplySize), 0, r.cookie);
    }
    co_return;
  }
  if (r.length >= kPipeReadThreshold && zero_copy_.use_pipe()) {
    const bool sent = co_await read_through_pipe(slot);
    if (sent) co_return;
  }
  // handle_now() may have left a buffer of the right size here.
  if (slot.data.capacity() < r.length) slot.data = pool_.acquire(r.length);
  Status s = co_await read_range(r.offset, slot.data.span(r.length));
  reply_read(slot, s);
}

void RequestHandler::reply_read(RequestSlot& slot, const Status& s) {
  const RequestHeader& r = slot.req;
  if (!s.is_ok()) {
    reply_status(slot, s);
    return;
  }
  stats_.bytes_read += r.length;
  session_.exp->counters->read(r.length);
  if (session_.structured) {
    build_read_chunks(slot);
  } else {
    encode_simple_reply(slot.append_meta(kSimpleReplySize), 0, r.cookie);
    slot.append_data(0, r.length);
  }
}

Task<bool> RequestHandler::read_through_pipe(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  blockcore::io::PipeBuffer pipe = zero_copy_.pipes->acquire();
  if (!pipe) co_return false;
  Status s = co_await root_.read_to_pipe(r.offset, r.length, pipe);
  if (s.code() == ENOTSUP && pipe.held() == 0) {
    zero_copy_.pipes->release(std::move(pipe));
    co_return false;
  }
  if (!s.is_ok()) {
    zero_copy_.pipes->release(std::move(pipe));  // closed: it may hold part of the range
    reply_status(slot, s);
    co_return true;
  }
  stats_.bytes_read += r.length;
  session_.exp->counters->read(r.length);
  session_.exp->counters->read_zero_copy(r.length);
  slot.pipe = std::move(pipe);
  if (session_.structured) {
    append_chunk_header(slot, kReplyFlagDone, kReplyTypeOffsetData, 8 + r.length);
    store_be64(slot.append_meta(8), r.offset);
  } else {
    encode_simple_reply(slot.append_meta(kSimpleReplySize), 0, r.cookie);
  }
  slot.append_pipe(r.length);
  co_return true;
}

std::vector<ReadRun> find_zero_runs(std::span<const std::byte> data, uint64_t offset) {
  std::vector<ReadRun> runs;
  auto add = [&](uint64_t at, uint64_t length, bool hole) {
    if (length == 0) return;
    if (!runs.empty() && runs.back().hole == hole) {
      runs.back().length += length;
    } else {
      runs.push_back(ReadRun{at, length, hole});
    }
  };
  const uint64_t len = data.size();
  // Blocks are aligned to absolute offsets; a partial first or last block is data.
  uint64_t pos = std::min<uint64_t>(len, (kZeroBlock - offset % kZeroBlock) % kZeroBlock);
  add(0, pos, false);
  for (; pos + kZeroBlock <= len; pos += kZeroBlock) {
    add(pos, kZeroBlock, all_zero(data.data() + pos, kZeroBlock));
  }
  add(pos, len - pos, false);
  return runs;
}

// Builds a structured read reply from the data in slot.data: zero blocks go out as
// OFFSET_HOLE chunks, the rest as OFFSET_DATA. Falls back to one data chunk when there
// are no holes or too many chunks.
void RequestHandler::build_read_chunks(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  std::vector<ReadRun> runs;
  if (!(r.flags & kCmdFlagDf) && r.length >= kSparseReadThreshold) {
    runs = find_zero_runs(slot.data.span(r.length), r.offset);
  }
  const bool any_hole = std::any_of(runs.begin(), runs.end(), [](auto& x) { return x.hole; });
  if (!any_hole || runs.size() > kMaxReadChunks) runs.assign(1, ReadRun{0, r.length, false});
  size_t last_header = 0;
  for (const ReadRun& run : runs) {
    if (run.hole) {
      last_header = append_chunk_header(slot, 0, kReplyTypeOffsetHole, 12);
      std::byte* p = slot.append_meta(12);
      store_be64(p, r.offset + run.offset);
      store_be32(p + 8, static_cast<uint32_t>(run.length));
    } else {
      last_header =
          append_chunk_header(slot, 0, kReplyTypeOffsetData, static_cast<uint32_t>(8 + run.length));
      store_be64(slot.append_meta(8), r.offset + run.offset);
      slot.append_data(run.offset, run.length);
    }
  }
  store_be16(slot.meta.data() + last_header + 4, kReplyFlagDone);
}

Task<void> RequestHandler::handle_block_status(RequestSlot& slot) {
  const RequestHeader& r = slot.req;
  const bool req_one = (r.flags & kCmdFlagReqOne) != 0;
  const size_t max_extents = req_one ? 1 : kMaxExtentsPerChunk;
  slot.clear_reply();
  for (size_t i = 0; i < session_.contexts.size(); ++i) {
    const SelectedContext& sc = session_.contexts[i];
    auto res = co_await sc.context->extents(r.offset, r.length, max_extents);
    if (!res.is_ok()) {
      reply_status(slot, res.status());
      co_return;
    }
    // Enforce the chunk rules whatever the provider did: 1..max extents, non-zero
    // lengths, never past the request.
    std::vector<MetaExtent>& ext = *res;
    uint64_t total = 0;
    size_t n = 0;
    for (; n < ext.size() && n < max_extents && total < r.length; ++n) {
      if (ext[n].length == 0) break;
      ext[n].length = std::min<uint64_t>(ext[n].length, r.length - total);
      total += ext[n].length;
    }
    if (n == 0) {
      reply_status(slot, Status::io_error(sc.context->name() + ": no extents"));
      co_return;
    }
    const uint16_t flags = i + 1 == session_.contexts.size() ? kReplyFlagDone : 0;
    append_chunk_header(slot, flags, kReplyTypeBlockStatus, static_cast<uint32_t>(4 + 8 * n));
    std::byte* p = slot.append_meta(4 + 8 * n);
    store_be32(p, sc.id);
    for (size_t k = 0; k < n; ++k) {
      store_be32(p + 4 + 8 * k, static_cast<uint32_t>(ext[k].length));
      store_be32(p + 8 + 8 * k, ext[k].flags);
    }
  }
}

}  // namespace server::nbd
