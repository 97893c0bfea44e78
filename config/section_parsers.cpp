#include "config/section_parsers.h"

#include <cstdint>
#include <limits>

#include "config/allow_rule.h"

namespace config {
namespace {

constexpr size_t kMaxNbdString = 4096;     // NBD_MAX_STRING_SIZE: export names, descriptions
constexpr size_t kMaxBitmapName = 1023;    // qcow2's limit on a bitmap name
constexpr uint64_t kMinGranularity = 512;  // QEMU's dirty-bitmap granularity range
constexpr uint64_t kMaxGranularity = uint64_t{1} << 31;

// Runs `item` for every entry of a list section, or reports that it is not a list.
template <class F>
void for_each_item(const YAML::Node& v, const SourceLocation& where, const char* section,
                   const char* what, Diagnostics& diag, F item) {
  if (!v.IsSequence()) {
    diag.error(where, section,
               std::string("expected a list of ") + what + ", got " + describe_yaml(v));
    return;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    SourceLocation at = diag.where(v[i]);
    if (at.line == 0) at = where;
    item(v[i], index_path(section, i), at);
  }
}

void check_length(MapReader& m, const std::string& key, const std::string& value, size_t max,
                  bool allow_empty) {
  if (!allow_empty && value.empty()) {
    m.diag().error(m.where_of(key), m.path_of(key), "must not be empty");
  } else if (value.size() > max) {
    m.diag().error(m.where_of(key), m.path_of(key),
                   "is too long (" + std::to_string(value.size()) + " bytes, at most " +
                       std::to_string(max) + ")");
  }
}

// `allow:` — a list of one-key maps ({ tls-dn: DN }, { psk-identity: ID }, { uid: N },
// { address: CIDR }), stored as canonical rule strings.
void parse_allow_list(MapReader& m, std::vector<std::string>& out) {
  YAML::Node v = m.get("allow");
  if (!v.IsDefined()) return;
  const std::string path = m.path_of("allow");
  Diagnostics& diag = m.diag();
  if (!v.IsSequence()) {
    diag.error(m.where_of("allow"), path,
               "expected a list like [{ psk-identity: NAME }, { uid: 1000 }], got " +
                   describe_yaml(v));
    return;
  }
  if (v.size() == 0) {  // stored empty, it would mean "everyone": say so instead
    diag.error(m.where_of("allow"), path,
               "is empty; leave 'allow' out to admit every client, or list who may connect");
    return;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string item_path = index_path(path, i);
    SourceLocation at = diag.where(v[i]);
    if (at.line == 0) at = m.where_of("allow");
    if (!v[i].IsMap() || v[i].size() != 1) {
      diag.error(at, item_path,
                 "expected one of { tls-dn: DN }, { psk-identity: ID }, { uid: N }, "
                 "{ address: CIDR }, got " +
                     describe_yaml(v[i]));
      continue;
    }
    const auto entry = *v[i].begin();
    if (!entry.first.IsScalar() || !entry.second.IsScalar()) {
      diag.error(at, item_path, "allow entry key and value must be plain strings");
      continue;
    }
    std::string error;
    auto rule = make_allow_rule(entry.first.Scalar(), entry.second.Scalar(), error);
    if (!rule) {
      diag.error(at, item_path, error);
      continue;
    }
    out.push_back(rule->canonical());
  }
}

}  // namespace

void parse_listen_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                          Config& out) {
  for_each_item(
      v, where, "listen", "addresses", diag,
      [&](const YAML::Node& n, const std::string& path, const SourceLocation& at) {
        if (n.IsScalar()) {
          diag.error(at, path,
                     "expected a map like 'unix: PATH' or 'tcp: HOST:PORT' (with a space after the "
                     "colon), got " +
                         describe_yaml(n));
          return;
        }
        MapReader m(n, path, diag, at);
        const bool has_unix = m.has("unix");
        const bool has_tcp = m.has("tcp");
        m.finish();
        if (!m.is_map()) return;
        if (has_unix == has_tcp) {
          diag.error(m.where(), path,
                     has_unix ? "give either unix or tcp, not both"
                              : "expected 'unix: PATH' or 'tcp: HOST:PORT'");
          return;
        }
        const std::string key = has_unix ? "unix" : "tcp";
        YAML::Node value = m.get(key);
        if (!value.IsScalar()) {
          diag.error(m.where_of(key), m.path_of(key),
                     std::string(has_unix ? "expected a socket path" : "expected HOST:PORT") +
                         ", got " + describe_yaml(value) +
                         (has_tcp ? " (quote IPv6 addresses: tcp: \"[::1]:10809\")" : ""));
          return;
        }
        std::string why;
        std::optional<ListenAddress> a = has_unix ? parse_unix_address(value.Scalar(), &why)
                                                  : parse_tcp_address(value.Scalar(), &why);
        if (!a) {
          diag.error(m.where_of(key), m.path_of(key), why);
          return;
        }
        a->where = m.where_of(key);
        out.listen.push_back(*a);
      });
}

void parse_control_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out) {
  MapReader m(v, "control", diag, where);
  if (auto path = m.string("unix", /*required=*/true)) {
    std::string why;
    if (parse_unix_address(*path, &why)) {
      out.control.unix_path = *path;
      out.control.where = m.where_of("unix");
    } else {
      diag.error(m.where_of("unix"), m.path_of("unix"), why);
    }
  }
  m.finish();
}

void parse_log_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                       Config& out) {
  MapReader m(v, "log", diag, where);
  if (auto level = m.choice("level", {std::begin(kLogLevels), std::end(kLogLevels)})) {
    out.log.level = *level;
  }
  out.log.where = m.where();
  m.finish();
}

void parse_server_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                          Config& out) {
  MapReader m(v, "server", diag, where);
  ServerConfig& s = out.server;
  if (auto n = m.number("io-threads", 0, 256)) s.io_threads = static_cast<unsigned>(*n);
  if (auto n = m.number("blocking-threads", 1, 1024)) {
    s.blocking_threads = static_cast<unsigned>(*n);
  }
  if (auto n = m.number("max-connections", 1, 1000000)) {
    s.max_connections = static_cast<unsigned>(*n);
  }
  if (auto n = m.number("handshake-timeout", 1, 3600)) {
    s.handshake_timeout_s = static_cast<unsigned>(*n);
  }
  if (auto n = m.number("max-in-flight", 1, 1024)) s.max_in_flight = static_cast<unsigned>(*n);
  if (auto mode = m.choice("zero-copy", {"auto", "always", "never"})) {
    s.zero_copy = *parse_zero_copy(*mode);
  }
  m.finish();
}

void parse_exports_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out) {
  for_each_item(v, where, "exports", "exports", diag,
                [&](const YAML::Node& n, const std::string& path, const SourceLocation& at) {
                  MapReader m(n, path, diag, at);
                  if (!m.is_map()) return;
                  ExportConfig e;
                  e.where = m.where();
                  if (auto name = m.string("name", /*required=*/true)) {
                    check_length(m, "name", *name, kMaxNbdString, /*allow_empty=*/false);
                    e.name = *name;
                  }
                  if (auto node = m.string("node", /*required=*/true)) {
                    e.node = *node;
                    e.node_where = m.where_of("node");
                  }
                  if (auto d = m.string("description")) {
                    check_length(m, "description", *d, kMaxNbdString, /*allow_empty=*/true);
                    e.description = *d;
                  }
                  if (auto w = m.boolean("writable")) e.writable = *w;
                  if (auto b = m.string_list("bitmaps")) e.bitmaps = *b;
                  if (auto a = m.boolean("allocation-depth")) e.allocation_depth = *a;
                  parse_allow_list(m, e.allow);
                  m.finish();
                  out.exports.push_back(std::move(e));
                });
}

void parse_bitmaps_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out) {
  for_each_item(v, where, "bitmaps", "bitmaps", diag,
                [&](const YAML::Node& n, const std::string& path, const SourceLocation& at) {
                  MapReader m(n, path, diag, at);
                  if (!m.is_map()) return;
                  BitmapConfig b;
                  b.where = m.where();
                  if (auto node = m.string("node", /*required=*/true)) {
                    b.node = *node;
                    b.node_where = m.where_of("node");
                  }
                  if (auto name = m.string("name", /*required=*/true)) {
                    check_length(m, "name", *name, kMaxBitmapName, /*allow_empty=*/false);
                    b.name = *name;
                  }
                  if (auto p = m.boolean("persistent")) b.persistent = *p;
                  if (auto d = m.boolean("disabled")) b.disabled = *d;
                  if (auto g = m.size("granularity", kMinGranularity, kMaxGranularity)) {
                    if ((*g & (*g - 1)) != 0) {
                      diag.error(m.where_of("granularity"), m.path_of("granularity"),
                                 std::to_string(*g) + " is not a power of two");
                    } else {
                      b.granularity = *g;
                    }
                  }
                  m.finish();
                  out.bitmaps.push_back(std::move(b));
                });
}

void parse_fleecing_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                            Config& out) {
  MapReader m(v, "fleecing", diag, where);
  if (!m.is_map()) return;
  FleecingConfig f;
  f.where = m.where();
  if (auto dir = m.string("overlay-dir", /*required=*/true)) {
    check_length(m, "overlay-dir", *dir, 4096, /*allow_empty=*/false);
    f.overlay_dir = *dir;
  }
  m.finish();
  out.fleecing = std::move(f);
}

void parse_tls_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                       Config& out) {
  MapReader m(v, "tls", diag, where);
  if (!m.is_map()) return;
  TlsConfig t;
  t.where = m.where();
  if (auto d = m.string("x509-dir")) {
    check_length(m, "x509-dir", *d, 4096, /*allow_empty=*/false);
    t.x509_dir = *d;
    t.x509_where = m.where_of("x509-dir");
  }
  if (auto p = m.string("psk-file")) {
    check_length(m, "psk-file", *p, 4096, /*allow_empty=*/false);
    t.psk_file = *p;
    t.psk_where = m.where_of("psk-file");
  }
  if (auto b = m.boolean("verify-peer")) t.verify_peer = *b;
  if (auto b = m.boolean("required")) t.required = *b;
  m.finish();
  out.tls = std::move(t);
}

}  // namespace config
