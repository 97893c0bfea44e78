// Export access rules: parsing of each kind, canonical strings, CIDR matching (IPv4,
// IPv6, mapped addresses, odd prefixes) and the any-rule-matches decision.
#include "config/allow_rule.h"

#include <gtest/gtest.h>

namespace config {
namespace {

AllowRule rule(std::string_view key, std::string_view value) {
  std::string error;
  auto r = make_allow_rule(key, value, error);
  EXPECT_TRUE(r) << key << ": " << value << ": " << error;
  return r.value_or(AllowRule{});
}

std::string rule_error(std::string_view key, std::string_view value) {
  std::string error;
  EXPECT_FALSE(make_allow_rule(key, value, error)) << key << ": " << value;
  return error;
}

ClientIdentity from(std::string_view address) {
  ClientIdentity who;
  who.address = parse_ip_address(address);
  EXPECT_TRUE(who.address) << address;
  return who;
}

TEST(AllowRule, CanonicalStringsRoundTrip) {
  EXPECT_EQ(rule("tls-dn", "CN=backup1,O=Example").canonical(), "tls-dn:CN=backup1,O=Example");
  EXPECT_EQ(rule("psk-identity", "backup1").canonical(), "psk-identity:backup1");
  EXPECT_EQ(rule("uid", "1000").canonical(), "uid:1000");
  EXPECT_EQ(rule("address", "10.1.2.3/8").canonical(), "address:10.0.0.0/8");
  EXPECT_EQ(rule("address", "192.168.1.7").canonical(), "address:192.168.1.7/32");
  EXPECT_EQ(rule("address", "fd00:1::5/32").canonical(), "address:fd00:1::/32");
  EXPECT_EQ(rule("address", "::ffff:127.0.0.1/8").canonical(), "address:127.0.0.0/8");
  std::string error;
  auto back = parse_allow_rule("tls-dn:CN=a:b,O=x", error);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->kind, AllowRule::Kind::kTlsDn);
  EXPECT_EQ(back->value, "CN=a:b,O=x");  // only the first colon separates
}

TEST(AllowRule, BadValuesSayWhy) {
  EXPECT_NE(rule_error("uid", "root").find("must be a number"), std::string::npos);
  EXPECT_NE(rule_error("uid", "-1").find("must be a number"), std::string::npos);
  EXPECT_NE(rule_error("uid", "4294967295").find("must be a number"), std::string::npos);
  EXPECT_NE(rule_error("address", "10.0.0.0/33").find("prefix length"), std::string::npos);
  EXPECT_NE(rule_error("address", "::1/129").find("0 to 128"), std::string::npos);
  EXPECT_NE(rule_error("address", "10.0.0/8").find("not an IPv4 or IPv6"), std::string::npos);
  EXPECT_NE(rule_error("address", "host.example").find("not an IPv4"), std::string::npos);
  EXPECT_NE(rule_error("psk-identity", "").find("must not be empty"), std::string::npos);
  EXPECT_NE(rule_error("user", "bob").find("unknown allow entry 'user'"), std::string::npos);
  std::string error;
  EXPECT_FALSE(parse_allow_rule("10.0.0.0/8", error));
}

TEST(Cidr, Ipv4PrefixesMatchOnlyTheirRange) {
  const AllowRule lo = rule("address", "127.0.0.0/8");
  EXPECT_TRUE(lo.matches(from("127.0.0.1")));
  EXPECT_TRUE(lo.matches(from("127.255.3.4")));
  EXPECT_FALSE(lo.matches(from("128.0.0.1")));
  EXPECT_FALSE(lo.matches(from("::1")));
  const AllowRule odd = rule("address", "192.168.4.0/22");  // .4.0 - .7.255
  EXPECT_TRUE(odd.matches(from("192.168.4.1")));
  EXPECT_TRUE(odd.matches(from("192.168.7.255")));
  EXPECT_FALSE(odd.matches(from("192.168.8.0")));
  EXPECT_FALSE(odd.matches(from("192.168.3.255")));
  const AllowRule host = rule("address", "10.0.0.5");
  EXPECT_TRUE(host.matches(from("10.0.0.5")));
  EXPECT_FALSE(host.matches(from("10.0.0.4")));
  const AllowRule all = rule("address", "0.0.0.0/0");
  EXPECT_TRUE(all.matches(from("8.8.8.8")));
  EXPECT_FALSE(all.matches(from("2001:db8::1")));
}

TEST(Cidr, Ipv6PrefixesAndMappedAddresses) {
  const AllowRule net = rule("address", "2001:db8:abcd::/49");
  EXPECT_TRUE(net.matches(from("2001:db8:abcd:7fff::1")));
  EXPECT_FALSE(net.matches(from("2001:db8:abcd:8000::1")));
  EXPECT_FALSE(net.matches(from("10.0.0.1")));
  const AllowRule lo6 = rule("address", "::1/128");
  EXPECT_TRUE(lo6.matches(from("::1")));
  EXPECT_FALSE(lo6.matches(from("::2")));
  // A v4 client seen through a dual-stack socket still matches a v4 range.
  EXPECT_TRUE(rule("address", "127.0.0.0/8").matches(from("::ffff:127.0.0.1")));
}

TEST(AllowList, AnyMatchingRuleAdmitsAndNoRulesAdmitEveryone) {
  ClientIdentity unix_1000;
  unix_1000.uid = 1000;
  ClientIdentity psk = from("127.0.0.1");
  psk.psk_identity = "backup1";
  ClientIdentity cert = from("192.0.2.1");
  cert.tls_dn = "CN=backup1,O=Example";

  EXPECT_TRUE(client_allowed({}, unix_1000));
  EXPECT_TRUE(client_allowed({}, ClientIdentity{}));

  const std::vector<std::string> allow = {"uid:1000", "psk-identity:backup1",
                                          "tls-dn:CN=backup1,O=Example"};
  EXPECT_TRUE(client_allowed(allow, unix_1000));
  EXPECT_TRUE(client_allowed(allow, psk));
  EXPECT_TRUE(client_allowed(allow, cert));

  ClientIdentity root;
  root.uid = 0;
  EXPECT_FALSE(client_allowed(allow, root));
  ClientIdentity other_psk = from("127.0.0.1");
  other_psk.psk_identity = "backup2";
  EXPECT_FALSE(client_allowed(allow, other_psk));
  ClientIdentity other_dn = from("192.0.2.1");
  other_dn.tls_dn = "CN=backup1,O=Other";
  EXPECT_FALSE(client_allowed(allow, other_dn));
  EXPECT_FALSE(client_allowed(allow, ClientIdentity{}));  // nothing known: refused
  // A rule that does not parse admits nobody.
  EXPECT_FALSE(client_allowed({"uid:x"}, unix_1000));
}

}  // namespace
}  // namespace config
