// Renders a StatsSnapshot in the Prometheus text exposition format (version 0.0.4):
// one HELP and TYPE line per metric family, then its samples, labels escaped as the
// format requires. The metric names are documented in docs/metrics.md.
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "server/metrics/stats_snapshot.h"

namespace server::metrics {

inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string render_prometheus(const StatsSnapshot& s);

// A label value with backslash, double quote and newline escaped.
std::string escape_label_value(std::string_view v);

}  // namespace server::metrics
