// A deliberately simple, blocking NBD client for unit tests: raw bytes over a socket
// file descriptor with a receive timeout, so tests can send exactly what they want
// (including garbage) and assert exactly what a client would see. After STARTTLS a
// test sets a Transport (its TLS session) and the same calls go through it.
// Threading: one test thread.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/nbd/protocol.h"
#include "server/nbd/wire.h"

namespace nbd_test {

using namespace server::nbd;

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

inline std::string to_string(const std::vector<std::byte>& v, size_t from = 0) {
  return std::string(reinterpret_cast<const char*>(v.data()) + from, v.size() - from);
}

struct OptionReply {
  uint32_t option = 0;
  uint32_t type = 0;
  std::vector<std::byte> data;
};

// One reply message: a simple reply (with its data, if any) or one structured chunk.
struct Reply {
  bool structured = false;
  uint32_t error = 0;  // simple replies
  uint64_t cookie = 0;
  uint16_t flags = 0;  // chunks
  uint16_t type = 0;   // chunks
  std::vector<std::byte> payload;
  bool done() const { return !structured || (flags & kReplyFlagDone); }
  uint32_t chunk_error() const { return load_be32(payload.data()); }
  std::string chunk_message() const {
    const uint16_t n = load_be16(payload.data() + 4);
    return std::string(reinterpret_cast<const char*>(payload.data()) + 6, n);
  }
};

struct GoResult {
  uint64_t size = 0;
  uint16_t eflags = 0;
  uint32_t min_block = 0, preferred = 0, max_payload = 0;
  std::vector<std::pair<uint32_t, std::string>> contexts;  // from SET_META_CONTEXT
};

// A byte stream layered over the client's socket, such as a TLS session.
class Transport {
 public:
  virtual ~Transport() = default;
  // Like send(2) and recv(2): bytes moved, 0 at the end of the stream, -1 on an error.
  virtual ssize_t send_some(const std::byte* p, size_t n) = 0;
  virtual ssize_t recv_some(std::byte* p, size_t n) = 0;
};

class TestClient {
 public:
  explicit TestClient(int fd, int timeout_ms = 5000) : fd_(fd) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  ~TestClient() { close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  // Reads and writes go through `t` from now on (nullptr: the socket again).
  // REQUIRES: t outlives its use here.
  void set_transport(Transport* t) { transport_ = t; }

  // Returns false if the peer is gone (EPIPE) — tests sending garbage may see that.
  bool send(std::span<const std::byte> b) {
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = transport_ ? transport_->send_some(b.data() + done, b.size() - done)
                             : ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  bool send(const WireWriter& w) { return send(w.view()); }

  // Reads exactly n bytes; throws on EOF or timeout (a test failure).
  std::vector<std::byte> recv(size_t n) {
    std::vector<std::byte> out(n);
    size_t done = 0;
    while (done < n) {
      ssize_t r = transport_ ? transport_->recv_some(out.data() + done, n - done)
                             : ::recv(fd_, out.data() + done, n - done, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) throw std::runtime_error("server closed the connection");
      if (r < 0) throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
      done += static_cast<size_t>(r);
    }
    return out;
  }

  // True if the server closes the connection (after discarding anything still sent).
  bool wait_closed() {
    std::byte buf[4096];
    for (;;) {
      ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
      if (r == 0) return true;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno == ECONNRESET;  // timeout (EAGAIN) = still open
    }
  }

  // ---- Handshake ----
  uint16_t read_greeting() {
    auto g = recv(18);
    EXPECT_EQ(load_be64(g.data()), kNbdMagic);
    EXPECT_EQ(load_be64(g.data() + 8), kIHaveOpt);
    return load_be16(g.data() + 16);
  }
  void send_client_flags(uint32_t flags) {
    WireWriter w;
    w.u32(flags);
    send(w);
  }
  void start(uint32_t client_flags = kClientFlagFixedNewstyle | kClientFlagNoZeroes) {
    read_greeting();
    send_client_flags(client_flags);
  }
  void send_option(uint32_t option, std::span<const std::byte> data = {}) {
    WireWriter w;
    w.u64(kIHaveOpt).u32(option).u32(static_cast<uint32_t>(data.size())).bytes(data);
    send(w);
  }
  OptionReply read_option_reply() {
    auto h = recv(kOptionReplyHeaderSize);
    EXPECT_EQ(load_be64(h.data()), kOptReplyMagic);
    OptionReply r;
    r.option = load_be32(h.data() + 8);
    r.type = load_be32(h.data() + 12);
    r.data = recv(load_be32(h.data() + 16));
    return r;
  }
  // Replies up to and including the final one (ACK or an error).
  std::vector<OptionReply> read_option_replies() {
    std::vector<OptionReply> out;
    for (;;) {
      out.push_back(read_option_reply());
      const uint32_t t = out.back().type;
      if (t == kRepAck || (t & kRepFlagError)) return out;
    }
  }
  static std::vector<std::byte> info_data(const std::string& name, std::vector<uint16_t> infos) {
    WireWriter w;
    w.u32(static_cast<uint32_t>(name.size())).str(name).u16(static_cast<uint16_t>(infos.size()));
    for (uint16_t i : infos) w.u16(i);
    return w.buffer();
  }
  static std::vector<std::byte> meta_data(const std::string& name,
                                          const std::vector<std::string>& queries) {
    WireWriter w;
    w.u32(static_cast<uint32_t>(name.size())).str(name).u32(static_cast<uint32_t>(queries.size()));
    for (const auto& q : queries) w.u32(static_cast<uint32_t>(q.size())).str(q);
    return w.buffer();
  }

  // Greeting through GO. Fails the test if the server does not accept.
  GoResult negotiate(const std::string& name, bool structured,
                     const std::vector<std::string>& contexts = {}) {
    GoResult g;
    start();
    if (structured) {
      send_option(kOptStructuredReply);
      EXPECT_EQ(read_option_reply().type, kRepAck);
    }
    if (!contexts.empty()) {
      send_option(kOptSetMetaContext, meta_data(name, contexts));
      for (auto& r : read_option_replies()) {
        if (r.type == kRepMetaContext)
          g.contexts.emplace_back(load_be32(r.data.data()), to_string(r.data, 4));
      }
    }
    send_option(kOptGo, info_data(name, {kInfoBlockSize}));
    for (auto& r : read_option_replies()) {
      EXPECT_TRUE(r.type == kRepInfo || r.type == kRepAck) << "GO failed: " << to_string(r.data);
      if (r.type != kRepInfo) continue;
      const uint16_t info = load_be16(r.data.data());
      if (info == kInfoExport) {
        g.size = load_be64(r.data.data() + 2);
        g.eflags = load_be16(r.data.data() + 10);
      } else if (info == kInfoBlockSize) {
        g.min_block = load_be32(r.data.data() + 2);
        g.preferred = load_be32(r.data.data() + 6);
        g.max_payload = load_be32(r.data.data() + 10);
      }
    }
    return g;
  }

  // ---- Transmission ----
  bool send_request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset,
                    uint32_t length, std::span<const std::byte> payload = {},
                    uint32_t magic = kRequestMagic) {
    std::vector<std::byte> b(kRequestHeaderSize);
    encode_request_header(b.data(), RequestHeader{magic, flags, type, cookie, offset, length});
    b.insert(b.end(), payload.begin(), payload.end());
    return send(b);
  }
  // Reads one reply message; a simple reply to a READ needs the read length.
  Reply read_reply(uint32_t simple_data_len = 0) {
    auto h = recv(4);
    Reply r;
    const uint32_t magic = load_be32(h.data());
    if (magic == kSimpleReplyMagic) {
      auto rest = recv(12);
      r.error = load_be32(rest.data());
      r.cookie = load_be64(rest.data() + 4);
      if (r.error == 0 && simple_data_len) r.payload = recv(simple_data_len);
      return r;
    }
    EXPECT_EQ(magic, kStructuredReplyMagic);
    auto rest = recv(16);
    r.structured = true;
    r.flags = load_be16(rest.data());
    r.type = load_be16(rest.data() + 2);
    r.cookie = load_be64(rest.data() + 4);
    r.payload = recv(load_be32(rest.data() + 12));
    return r;
  }
  // Reads every chunk of one structured reply (until DONE).
  std::vector<Reply> read_chunks() {
    std::vector<Reply> out;
    do {
      out.push_back(read_reply());
    } while (out.back().structured && !out.back().done());
    return out;
  }

 private:
  int fd_;
  Transport* transport_ = nullptr;
};

}  // namespace nbd_test
