// Strict, located reading of yaml-cpp nodes: typed conversions that never throw and
// record every mistake as a ConfigError with file:line and an element path such as
// `nodes[2].file.filename`, so a whole file's problems are reported in one pass.
// MapReader reads one mapping, rejects duplicate keys, and reports the keys nobody asked
// for as unknown. Used only by the config loader.
// Threading: single-threaded; one Diagnostics per load.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.h"

namespace config {

// Collects the errors of one load.
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  const std::string& file() const { return file_; }
  // Location of a parsed node (line 0 when it has none, e.g. a missing key).
  SourceLocation where(const YAML::Node& node) const;
  void error(const SourceLocation& where, std::string path, std::string message);
  void error(const YAML::Node& at, std::string path, std::string message) {
    error(where(at), std::move(path), std::move(message));
  }
  size_t count() const { return errors_.size(); }
  std::vector<ConfigError> take() { return std::move(errors_); }

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
};

// "a map", "a list", "null", "the string 'x'": what a node is, for messages.
std::string describe_yaml(const YAML::Node& node);
// Path helpers: child_path("nodes[1]", "file") == "nodes[1].file", index_path("nodes", 2)
// == "nodes[2]".
std::string child_path(const std::string& parent, const std::string& key);
std::string index_path(const std::string& parent, size_t index);

// Parses a byte size: decimal digits with an optional binary suffix B, K, M, G, T, P or E
// (any case; 1K = 1024). Returns nullopt with `error` set on a bad value or overflow.
std::optional<uint64_t> parse_size(const std::string& text, std::string* error);

// Conversions of one value node; each reports its own error (at `where`, or the node's
// own line when `where` is unknown) and returns nullopt on a mistake.
struct ValueReader {
  Diagnostics& diag;
  std::optional<std::string> string(const YAML::Node& n, const std::string& path,
                                    const SourceLocation& where) const;
  std::optional<bool> boolean(const YAML::Node& n, const std::string& path,
                              const SourceLocation& where) const;
  std::optional<uint64_t> number(const YAML::Node& n, const std::string& path,
                                 const SourceLocation& where, uint64_t min, uint64_t max) const;
  std::optional<uint64_t> size(const YAML::Node& n, const std::string& path,
                               const SourceLocation& where, uint64_t min, uint64_t max) const;
  std::optional<std::vector<std::string>> string_list(const YAML::Node& n, const std::string& path,
                                                      const SourceLocation& where) const;
};

// Reads one YAML mapping at `path`. Every getter marks its key as known; finish() reports
// the keys that were never asked for.
class MapReader {
 public:
  // Reports an error (and then behaves as an empty map) unless `node` is a map.
  MapReader(const YAML::Node& node, std::string path, Diagnostics& diag,
            const SourceLocation& where = {});

  bool is_map() const { return is_map_; }
  const std::string& path() const { return path_; }
  // The location of the map itself (its first key).
  const SourceLocation& where() const { return where_; }
  std::string path_of(const std::string& key) const { return child_path(path_, key); }
  // Where `key` was written (the map's location when it is absent).
  SourceLocation where_of(const std::string& key) const;
  Diagnostics& diag() const { return diag_; }

  // True if `key` is present (marks it known).
  bool has(const std::string& key);
  // The raw value of `key` (an undefined node when absent); marks it known. With
  // `required`, reports "missing required key" when absent.
  YAML::Node get(const std::string& key, bool required = false);

  std::optional<std::string> string(const std::string& key, bool required = false);
  std::optional<bool> boolean(const std::string& key);
  std::optional<uint64_t> number(const std::string& key, uint64_t min, uint64_t max);
  std::optional<uint64_t> size(const std::string& key, uint64_t min, uint64_t max);
  // A value that must be one of `choices`.
  std::optional<std::string> choice(const std::string& key,
                                    const std::vector<std::string>& choices);
  std::optional<std::vector<std::string>> string_list(const std::string& key);

  // Marks `key` known without reading it (keys another part reads).
  void allow(const std::string& key) { known_.insert(key); }
  // The keys asked for so far.
  const std::set<std::string>& known_keys() const { return known_; }
  // Reports every present key that no getter asked for.
  void finish();

 private:
  struct Entry {
    YAML::Node key;
    YAML::Node value;
  };

  YAML::Node node_;
  std::string path_;
  Diagnostics& diag_;
  SourceLocation where_;
  bool is_map_ = false;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> order_;  // keys in the order written
  std::set<std::string> known_;
};

}  // namespace config
