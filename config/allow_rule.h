// Export access rules (`allow:`): who may see and open an export. A rule names one
// client identity — a verified client certificate subject (`tls-dn`, RFC 2253 form as
// `openssl x509 -subject -nameopt RFC2253` prints it), a PSK identity, a Unix peer uid
// (SO_PEERCRED) or a TCP peer address range (CIDR, IPv4 or IPv6). A client may open an
// export when any rule matches; an export without rules is open to every client.
// Rules travel as canonical strings "KIND:VALUE" (e.g. "uid:1000", "address:10.0.0.0/8")
// in ExportConfig/Export, so they compare and copy as plain values; parse_allow_rule
// turns one back into a matcher. Pure code, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace config {

// An IPv4 or IPv6 address; an IPv4-mapped IPv6 address is stored as IPv4.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4: the first 4
  bool operator==(const IpAddress&) const = default;
};
std::optional<IpAddress> parse_ip_address(std::string_view text);

// What the server knows about a client when it decides.
struct ClientIdentity {
  std::optional<uint32_t> uid;         // Unix socket peer
  std::optional<IpAddress> address;    // TCP peer
  std::string tls_dn;                  // subject of a verified client certificate
  std::string psk_identity;            // identity of a PSK TLS session
};

struct AllowRule {
  enum class Kind { kTlsDn, kPskIdentity, kUid, kAddress };
  Kind kind = Kind::kUid;
  std::string value;     // the DN, identity, uid or "ADDR/PREFIX" (normalised)
  uint32_t uid = 0;      // kUid
  IpAddress network;     // kAddress
  unsigned prefix = 0;   // kAddress: leading bits that must match

  bool matches(const ClientIdentity& who) const;
  std::string canonical() const;  // "KIND:VALUE"
};

// The YAML/QMP keys of a rule, in the order they are documented.
inline constexpr const char* kAllowKeys[] = {"tls-dn", "psk-identity", "uid", "address"};

// A rule from its key and value (YAML `{ KEY: VALUE }`); nullopt with `error` set when
// the value is not valid for the key.
std::optional<AllowRule> make_allow_rule(std::string_view key, std::string_view value,
                                         std::string& error);
// A rule from its canonical string.
std::optional<AllowRule> parse_allow_rule(std::string_view canonical, std::string& error);

// True when `allow` is empty or one of its rules matches. A rule that does not parse
// matches nobody (fail closed).
bool client_allowed(const std::vector<std::string>& allow, const ClientIdentity& who);

}  // namespace config
