#include "config/psk_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace config {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// GnuTLS and OpenSSL both cap PSK identities and keys; keep within what both accept.
constexpr size_t kMaxIdentity = 128;
constexpr size_t kMaxKeyBytes = 64;

}  // namespace

const PskEntry* PskFile::find(std::string_view identity) const {
  for (const PskEntry& e : entries) {
    if (e.identity == identity) return &e;
  }
  return nullptr;
}

PskFile parse_psk_text(std::string_view text) {
  PskFile out;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    auto fail = [&](const std::string& what) {
      out.entries.clear();
      out.error = "line " + std::to_string(line_no) + ": " + what;
      return out;
    };
    const size_t colon = line.rfind(':');
    if (colon == std::string_view::npos) return fail("expected identity:hexkey");
    const std::string_view identity = line.substr(0, colon);
    const std::string_view hex = line.substr(colon + 1);
    if (identity.empty()) return fail("empty identity");
    if (identity.size() > kMaxIdentity) return fail("identity longer than 128 bytes");
    if (hex.empty()) return fail("empty key for identity '" + std::string(identity) + "'");
    if (hex.size() % 2 != 0) return fail("key has an odd number of hex digits");
    if (hex.size() / 2 > kMaxKeyBytes) return fail("key longer than 64 bytes");
    PskEntry e;
    e.identity = std::string(identity);
    for (size_t i = 0; i < hex.size(); i += 2) {
      const int hi = hex_value(hex[i]);
      const int lo = hex_value(hex[i + 1]);
      if (hi < 0 || lo < 0) return fail("key is not hexadecimal");
      e.key.push_back(static_cast<uint8_t>(hi * 16 + lo));
    }
    if (out.find(e.identity)) return fail("identity '" + e.identity + "' appears twice");
    out.entries.push_back(std::move(e));
  }
  if (out.entries.empty()) out.error = "no identity:hexkey line";
  return out;
}

PskFile load_psk_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    PskFile out;
    out.error = path + ": " + std::strerror(errno);
    return out;
  }
  std::ostringstream s;
  s << in.rdbuf();
  PskFile out = parse_psk_text(s.str());
  if (!out.ok()) out.error = path + ": " + out.error;
  return out;
}

}  // namespace config
