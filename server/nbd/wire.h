// Big-endian encoding and decoding for the NBD wire format: load/store helpers, a
// growable WireWriter, a bounds-checked WireReader, and the fixed request/reply headers.
// Pure code: no I/O, no allocation except the writer's own buffer.
// Threading: plain values; a writer or reader must not be shared between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/nbd/protocol.h"

namespace server::nbd {

inline uint16_t load_be16(const std::byte* p) {
  return static_cast<uint16_t>((std::to_integer<uint16_t>(p[0]) << 8) |
                               std::to_integer<uint16_t>(p[1]));
}
inline uint32_t load_be32(const std::byte* p) {
  return (uint32_t{load_be16(p)} << 16) | load_be16(p + 2);
}
inline uint64_t load_be64(const std::byte* p) {
  return (uint64_t{load_be32(p)} << 32) | load_be32(p + 4);
}
inline void store_be16(std::byte* p, uint16_t v) {
  p[0] = std::byte(v >> 8);
  p[1] = std::byte(v & 0xff);
}
inline void store_be32(std::byte* p, uint32_t v) {
  store_be16(p, static_cast<uint16_t>(v >> 16));
  store_be16(p + 2, static_cast<uint16_t>(v));
}
inline void store_be64(std::byte* p, uint64_t v) {
  store_be32(p, static_cast<uint32_t>(v >> 32));
  store_be32(p + 4, static_cast<uint32_t>(v));
}

// Appends big-endian fields to a byte vector (owned, or borrowed with clear-free reuse).
class WireWriter {
 public:
  WireWriter() : out_(&own_) {}
  // Appends to `out` (which keeps its existing contents and capacity).
  explicit WireWriter(std::vector<std::byte>& out) : out_(&out) {}
  WireWriter(const WireWriter&) = delete;
  WireWriter& operator=(const WireWriter&) = delete;

  WireWriter& u8(uint8_t v);
  WireWriter& u16(uint16_t v);
  WireWriter& u32(uint32_t v);
  WireWriter& u64(uint64_t v);
  WireWriter& bytes(std::span<const std::byte> b);
  WireWriter& str(std::string_view s);  // raw bytes, no length prefix
  WireWriter& zeroes(size_t n);

  size_t size() const { return out_->size(); }
  std::span<const std::byte> view() const { return *out_; }
  std::vector<std::byte>& buffer() { return *out_; }
  // Overwrites a u32 at an earlier position (for lengths known only later).
  void patch_u32(size_t pos, uint32_t v);

 private:
  std::byte* grow(size_t n);

  std::vector<std::byte> own_;
  std::vector<std::byte>* out_;
};

// Reads big-endian fields from a span. Any read past the end sets failed() and
// returns zeroes/empty; callers check failed() (or done()) once at the end.
class WireReader {
 public:
  explicit WireReader(std::span<const std::byte> in) : in_(in) {}

  uint16_t u16();
  uint32_t u32();
  uint64_t u64();
  // n bytes as a string (no validation of content).
  std::string str(size_t n);
  std::span<const std::byte> bytes(size_t n);

  size_t remaining() const { return failed_ ? 0 : in_.size() - pos_; }
  bool failed() const { return failed_; }
  // True when everything was consumed without over-reading.
  bool done() const { return !failed_ && pos_ == in_.size(); }

 private:
  bool take(size_t n);

  std::span<const std::byte> in_;
  size_t pos_ = 0;
  bool failed_ = false;
};

// A decoded compact (28-byte) request header.
struct RequestHeader {
  uint32_t magic = 0;
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// REQUIRES: p points at kRequestHeaderSize bytes.
RequestHeader decode_request_header(const std::byte* p);
// Encodes a request (used by tests and the fuzzer's seed generator).
void encode_request_header(std::byte* p, const RequestHeader& h);

// REQUIRES: p has room for kSimpleReplySize bytes.
void encode_simple_reply(std::byte* p, uint32_t error, uint64_t cookie);
// REQUIRES: p has room for kChunkHeaderSize bytes.
void encode_chunk_header(std::byte* p, uint16_t flags, uint16_t type, uint64_t cookie,
                         uint32_t length);
// Appends an option reply header plus payload to w.
void append_option_reply(WireWriter& w, uint32_t option, uint32_t type,
                         std::span<const std::byte> payload);
inline void append_option_reply(WireWriter& w, uint32_t option, uint32_t type,
                                std::string_view payload) {
  append_option_reply(w, option, type,
                      std::as_bytes(std::span<const char>(payload.data(), payload.size())));
}

}  // namespace server::nbd
