// The fixed-newstyle NBD handshake as one coroutine: greeting, client flags, then
// option haggling (EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
// LIST/SET_META_CONTEXT, STARTTLS; ERR_UNSUP for everything else, EXTENDED_HEADERS
// included for now) until the client enters transmission or leaves. Option payloads
// are bounded: data above kMaxOptionLength is skipped (ERR_TOO_BIG) without being
// stored, above kMaxOptionSkip the connection is dropped.
// TLS: STARTTLS upgrades the stream when the server has a TlsContext; everything
// negotiated before it (structured replies, meta contexts, block-size) is forgotten.
// When TLS is required, every option but STARTTLS and ABORT gets ERR_TLS_REQD before
// the upgrade, and EXPORT_NAME ends the connection.
// Access: an export whose `allow:` rules match none of the client's identities (peer
// uid or address, TLS certificate subject or PSK identity) is not listed and answers
// exactly as a missing export does (ERR_UNKNOWN; EXPORT_NAME closes).
// Threading: runs on the connection's strand; the registries are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "blockcore/base/task.h"
#include "config/allow_rule.h"
#include "server/export/export_registry.h"
#include "server/nbd/export_info.h"
#include "server/nbd/meta_context.h"
#include "server/nbd/option_parser.h"
#include "server/nbd/socket_io.h"
#include "server/nbd/wire.h"

namespace server::net {
class TlsContext;
}  // namespace server::net

namespace server::nbd {

// A metadata context selected for the session, with the id the client was told.
struct SelectedContext {
  uint32_t id = 0;
  MetaContextPtr context;
};

// Everything transmission needs from the handshake.
struct NegotiatedSession {
  ExportPtr exp;
  bool structured = false;
  uint16_t eflags = 0;
  BlockSizeLimits limits;
  std::vector<SelectedContext> contexts;
};

struct HandshakeResult {
  bool transmission = false;  // false: the connection must be closed
  std::string reason;         // why it ends (when !transmission)
  NegotiatedSession session;  // valid when transmission
};

class Handshake {
 public:
  // `tls` (may be null: no STARTTLS) must outlive the handshake; `who` is what the
  // socket says about the client (uid or address).
  Handshake(SocketIo& io, const ExportRegistry& exports, const MetaContextRegistry& contexts,
            net::TlsContext* tls = nullptr, config::ClientIdentity who = {});
  Handshake(const Handshake&) = delete;
  Handshake& operator=(const Handshake&) = delete;

  blockcore::Task<HandshakeResult> run();

  // Called with the export a client opens just before the reply that starts
  // transmission is sent, so the server counts the client as that export's before the
  // client can act on the reply (block-export-del in safe mode).
  void on_export_chosen(std::function<void(const ExportPtr&)> cb) { on_chosen_ = std::move(cb); }

 private:
  // Each handler returns false when the connection must end (reason_ says why).
  blockcore::Task<bool> handle_option(uint32_t option, uint32_t length);
  blockcore::Task<bool> handle_export_name(uint32_t length);
  blockcore::Task<bool> handle_starttls(uint32_t length);
  blockcore::Task<bool> handle_list(std::span<const std::byte> data);
  blockcore::Task<bool> handle_info_go(uint32_t option, std::span<const std::byte> data);
  blockcore::Task<bool> handle_structured_reply(std::span<const std::byte> data);
  blockcore::Task<bool> handle_meta_context(uint32_t option, std::span<const std::byte> data);

  // Sends one option reply (header + payload).
  blockcore::Task<bool> reply(uint32_t option, uint32_t type, std::string_view payload = {});
  blockcore::Task<bool> reply_error(uint32_t option, uint32_t type, std::string_view message);
  blockcore::Task<bool> send(const WireWriter& w);
  bool fail(std::string reason);
  // The export a client may open by this name, or nullptr with the reply to send.
  ExportPtr find_export(const std::string& name, uint32_t& rep_error, std::string& message) const;
  void finish(ExportPtr exp);

  std::function<void(const ExportPtr&)> on_chosen_;
  SocketIo& io_;
  const ExportRegistry& exports_;
  const MetaContextRegistry& contexts_;

  net::TlsContext* tls_ = nullptr;
  config::ClientIdentity who_;
  bool tls_active_ = false;

  bool no_zeroes_ = false;
  bool structured_ = false;
  bool block_size_requested_ = false;
  // The last NBD_OPT_SET_META_CONTEXT: export name and selected (id, name) pairs.
  std::string meta_export_;
  std::vector<std::pair<uint32_t, std::string>> meta_selected_;

  bool done_ = false;  // finish() was called
  std::string reason_;
  NegotiatedSession session_;
  std::vector<std::byte> option_data_;
};

}  // namespace server::nbd
