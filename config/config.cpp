#include "config/config.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <cctype>
#include <cstring>

namespace config {
namespace {

bool set_error(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

// Port numbers are plain decimal digits, 1-65535.
bool parse_port(const std::string& text, uint16_t* port, std::string* error) {
  if (text.empty()) return set_error(error, "the port is missing (expected HOST:PORT)");
  unsigned long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return set_error(error, "port '" + text + "' is not a number");
    value = value * 10 + static_cast<unsigned long>(c - '0');
    if (value > 65535) break;
  }
  if (value == 0 || value > 65535) {
    return set_error(error, "port " + text + " is out of range (1-65535)");
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

bool looks_like_ipv4(const std::string& host) {
  for (char c : host) {
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.')) return false;
  }
  return true;
}

bool is_hostname(const std::string& host) {
  if (host.size() > 253) return false;
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) {
      return false;
    }
  }
  return host.front() != '-' && host.front() != '.';
}

}  // namespace

std::string SourceLocation::to_string() const {
  std::string s = file.empty() ? std::string("<config>") : file;
  if (line > 0) s += ":" + std::to_string(line);
  return s;
}

std::string ConfigError::to_string() const {
  std::string s;
  if (!where.file.empty() || where.line > 0) s = where.to_string() + ": ";
  if (!path.empty()) s += path + ": ";
  s += message;
  return s;
}

bool is_log_level(const std::string& level) {
  for (const char* l : kLogLevels) {
    if (level == l) return true;
  }
  return false;
}

std::string ListenAddress::to_string() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  const bool v6 = host.find(':') != std::string::npos;
  return "tcp:" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<ListenAddress> parse_unix_address(const std::string& path, std::string* error) {
  if (path.empty()) {
    set_error(error, "the Unix socket path is empty");
    return std::nullopt;
  }
  if (path.find('\0') != std::string::npos) {
    set_error(error, "the Unix socket path contains a NUL byte");
    return std::nullopt;
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    set_error(error, "the Unix socket path is too long (" + std::to_string(path.size()) +
                         " bytes, at most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                         ")");
    return std::nullopt;
  }
  ListenAddress a;
  a.kind = ListenAddress::Kind::kUnix;
  a.path = path;
  return a;
}

std::optional<ListenAddress> parse_tcp_address(const std::string& host_port, std::string* error) {
  std::string host;
  std::string port_text;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string::npos) {
      set_error(error, "'" + host_port + "': missing ']' after the IPv6 address");
      return std::nullopt;
    }
    host = host_port.substr(1, close - 1);
    if (close + 1 >= host_port.size() || host_port[close + 1] != ':') {
      set_error(error, "'" + host_port + "': expected [IPV6]:PORT");
      return std::nullopt;
    }
    port_text = host_port.substr(close + 2);
    in6_addr a6;
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
      set_error(error, "'" + host + "' is not a valid IPv6 address");
      return std::nullopt;
    }
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string::npos) {
      set_error(error, "'" + host_port + "': expected HOST:PORT");
      return std::nullopt;
    }
    host = host_port.substr(0, colon);
    port_text = host_port.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      set_error(error, "'" + host_port + "': write IPv6 addresses in brackets, like [::1]:10809");
      return std::nullopt;
    }
    if (host.empty()) {
      set_error(error,
                "'" + host_port + "': the host is missing (use 0.0.0.0 or [::] for every address)");
      return std::nullopt;
    }
    in_addr a4;
    if (looks_like_ipv4(host) ? inet_pton(AF_INET, host.c_str(), &a4) != 1 : !is_hostname(host)) {
      set_error(error, "'" + host + "' is not a valid IPv4 address or host name");
      return std::nullopt;
    }
  }
  ListenAddress a;
  a.kind = ListenAddress::Kind::kTcp;
  a.host = host;
  if (!parse_port(port_text, &a.port, error)) return std::nullopt;
  return a;
}

std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string* error) {
  if (text.rfind("unix:", 0) == 0) return parse_unix_address(text.substr(5), error);
  if (text.rfind("tcp:", 0) == 0) return parse_tcp_address(text.substr(4), error);
  set_error(error, "'" + text + "': expected unix:PATH or tcp:HOST:PORT");
  return std::nullopt;
}

std::optional<ZeroCopy> parse_zero_copy(std::string_view text) {
  if (text == "auto") return ZeroCopy::kAuto;
  if (text == "always") return ZeroCopy::kAlways;
  if (text == "never") return ZeroCopy::kNever;
  return std::nullopt;
}

}  // namespace config
