#include "server/nbd/handshake.h"

#include <spdlog/spdlog.h>

#include <array>

#include "server/net/tls_context.h"
#include "server/nbd/protocol.h"
#include "server/nbd/wire.h"

namespace server::nbd {

using blockcore::Task;

Handshake::Handshake(SocketIo& io, const ExportRegistry& exports,
                     const MetaContextRegistry& contexts, net::TlsContext* tls,
                     config::ClientIdentity who)
    : io_(io), exports_(exports), contexts_(contexts), tls_(tls), who_(std::move(who)) {}

bool Handshake::fail(std::string reason) {
  if (reason_.empty()) reason_ = std::move(reason);
  return false;
}

Task<bool> Handshake::send(const WireWriter& w) {
  std::error_code ec = co_await io_.write_all(w.view());
  if (ec) co_return fail("handshake write failed: " + ec.message());
  co_return true;
}

Task<bool> Handshake::reply(uint32_t option, uint32_t type, std::string_view payload) {
  WireWriter w;
  append_option_reply(w, option, type, payload);
  co_return co_await send(w);
}

Task<bool> Handshake::reply_error(uint32_t option, uint32_t type, std::string_view message) {
  spdlog::debug("nbd: {} refused: {}", option_name(option), message);
  co_return co_await reply(option, type, message.substr(0, kMaxStringLength));
}

ExportPtr Handshake::find_export(const std::string& name, uint32_t& rep_error,
                                 std::string& message) const {
  ExportPtr exp = exports_.find(name);
  // A client outside the export's allow list gets the very answer a missing export
  // gets, so it learns nothing about the export.
  const bool refused = exp && exp->root && !config::client_allowed(exp->allow, who_);
  if (refused) spdlog::info("nbd: export '{}' refused: the client is not in its allow list", name);
  if (!exp || !exp->root || refused) {
    rep_error = kRepErrUnknown;
    message = "export '" + name + "' not available";
    return nullptr;
  }
  return exp;
}

Task<HandshakeResult> Handshake::run() {
  HandshakeResult result;
  {
    WireWriter w;
    w.u64(kNbdMagic).u64(kIHaveOpt).u16(kFlagFixedNewstyle | kFlagNoZeroes);
    if (!co_await send(w)) {
      result.reason = reason_;
      co_return result;
    }
  }
  std::array<std::byte, kOptionHeaderSize> hdr;
  std::error_code ec = co_await io_.read_exact(std::span(hdr).first(4));
  if (ec) {
    result.reason = "client closed the connection before sending its flags";
    co_return result;
  }
  const uint32_t client_flags = load_be32(hdr.data());
  if (client_flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) {
    result.reason = "client sent unknown handshake flags";
    co_return result;
  }
  no_zeroes_ = (client_flags & kClientFlagNoZeroes) != 0;

  while (!done_) {
    ec = co_await io_.read_exact(hdr);
    if (ec) {
      fail("client closed the connection during the handshake");
      break;
    }
    if (load_be64(hdr.data()) != kIHaveOpt) {
      fail("protocol violation: bad option magic");
      break;
    }
    const uint32_t option = load_be32(hdr.data() + 8);
    const uint32_t length = load_be32(hdr.data() + 12);
    if (!co_await handle_option(option, length)) break;
  }
  result.transmission = done_;
  result.reason = reason_;
  if (done_) result.session = std::move(session_);
  co_return result;
}

Task<bool> Handshake::handle_option(uint32_t option, uint32_t length) {
  const bool tls_missing = tls_ && tls_->required() && !tls_active_;
  if (option == kOptExportName && tls_missing) {
    co_return fail("NBD_OPT_EXPORT_NAME before STARTTLS; TLS is required");
  }
  if (option == kOptExportName) co_return co_await handle_export_name(length);
  if (option == kOptStartTls) co_return co_await handle_starttls(length);
  if (tls_missing && option != kOptAbort) {
    if (length > kMaxOptionSkip) {
      co_return fail("protocol violation: option data of " + std::to_string(length) +
                     " bytes is too large");
    }
    std::error_code ec = co_await io_.skip(length);
    if (ec) co_return fail("client closed the connection during the handshake");
    co_return co_await reply_error(option, kRepErrTlsReqd,
                                   "TLS is required: send NBD_OPT_STARTTLS first");
  }

  const bool known = option == kOptAbort || option == kOptList || option == kOptInfo ||
                     option == kOptGo || option == kOptStructuredReply ||
                     option == kOptListMetaContext || option == kOptSetMetaContext;
  if (!known || length > kMaxOptionLength) {
    if (length > kMaxOptionSkip) {
      co_return fail("protocol violation: option data of " + std::to_string(length) +
                     " bytes is too large");
    }
    std::error_code ec = co_await io_.skip(length);
    if (ec) co_return fail("client closed the connection during the handshake");
    if (!known) {
      // Also EXTENDED_HEADERS until it is implemented.
      co_return co_await reply_error(option, kRepErrUnsup, "option not supported");
    }
    if (option == kOptSetMetaContext) {  // a failed SET still empties the selection
      meta_export_.clear();
      meta_selected_.clear();
    }
    co_return co_await reply_error(option, kRepErrTooBig, "option data too large");
  }

  option_data_.resize(length);
  std::error_code ec = co_await io_.read_exact(option_data_);
  if (ec) co_return fail("client closed the connection during the handshake");
  std::span<const std::byte> data(option_data_);

  switch (option) {
    case kOptAbort:
      // The client may already have closed; the reply is best-effort.
      {
        WireWriter w;
        append_option_reply(w, option, kRepAck, std::string_view{});
        co_await io_.write_all(w.view());
      }
      co_return fail("client aborted the handshake (NBD_OPT_ABORT)");
    case kOptList:
      co_return co_await handle_list(data);
    case kOptInfo:
    case kOptGo:
      co_return co_await handle_info_go(option, data);
    case kOptStructuredReply:
      co_return co_await handle_structured_reply(data);
    case kOptListMetaContext:
    case kOptSetMetaContext:
      co_return co_await handle_meta_context(option, data);
  }
  co_return fail("internal error: unhandled option");
}

Task<bool> Handshake::handle_export_name(uint32_t length) {
  if (length > kMaxStringLength) co_return fail("protocol violation: export name too long");
  std::string name(length, '\0');
  std::error_code ec = co_await io_.read_exact(std::as_writable_bytes(std::span(name)));
  if (ec) co_return fail("client closed the connection during the handshake");
  uint32_t rep_error = 0;
  std::string message;
  ExportPtr exp = find_export(name, rep_error, message);
  if (!exp) co_return fail("NBD_OPT_EXPORT_NAME: " + message);
  WireWriter w;
  w.u64(exp->root->size()).u16(transmission_flags(*exp, structured_));
  if (!no_zeroes_) w.zeroes(kExportNameZeroes);
  if (on_chosen_) on_chosen_(exp);
  if (!co_await send(w)) co_return false;
  finish(std::move(exp));
  co_return true;
}

Task<bool> Handshake::handle_starttls(uint32_t length) {
  if (length > 0) {
    if (length > kMaxOptionSkip) co_return fail("protocol violation: STARTTLS with data");
    std::error_code ec = co_await io_.skip(length);
    if (ec) co_return fail("client closed the connection during the handshake");
    co_return co_await reply_error(kOptStartTls, kRepErrInvalid, "NBD_OPT_STARTTLS takes no data");
  }
  if (!tls_) {
    co_return co_await reply_error(kOptStartTls, kRepErrPolicy, "TLS is not configured");
  }
  if (tls_active_) {
    co_return co_await reply_error(kOptStartTls, kRepErrInvalid, "TLS is already active");
  }
  // The client must wait for the ACK before its TLS hello; bytes already here were
  // sent in the clear after STARTTLS and cannot be trusted.
  if (io_.buffered() != 0) co_return fail("protocol violation: data after NBD_OPT_STARTTLS");
  if (!co_await reply(kOptStartTls, kRepAck)) co_return false;
  net::TlsIdentity id;
  std::error_code ec = co_await io_.start_tls(*tls_, id);
  if (ec) co_return fail("TLS handshake failed: " + ec.message());
  tls_active_ = true;
  who_.tls_dn = id.dn;
  who_.psk_identity = id.psk_identity;
  spdlog::debug("nbd: TLS {} {}{}{}", id.protocol, id.cipher,
                id.dn.empty() ? "" : ", certificate " + id.dn,
                id.psk_identity.empty() ? "" : ", PSK identity " + id.psk_identity);
  // Nothing negotiated in the clear survives the upgrade.
  structured_ = false;
  block_size_requested_ = false;
  meta_export_.clear();
  meta_selected_.clear();
  co_return true;
}

Task<bool> Handshake::handle_list(std::span<const std::byte> data) {
  if (!data.empty())
    co_return co_await reply_error(kOptList, kRepErrInvalid, "NBD_OPT_LIST takes no data");
  WireWriter w;
  for (const ExportPtr& e : exports_.list()) {
    if (!config::client_allowed(e->allow, who_)) continue;
    WireWriter payload;
    payload.u32(static_cast<uint32_t>(e->name.size()))
        .str(e->name)
        .str(std::string_view(e->description).substr(0, kMaxStringLength));
    append_option_reply(w, kOptList, kRepServer, payload.view());
  }
  append_option_reply(w, kOptList, kRepAck, std::string_view{});
  co_return co_await send(w);
}

Task<bool> Handshake::handle_info_go(uint32_t option, std::span<const std::byte> data) {
  InfoRequest req;
  OptionParseError err = parse_info_request(data, req);
  if (!err.ok()) co_return co_await reply_error(option, err.reply_type, err.message);
  uint32_t rep_error = 0;
  std::string message;
  ExportPtr exp = find_export(req.export_name, rep_error, message);
  if (!exp) co_return co_await reply_error(option, rep_error, message);
  if (req.wants(kInfoBlockSize)) block_size_requested_ = true;
  const BlockSizeLimits limits = block_size_limits(*exp);
  if (option == kOptGo && limits.min > 1 && !block_size_requested_) {
    co_return co_await reply_error(option, kRepErrBlockSizeReqd,
                                   "export needs a minimum block size of " +
                                       std::to_string(limits.min) +
                                       " bytes; request NBD_INFO_BLOCK_SIZE");
  }
  WireWriter w;
  if (req.wants(kInfoName)) {
    WireWriter p;
    p.u16(kInfoName).str(exp->name);
    append_option_reply(w, option, kRepInfo, p.view());
  }
  if (req.wants(kInfoDescription) && !exp->description.empty()) {
    WireWriter p;
    p.u16(kInfoDescription).str(exp->description.substr(0, kMaxStringLength));
    append_option_reply(w, option, kRepInfo, p.view());
  }
  {
    WireWriter p;
    p.u16(kInfoBlockSize).u32(limits.min).u32(limits.preferred).u32(limits.max_payload);
    append_option_reply(w, option, kRepInfo, p.view());
  }
  {
    WireWriter p;
    p.u16(kInfoExport).u64(exp->root->size()).u16(transmission_flags(*exp, structured_));
    append_option_reply(w, option, kRepInfo, p.view());
  }
  append_option_reply(w, option, kRepAck, std::string_view{});
  if (option == kOptGo && on_chosen_) on_chosen_(exp);
  if (!co_await send(w)) co_return false;
  if (option == kOptGo) finish(std::move(exp));
  co_return true;
}

Task<bool> Handshake::handle_structured_reply(std::span<const std::byte> data) {
  if (!data.empty()) {
    co_return co_await reply_error(kOptStructuredReply, kRepErrInvalid,
                                   "NBD_OPT_STRUCTURED_REPLY takes no data");
  }
  if (structured_) {
    co_return co_await reply_error(kOptStructuredReply, kRepErrInvalid,
                                   "structured replies already negotiated");
  }
  structured_ = true;
  co_return co_await reply(kOptStructuredReply, kRepAck);
}

Task<bool> Handshake::handle_meta_context(uint32_t option, std::span<const std::byte> data) {
  const bool set = option == kOptSetMetaContext;
  if (set) {  // SET replaces the selection even when it fails
    meta_export_.clear();
    meta_selected_.clear();
  }
  if (!structured_) {
    co_return co_await reply_error(option, kRepErrInvalid,
                                   "structured replies must be negotiated first");
  }
  MetaContextRequest req;
  OptionParseError err = parse_meta_context_request(data, req);
  if (!err.ok()) co_return co_await reply_error(option, err.reply_type, err.message);
  uint32_t rep_error = 0;
  std::string message;
  ExportPtr exp = find_export(req.export_name, rep_error, message);
  if (!exp) co_return co_await reply_error(option, rep_error, message);
  WireWriter w;
  auto add_reply = [&](uint32_t id, std::string_view name) {
    WireWriter p;
    p.u32(id).str(name);
    append_option_reply(w, option, kRepMetaContext, p.view());
  };
  if (set) {
    std::vector<MetaContextPtr> selected = contexts_.select(exp, req.queries);
    uint32_t id = 1;
    for (const MetaContextPtr& c : selected) {
      meta_selected_.emplace_back(id, c->name());
      add_reply(id, c->name());
      ++id;
    }
    meta_export_ = req.export_name;
  } else {
    for (const std::string& name : contexts_.list(*exp, req.queries)) add_reply(0, name);
  }
  append_option_reply(w, option, kRepAck, std::string_view{});
  co_return co_await send(w);
}

void Handshake::finish(ExportPtr exp) {
  session_.structured = structured_;
  session_.eflags = transmission_flags(*exp, structured_);
  session_.limits = block_size_limits(*exp);
  // Contexts count only if the last SET named this export; resolve them against the
  // export actually opened (it may have been replaced since).
  if (structured_ && meta_export_ == exp->name) {
    for (const auto& [id, name] : meta_selected_) {
      if (MetaContextPtr c = contexts_.resolve(exp, name)) {
        session_.contexts.push_back(SelectedContext{id, std::move(c)});
      }
    }
  }
  session_.exp = std::move(exp);
  done_ = true;
}

}  // namespace server::nbd
