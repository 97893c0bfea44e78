// Loading fleeced's YAML configuration (DESIGN.md "Configuration (YAML)") into a
// config::Config. Every mistake — YAML syntax, unknown keys, wrong types, values out of
// range, missing required keys, duplicate names, dangling references — becomes a
// ConfigError with file:line and an element path (`nodes[2].file.filename`); all of
// them are collected in one pass so `fleeced --check-config` can print them together.
// yaml-cpp exceptions never escape. docs/configuration.md describes every key.
// Threading: the functions are reentrant; a LoadResult is a plain value.
#pragma once

#include <string>
#include <vector>

#include "blockcore/base/status.h"
#include "config/config.h"

namespace config {

// A loaded configuration or the list of what is wrong with it.
class LoadResult {
 public:
  LoadResult(Config config, std::vector<ConfigError> errors);

  bool is_ok() const { return errors_.empty(); }
  explicit operator bool() const { return is_ok(); }
  // Every error, sorted by line.
  const std::vector<ConfigError>& errors() const { return errors_; }
  // OK, or EINVAL whose message is every error on its own line ("FILE:LINE: PATH: ...").
  blockcore::Status status() const;

  // REQUIRES: is_ok()
  Config& value() &;
  const Config& value() const&;
  Config&& value() &&;
  // What could be read, even when there are errors (for diagnostics only).
  const Config& partial() const { return config_; }

 private:
  Config config_;
  std::vector<ConfigError> errors_;
};

// Reads and checks the file at `path`; config.path is set to `path`.
LoadResult load_config_file(const std::string& path);
// Checks `text` as if it were a file called `name` (used in messages and as
// config.path): the embedded demo configuration and tests.
LoadResult load_config_string(const std::string& text, const std::string& name = "<string>");

}  // namespace config
