#include "server/nbd/wire.h"

#include <cstring>

namespace server::nbd {

std::byte* WireWriter::grow(size_t n) {
  const size_t old = out_->size();
  out_->resize(old + n);
  return out_->data() + old;
}

WireWriter& WireWriter::u8(uint8_t v) {
  *grow(1) = std::byte(v);
  return *this;
}

WireWriter& WireWriter::u16(uint16_t v) {
  store_be16(grow(2), v);
  return *this;
}

WireWriter& WireWriter::u32(uint32_t v) {
  store_be32(grow(4), v);
  return *this;
}

WireWriter& WireWriter::u64(uint64_t v) {
  store_be64(grow(8), v);
  return *this;
}

WireWriter& WireWriter::bytes(std::span<const std::byte> b) {
  if (!b.empty()) std::memcpy(grow(b.size()), b.data(), b.size());
  return *this;
}

WireWriter& WireWriter::str(std::string_view s) {
  if (!s.empty()) std::memcpy(grow(s.size()), s.data(), s.size());
  return *this;
}

WireWriter& WireWriter::zeroes(size_t n) {
  if (n) std::memset(grow(n), 0, n);
  return *this;
}

void WireWriter::patch_u32(size_t pos, uint32_t v) { store_be32(out_->data() + pos, v); }

bool WireReader::take(size_t n) {
  if (failed_ || in_.size() - pos_ < n) {
    failed_ = true;
    return false;
  }
  return true;
}

uint16_t WireReader::u16() {
  if (!take(2)) return 0;
  uint16_t v = load_be16(in_.data() + pos_);
  pos_ += 2;
  return v;
}

uint32_t WireReader::u32() {
  if (!take(4)) return 0;
  uint32_t v = load_be32(in_.data() + pos_);
  pos_ += 4;
  return v;
}

uint64_t WireReader::u64() {
  if (!take(8)) return 0;
  uint64_t v = load_be64(in_.data() + pos_);
  pos_ += 8;
  return v;
}

std::string WireReader::str(size_t n) {
  if (!take(n)) return {};
  std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
  pos_ += n;
  return s;
}

std::span<const std::byte> WireReader::bytes(size_t n) {
  if (!take(n)) return {};
  auto s = in_.subspan(pos_, n);
  pos_ += n;
  return s;
}

RequestHeader decode_request_header(const std::byte* p) {
  RequestHeader h;
  h.magic = load_be32(p);
  h.flags = load_be16(p + 4);
  h.type = load_be16(p + 6);
  h.cookie = load_be64(p + 8);
  h.offset = load_be64(p + 16);
  h.length = load_be32(p + 24);
  return h;
}

void encode_request_header(std::byte* p, const RequestHeader& h) {
  store_be32(p, h.magic);
  store_be16(p + 4, h.flags);
  store_be16(p + 6, h.type);
  store_be64(p + 8, h.cookie);
  store_be64(p + 16, h.offset);
  store_be32(p + 24, h.length);
}

void encode_simple_reply(std::byte* p, uint32_t error, uint64_t cookie) {
  store_be32(p, kSimpleReplyMagic);
  store_be32(p + 4, error);
  store_be64(p + 8, cookie);
}

void encode_chunk_header(std::byte* p, uint16_t flags, uint16_t type, uint64_t cookie,
                         uint32_t length) {
  store_be32(p, kStructuredReplyMagic);
  store_be16(p + 4, flags);
  store_be16(p + 6, type);
  store_be64(p + 8, cookie);
  store_be32(p + 16, length);
}

void append_option_reply(WireWriter& w, uint32_t option, uint32_t type,
                         std::span<const std::byte> payload) {
  w.u64(kOptReplyMagic).u32(option).u32(type).u32(static_cast<uint32_t>(payload.size()));
  w.bytes(payload);
}

const char* command_name(uint16_t type) {
  switch (type) {
    case kCmdRead:
      return "READ";
    case kCmdWrite:
      return "WRITE";
    case kCmdDisc:
      return "DISC";
    case kCmdFlush:
      return "FLUSH";
    case kCmdTrim:
      return "TRIM";
    case kCmdCache:
      return "CACHE";
    case kCmdWriteZeroes:
      return "WRITE_ZEROES";
    case kCmdBlockStatus:
      return "BLOCK_STATUS";
    case kCmdResize:
      return "RESIZE";
  }
  return "unknown";
}

const char* option_name(uint32_t option) {
  switch (option) {
    case kOptExportName:
      return "NBD_OPT_EXPORT_NAME";
    case kOptAbort:
      return "NBD_OPT_ABORT";
    case kOptList:
      return "NBD_OPT_LIST";
    case kOptPeekExport:
      return "NBD_OPT_PEEK_EXPORT";
    case kOptStartTls:
      return "NBD_OPT_STARTTLS";
    case kOptInfo:
      return "NBD_OPT_INFO";
    case kOptGo:
      return "NBD_OPT_GO";
    case kOptStructuredReply:
      return "NBD_OPT_STRUCTURED_REPLY";
    case kOptListMetaContext:
      return "NBD_OPT_LIST_META_CONTEXT";
    case kOptSetMetaContext:
      return "NBD_OPT_SET_META_CONTEXT";
    case kOptExtendedHeaders:
      return "NBD_OPT_EXTENDED_HEADERS";
  }
  return "unknown";
}

}  // namespace server::nbd
