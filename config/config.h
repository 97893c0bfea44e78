// Config: the typed form of fleeced's YAML configuration (DESIGN.md "Configuration").
// yaml_loader fills it, with the file:line of every element kept for later errors.
// Threading: plain values, built once per (re)load.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/node_spec.h"

namespace config {

// Where an element was written, for messages like "fleeced.yaml:12: ...".
struct SourceLocation {
  std::string file;
  int line = 0;  // 1-based; 0 = unknown
  std::string to_string() const;
};

// One listening address: `unix: PATH` or `tcp: HOST:PORT` (IPv6 as [::1]:10809).
struct ListenAddress {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string path;   // kUnix
  std::string host;   // kTcp, without brackets
  uint16_t port = 0;  // kTcp
  SourceLocation where;
  std::string to_string() const;  // "unix:PATH" / "tcp:HOST:PORT"
};

// Parses the command-line form `unix:PATH` or `tcp:HOST:PORT` (`tcp:[::1]:10809` for
// IPv6); empty on error with `error` (if given) set to a one-line reason.
std::optional<ListenAddress> parse_listen_address(const std::string& text, std::string* error);
// The value parts on their own, as written in YAML (`unix: PATH`, `tcp: HOST:PORT`).
std::optional<ListenAddress> parse_unix_address(const std::string& path, std::string* error);
std::optional<ListenAddress> parse_tcp_address(const std::string& host_port, std::string* error);

// One mistake in a configuration: where, which element (a path like
// `nodes[2].file.filename`), and what is wrong.
struct ConfigError {
  SourceLocation where;
  std::string path;  // empty for whole-file problems (syntax, unreadable file)
  std::string message;
  // "FILE:LINE: PATH: MESSAGE" (parts that are unknown are left out).
  std::string to_string() const;
};

struct ControlConfig {
  std::string unix_path;  // empty = no control socket
  SourceLocation where;
};

struct LogConfig {
  std::string level = "info";  // trace|debug|info|warn|error
  SourceLocation where;
};

// The log levels `log.level` and `--log-level` accept, least to most severe.
inline constexpr const char* kLogLevels[] = {"trace", "debug", "info", "warn", "error"};
bool is_log_level(const std::string& level);

struct ExportConfig {
  std::string name;
  std::string node;
  SourceLocation node_where;  // where `node:` was written
  std::string description;
  bool writable = false;
  std::vector<std::string> bitmaps;
  bool allocation_depth = false;
  // Who may see and open it: canonical rules (config/allow_rule.h), empty = everyone.
  std::vector<std::string> allow;
  SourceLocation where;
};

struct BitmapConfig {
  std::string node;
  SourceLocation node_where;  // where `node:` was written
  std::string name;
  bool persistent = true;
  uint64_t granularity = 65536;
  bool disabled = false;  // created not recording (QEMU's block-dirty-bitmap-add `disabled`)
  SourceLocation where;
};

struct FleecingConfig {
  std::string overlay_dir;
  SourceLocation where;
};

// NBD over TLS (STARTTLS). x509_dir holds QEMU's layout: server-cert.pem and
// server-key.pem, and ca-cert.pem (needed to verify client certificates).
struct TlsConfig {
  std::string x509_dir;
  std::string psk_file;      // identity:hexkey lines (config/psk_file.h)
  bool verify_peer = false;  // demand a client certificate signed by ca-cert.pem
  bool required = false;     // refuse every option but STARTTLS/ABORT before TLS
  SourceLocation where;
  SourceLocation x509_where;  // where x509-dir / psk-file were written
  SourceLocation psk_where;
};

// The Prometheus endpoint (`metrics:`): GET /metrics on a Unix socket or TCP address.
struct MetricsConfig {
  ListenAddress address;
  SourceLocation where;
};

// Whether large READ and WRITE data (128 KiB to 1 MiB) between a plain socket and a
// buffered raw file goes through a pipe instead of fleeced's memory. READ replies of a
// fully allocated file are spliced from the page cache (no copy in fleeced); WRITE
// payloads are spliced in from the socket and copied once, into the page cache.
// `auto` does both, except that it copies reads for a client on this host whose
// connection is the only busy one (the copy leaves the data warm in the CPU cache for
// the client, which is then faster). `never` copies everything.
enum class ZeroCopy { kAuto, kAlways, kNever };

// Tunables of the NBD server and the runtime.
struct ServerConfig {
  unsigned io_threads = 0;        // 0 = one per core
  unsigned blocking_threads = 4;  // disk I/O pool
  unsigned max_connections = 256;
  unsigned handshake_timeout_s = 10;
  unsigned max_in_flight = 16;  // requests in flight per connection
  ZeroCopy zero_copy = ZeroCopy::kAuto;
};

// "auto" / "always" / "never"; nullopt for anything else.
std::optional<ZeroCopy> parse_zero_copy(std::string_view text);

struct Config {
  std::string path;  // the file it was loaded from ("" for built-in/ad-hoc)
  std::vector<ListenAddress> listen;
  ControlConfig control;
  LogConfig log;
  ServerConfig server;
  std::vector<blockcore::NodeSpec> nodes;
  std::vector<SourceLocation> node_where;  // parallel to nodes (the entry's first line)
  std::vector<ExportConfig> exports;
  std::vector<BitmapConfig> bitmaps;
  std::optional<FleecingConfig> fleecing;
  std::optional<MetricsConfig> metrics;
  std::optional<TlsConfig> tls;
};

}  // namespace config
