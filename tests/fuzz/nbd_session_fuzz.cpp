// libFuzzer target: arbitrary client bytes through the NBD handshake and transmission.
// The server is the real NbdServer on a socket pair, serving in-memory exports; a
// client coroutine sends the input, half-closes, and drains every reply until the
// server closes. The first input byte picks a prefix the harness sends first (none, a
// complete GO, structured replies + base:allocation + GO, or EXPORT_NAME) so the fuzzer
// reaches the transmission phase easily. Any crash, sanitizer report or hang is a bug.
// Run: nbd_session_fuzz -runs=20000 -dict=tests/fuzz/nbd_session.dict
#include <signal.h>
#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "server/export/export_registry.h"
#include "server/nbd/meta_context.h"
#include "server/nbd/nbd_server.h"
#include "server/nbd/protocol.h"
#include "server/nbd/wire.h"
#include "spdlog/spdlog.h"
#include "testing/memory_node.h"

namespace {

using namespace server::nbd;
using Socket = asio::generic::stream_protocol::socket;
constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

struct Env {
  Env() {
    auto add = [&](const char* name, uint64_t size, bool writable, uint32_t align) {
      auto info = fleece_test::MemoryNode::default_info(size);
      info.request_alignment = align;
      auto e = std::make_shared<server::Export>();
      e->name = name;
      e->description = "fuzz export";
      e->root = std::make_shared<fleece_test::MemoryNode>(name, info);
      e->writable = writable;
      (void)exports.add(e);
    };
    add("disk", 1 << 20, true, 1);
    add("ro", 256 << 10, false, 1);
    add("aligned", 256 << 10, true, 512);
    NbdServerOptions opts;
    opts.max_in_flight = 4;
    server = std::make_unique<NbdServer>(exports, contexts, opts);
  }
  server::ExportRegistry exports;
  MetaContextRegistry contexts;
  std::unique_ptr<NbdServer> server;
};

std::vector<std::byte> prefix(uint8_t mode) {
  WireWriter w;
  auto option = [&](uint32_t opt, const WireWriter& data) {
    w.u64(kIHaveOpt).u32(opt).u32(static_cast<uint32_t>(data.size())).bytes(data.view());
  };
  auto go = [&](const char* name) {
    WireWriter d;
    d.u32(static_cast<uint32_t>(std::strlen(name))).str(name).u16(1).u16(kInfoBlockSize);
    option(kOptGo, d);
  };
  switch (mode % 4) {
    case 0:
      break;
    case 1:
      w.u32(kClientFlagFixedNewstyle | kClientFlagNoZeroes);
      go(mode & 4 ? "ro" : "disk");
      break;
    case 2: {
      w.u32(kClientFlagFixedNewstyle | kClientFlagNoZeroes);
      option(kOptStructuredReply, WireWriter());
      WireWriter d;
      const char* name = mode & 4 ? "aligned" : "disk";
      d.u32(static_cast<uint32_t>(std::strlen(name)))
          .str(name)
          .u32(1)
          .u32(15)
          .str("base:allocation");
      option(kOptSetMetaContext, d);
      go(name);
      break;
    }
    case 3:
      w.u32(kClientFlagFixedNewstyle);
      w.u64(kIHaveOpt).u32(kOptExportName).u32(4).str("disk");
      break;
  }
  return std::move(w.buffer());
}

asio::awaitable<void> send_all(Socket& s, std::vector<std::byte> data) {
  co_await asio::async_write(s, asio::buffer(data), kTuple);
  std::error_code ignored;
  s.shutdown(asio::socket_base::shutdown_send, ignored);
}

asio::awaitable<void> drain(Socket& s) {
  std::vector<std::byte> buf(1 << 16);
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), kTuple);
    if (ec) break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  signal(SIGPIPE, SIG_IGN);
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env env;
  if (size == 0) return 0;
  std::vector<std::byte> input = prefix(data[0]);
  const auto* bytes = reinterpret_cast<const std::byte*>(data + 1);
  input.insert(input.end(), bytes, bytes + size - 1);

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  asio::io_context io;
  const asio::generic::stream_protocol proto(AF_UNIX, SOCK_STREAM);
  env.server->accept(Socket(io, proto, sv[0]), "fuzz");
  Socket client(io, proto, sv[1]);
  asio::co_spawn(io, send_all(client, std::move(input)), asio::detached);
  asio::co_spawn(io, drain(client), asio::detached);
  io.run();  // ends when the server closed the connection and the client drained it
  return 0;
}
