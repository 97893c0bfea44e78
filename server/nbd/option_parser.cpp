#include "server/nbd/option_parser.h"

#include <algorithm>

#include "server/nbd/protocol.h"
#include "server/nbd/wire.h"

namespace server::nbd {
namespace {

OptionParseError invalid(std::string message) {
  return OptionParseError{kRepErrInvalid, std::move(message)};
}

// Reads a u32-length-prefixed string of at most kMaxStringLength bytes.
bool read_string(WireReader& r, std::string& out, const char* what, OptionParseError& err) {
  const uint32_t len = r.u32();
  if (r.failed()) {
    err = invalid(std::string("option data too short for the ") + what + " length");
    return false;
  }
  if (len > kMaxStringLength) {
    err = invalid(std::string(what) + " longer than 4096 bytes");
    return false;
  }
  if (len > r.remaining()) {
    err = invalid(std::string(what) + " length exceeds the option data");
    return false;
  }
  out = r.str(len);
  return true;
}

}  // namespace

bool InfoRequest::wants(uint16_t info) const {
  return std::find(infos.begin(), infos.end(), info) != infos.end();
}

OptionParseError parse_info_request(std::span<const std::byte> data, InfoRequest& out) {
  WireReader r(data);
  OptionParseError err;
  if (!read_string(r, out.export_name, "export name", err)) return err;
  const uint16_t n = r.u16();
  if (r.failed()) return invalid("option data too short for the info request count");
  if (r.remaining() != size_t{n} * 2) {
    return invalid("info request count does not match the option length");
  }
  out.infos.clear();
  out.infos.reserve(n);
  for (uint16_t i = 0; i < n; ++i) out.infos.push_back(r.u16());
  return {};
}

OptionParseError parse_meta_context_request(std::span<const std::byte> data,
                                            MetaContextRequest& out) {
  WireReader r(data);
  OptionParseError err;
  if (!read_string(r, out.export_name, "export name", err)) return err;
  const uint32_t n = r.u32();
  if (r.failed()) return invalid("option data too short for the query count");
  // Each query takes at least its 4-byte length: bound n before reserving anything.
  if (n > r.remaining() / 4) return invalid("query count exceeds the option data");
  out.queries.clear();
  out.queries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::string q;
    if (!read_string(r, q, "query", err)) return err;
    out.queries.push_back(std::move(q));
  }
  if (!r.done()) return invalid("trailing bytes after the last query");
  return {};
}

}  // namespace server::nbd
