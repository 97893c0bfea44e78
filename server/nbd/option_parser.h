// Pure parsers for the payloads of handshake options: NBD_OPT_INFO/GO (export name +
// info requests) and NBD_OPT_LIST/SET_META_CONTEXT (export name + queries). They check
// every length against the option length and the 4096-byte string limit and say which
// NBD_REP_ERR_* to answer when the data is malformed. No I/O.
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace server::nbd {

// Outcome of parsing an option payload: ok, or the error reply type and a message.
struct OptionParseError {
  uint32_t reply_type = 0;  // 0 = parsed fine, else an NBD_REP_ERR_*
  std::string message;
  bool ok() const { return reply_type == 0; }
};

struct InfoRequest {
  std::string export_name;
  std::vector<uint16_t> infos;  // NBD_INFO_* the client asked for
  bool wants(uint16_t info) const;
};

struct MetaContextRequest {
  std::string export_name;
  std::vector<std::string> queries;
};

// Data: u32 name length, name, u16 count, count × u16 info type.
OptionParseError parse_info_request(std::span<const std::byte> data, InfoRequest& out);
// Data: u32 name length, name, u32 count, count × (u32 length, query).
OptionParseError parse_meta_context_request(std::span<const std::byte> data,
                                            MetaContextRequest& out);

}  // namespace server::nbd
