// parse_listen_address / ListenAddress::to_string: the --listen forms, IPv6 brackets,
// Unix paths with colons, commas and spaces, and the rejections.
#include <gtest/gtest.h>

#include <string>

#include "config/config.h"

namespace config {
namespace {

TEST(ListenAddress, RoundTrips) {
  const char* forms[] = {
      "unix:/run/fleeced/nbd.sock",
      "unix:/tmp/a b,c:d.sock",  // colons, commas and spaces are part of the path
      "unix:relative.sock",
      "tcp:127.0.0.1:10809",
      "tcp:0.0.0.0:1",
      "tcp:localhost:65535",
      "tcp:nbd-server.example.com:10809",
      "tcp:[::1]:10809",
      "tcp:[::]:10809",
      "tcp:[fe80::1:2]:80",
  };
  for (const char* text : forms) {
    std::string error;
    auto a = parse_listen_address(text, &error);
    ASSERT_TRUE(a.has_value()) << text << ": " << error;
    EXPECT_EQ(a->to_string(), text);
    auto again = parse_listen_address(a->to_string(), &error);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->kind, a->kind);
    EXPECT_EQ(again->path, a->path);
    EXPECT_EQ(again->host, a->host);
    EXPECT_EQ(again->port, a->port);
  }
}

TEST(ListenAddress, Fields) {
  std::string error;
  auto v6 = parse_listen_address("tcp:[::1]:10809", &error);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->kind, ListenAddress::Kind::kTcp);
  EXPECT_EQ(v6->host, "::1");  // without brackets
  EXPECT_EQ(v6->port, 10809);

  auto unix_addr = parse_listen_address("unix:/tmp/x:1,2 3", &error);
  ASSERT_TRUE(unix_addr);
  EXPECT_EQ(unix_addr->kind, ListenAddress::Kind::kUnix);
  EXPECT_EQ(unix_addr->path, "/tmp/x:1,2 3");
}

struct Rejected {
  const char* text;
  const char* message;
};

TEST(ListenAddress, Rejections) {
  const Rejected cases[] = {
      {"", "expected unix:PATH or tcp:HOST:PORT"},
      {"udp:1.2.3.4:5", "expected unix:PATH or tcp:HOST:PORT"},
      {"/tmp/sock", "expected unix:PATH or tcp:HOST:PORT"},
      {"unix:", "path is empty"},
      {"tcp:", "expected HOST:PORT"},
      {"tcp:10809", "expected HOST:PORT"},
      {"tcp::10809", "host is missing"},
      {"tcp:127.0.0.1:", "port is missing"},
      {"tcp:127.0.0.1:0", "out of range (1-65535)"},
      {"tcp:127.0.0.1:65536", "out of range (1-65535)"},
      {"tcp:127.0.0.1:99999999999999999999", "out of range"},
      {"tcp:127.0.0.1:-1", "is not a number"},
      {"tcp:127.0.0.1:http", "is not a number"},
      {"tcp:1.2.3.256:80", "not a valid IPv4 address"},
      {"tcp:::1:10809", "in brackets"},
      {"tcp:[::1:10809", "missing ']'"},
      {"tcp:[::1]10809", "expected [IPV6]:PORT"},
      {"tcp:[::1]", "expected [IPV6]:PORT"},
      {"tcp:[1.2.3.4]:80", "not a valid IPv6 address"},
      {"tcp:bad host:80", "not a valid IPv4 address or host name"},
  };
  for (const Rejected& c : cases) {
    std::string error;
    EXPECT_FALSE(parse_listen_address(c.text, &error).has_value()) << c.text;
    EXPECT_NE(error.find(c.message), std::string::npos)
        << "'" << c.text << "' gave: " << error << " (wanted " << c.message << ")";
  }
  // A null error pointer is allowed.
  EXPECT_FALSE(parse_listen_address("nope", nullptr).has_value());
}

TEST(ListenAddress, UnixPathLimit) {
  std::string error;
  EXPECT_TRUE(parse_listen_address("unix:/" + std::string(106, 'a'), &error)) << error;
  EXPECT_FALSE(parse_listen_address("unix:/" + std::string(107, 'a'), &error));
  EXPECT_NE(error.find("too long"), std::string::npos);
}

TEST(SourceLocation, ToString) {
  EXPECT_EQ((SourceLocation{"a.yaml", 3}).to_string(), "a.yaml:3");
  EXPECT_EQ((SourceLocation{"a.yaml", 0}).to_string(), "a.yaml");
  EXPECT_EQ((ConfigError{{"a.yaml", 3}, "nodes[0].driver", "bad"}).to_string(),
            "a.yaml:3: nodes[0].driver: bad");
  EXPECT_EQ((ConfigError{{"a.yaml", 0}, "", "cannot open"}).to_string(), "a.yaml: cannot open");
}

TEST(LogLevel, Known) {
  for (const char* l : {"trace", "debug", "info", "warn", "error"}) EXPECT_TRUE(is_log_level(l));
  EXPECT_FALSE(is_log_level("warning"));
  EXPECT_FALSE(is_log_level("INFO"));
}

}  // namespace
}  // namespace config
