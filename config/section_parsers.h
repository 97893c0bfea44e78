// Parsers of the configuration's sections other than `nodes:` (node_parser.h): listen,
// control, log, server, exports, bitmaps, fleecing, tls. Each reads the YAML value of
// its section (written at `where`) into `out`, reporting every mistake to `diag`.
// Cross-section checks (export.node exists, ...) are in config_check.h.
// Threading: single-threaded; called by the loader.
#pragma once

#include <yaml-cpp/yaml.h>

#include "config/config.h"
#include "config/yaml_reader.h"

namespace config {

void parse_listen_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                          Config& out);
void parse_control_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out);
void parse_log_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                       Config& out);
void parse_server_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                          Config& out);
void parse_exports_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out);
void parse_bitmaps_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out);
void parse_fleecing_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                            Config& out);
void parse_metrics_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                           Config& out);  // metrics_section.cpp
void parse_tls_section(const YAML::Node& v, const SourceLocation& where, Diagnostics& diag,
                       Config& out);

}  // namespace config
