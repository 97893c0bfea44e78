// The `metrics:` section: where the Prometheus endpoint listens —
//   metrics: { listen: HOST:PORT }   (a local TCP address; IPv6 as "[::1]:9187")
//   metrics: { unix: PATH }
#include <optional>
#include <string>

#include "config/section_parsers.h"

namespace config {

void parse_metrics_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out) {
  MapReader m(v, "metrics", diag, where);
  if (!m.is_map()) return;
  const bool has_listen = m.has("listen");
  const bool has_unix = m.has("unix");
  if (has_listen == has_unix) {
    diag.error(m.where(), "metrics",
               has_listen ? "give either listen or unix, not both"
                          : "expected 'listen: HOST:PORT' or 'unix: PATH'");
    m.finish();
    return;
  }
  const std::string key = has_listen ? "listen" : "unix";
  std::optional<std::string> value = m.string(key, /*required=*/true);
  m.finish();
  if (!value) return;
  std::string why;
  std::optional<ListenAddress> a =
      has_listen ? parse_tcp_address(*value, &why) : parse_unix_address(*value, &why);
  if (!a) {
    diag.error(m.where_of(key), m.path_of(key), why);
    return;
  }
  a->where = m.where_of(key);
  out.metrics = MetricsConfig{*a, m.where()};
}

}  // namespace config
