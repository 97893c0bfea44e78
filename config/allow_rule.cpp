#include "config/allow_rule.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace config {
namespace {

const char* kind_key(AllowRule::Kind k) {
  switch (k) {
    case AllowRule::Kind::kTlsDn:
      return "tls-dn";
    case AllowRule::Kind::kPskIdentity:
      return "psk-identity";
    case AllowRule::Kind::kUid:
      return "uid";
    case AllowRule::Kind::kAddress:
      return "address";
  }
  return "?";
}

std::optional<uint64_t> parse_decimal(std::string_view s, uint64_t max) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > max) return std::nullopt;
  return v;
}

std::string format_ip(const IpAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), buf, sizeof(buf));
  return buf;
}

bool prefix_equal(const IpAddress& a, const IpAddress& b, unsigned bits) {
  const unsigned whole = bits / 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), whole) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a.bytes[whole] & mask) == (b.bytes[whole] & mask);
}

}  // namespace

std::optional<IpAddress> parse_ip_address(std::string_view text) {
  const std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
    IpAddress v4;
    std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
    return v4;
  }
  a.v6 = true;
  return a;
}

bool AllowRule::matches(const ClientIdentity& who) const {
  switch (kind) {
    case Kind::kTlsDn:
      return !who.tls_dn.empty() && who.tls_dn == value;
    case Kind::kPskIdentity:
      return !who.psk_identity.empty() && who.psk_identity == value;
    case Kind::kUid:
      return who.uid && *who.uid == uid;
    case Kind::kAddress:
      return who.address && who.address->v6 == network.v6 &&
             prefix_equal(*who.address, network, prefix);
  }
  return false;
}

std::string AllowRule::canonical() const { return std::string(kind_key(kind)) + ":" + value; }

std::optional<AllowRule> make_allow_rule(std::string_view key, std::string_view value,
                                         std::string& error) {
  AllowRule r;
  if (key == "tls-dn" || key == "psk-identity") {
    r.kind = key == "tls-dn" ? AllowRule::Kind::kTlsDn : AllowRule::Kind::kPskIdentity;
    if (value.empty()) {
      error = std::string(key) + " must not be empty";
      return std::nullopt;
    }
    r.value = std::string(value);
    return r;
  }
  if (key == "uid") {
    auto v = parse_decimal(value, UINT32_MAX - 1);
    if (!v) {
      error = "uid must be a number (0 to 4294967294), not '" + std::string(value) + "'";
      return std::nullopt;
    }
    r.kind = AllowRule::Kind::kUid;
    r.uid = static_cast<uint32_t>(*v);
    r.value = std::to_string(r.uid);
    return r;
  }
  if (key == "address") {
    r.kind = AllowRule::Kind::kAddress;
    const size_t slash = value.find('/');
    auto ip = parse_ip_address(value.substr(0, slash));
    if (!ip) {
      error = "'" + std::string(value) + "' is not an IPv4 or IPv6 address or range (CIDR)";
      return std::nullopt;
    }
    const unsigned bits = ip->v6 ? 128 : 32;
    r.prefix = bits;
    if (slash != std::string_view::npos) {
      auto p = parse_decimal(value.substr(slash + 1), bits);
      if (!p) {
        error = "prefix length of '" + std::string(value) + "' must be 0 to " +
                std::to_string(bits);
        return std::nullopt;
      }
      r.prefix = static_cast<unsigned>(*p);
    }
    // Clear host bits so the canonical form names the network.
    r.network.v6 = ip->v6;
    for (unsigned i = 0; i < bits / 8; ++i) {
      const unsigned keep = r.prefix > i * 8 ? std::min(8u, r.prefix - i * 8) : 0;
      const uint8_t mask = keep == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
      r.network.bytes[i] = ip->bytes[i] & mask;
    }
    r.value = format_ip(r.network) + "/" + std::to_string(r.prefix);
    return r;
  }
  error = "unknown allow entry '" + std::string(key) +
          "' (expected tls-dn, psk-identity, uid or address)";
  return std::nullopt;
}

std::optional<AllowRule> parse_allow_rule(std::string_view canonical, std::string& error) {
  const size_t colon = canonical.find(':');
  if (colon == std::string_view::npos) {
    error = "allow rule '" + std::string(canonical) + "' is not KIND:VALUE";
    return std::nullopt;
  }
  return make_allow_rule(canonical.substr(0, colon), canonical.substr(colon + 1), error);
}

bool client_allowed(const std::vector<std::string>& allow, const ClientIdentity& who) {
  if (allow.empty()) return true;
  for (const std::string& text : allow) {
    std::string error;
    auto rule = parse_allow_rule(text, error);
    if (rule && rule->matches(who)) return true;
  }
  return false;
}

}  // namespace config
