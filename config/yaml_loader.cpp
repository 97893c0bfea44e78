#include "config/yaml_loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "config/config_check.h"
#include "config/node_parser.h"
#include "config/section_parsers.h"
#include "config/yaml_reader.h"

namespace config {
namespace {

constexpr size_t kMaxConfigBytes = 16u << 20;

using SectionParser = void (*)(const YAML::Node&, const SourceLocation&, Diagnostics&, Config&);

struct Section {
  const char* key;
  SectionParser parse;
};

constexpr Section kSections[] = {
    {"listen", &parse_listen_section},     {"control", &parse_control_section},
    {"log", &parse_log_section},           {"server", &parse_server_section},
    {"exports", &parse_exports_section},   {"bitmaps", &parse_bitmaps_section},
    {"fleecing", &parse_fleecing_section}, {"tls", &parse_tls_section},
    {"metrics", &parse_metrics_section},
};

// Reads a whole file; on failure returns false with `error` set.
bool read_file(const std::string& path, std::string* text, std::string* error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    *error = "cannot read: it is a directory";
    return false;
  }
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::string("cannot read: ") + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    text->append(buf, static_cast<size_t>(n));
    if (text->size() > kMaxConfigBytes) {
      *error = "the file is too large for a configuration (more than 16 MiB)";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  return true;
}

// Parses the YAML text and fills `out`; every problem goes to `diag`.
void parse_document(const std::string& text, Diagnostics& diag, Config& out) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    SourceLocation at{diag.file(), e.mark.is_null() ? 0 : e.mark.line + 1};
    diag.error(at, "", "YAML syntax error: " + e.msg);
    return;
  }
  if (docs.empty() || (docs.size() == 1 && docs[0].IsNull())) {
    diag.error(SourceLocation{diag.file(), 0}, "",
               "the configuration is empty (expected a map with listen, nodes, exports, ...)");
    return;
  }
  if (docs.size() > 1) {
    diag.error(diag.where(docs[1]), "", "only one YAML document is allowed (found a second '---')");
  }
  const YAML::Node& root = docs[0];
  try {
    MapReader top(root, "", diag, SourceLocation{diag.file(), 1});
    if (!top.is_map()) return;
    for (const Section& s : kSections) {
      YAML::Node v = top.get(s.key);
      if (v.IsDefined()) s.parse(v, top.where_of(s.key), diag, out);
    }
    if (YAML::Node v = top.get("nodes"); v.IsDefined()) {
      NodeParser(diag).parse_nodes(v, top.where_of("nodes"), out);
    }
    top.finish();
  } catch (const YAML::Exception& e) {
    // Reading parsed nodes does not throw; if yaml-cpp ever does, keep it a located error.
    SourceLocation at{diag.file(), e.mark.is_null() ? 0 : e.mark.line + 1};
    diag.error(at, "", std::string("cannot read the configuration: ") + e.what());
  }
}

}  // namespace

LoadResult::LoadResult(Config config, std::vector<ConfigError> errors)
    : config_(std::move(config)), errors_(std::move(errors)) {
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return a.where.line < b.where.line;
  });
}

blockcore::Status LoadResult::status() const {
  if (errors_.empty()) return blockcore::Status::ok();
  std::string text;
  for (const ConfigError& e : errors_) text += (text.empty() ? "" : "\n") + e.to_string();
  return blockcore::Status::invalid(std::move(text));
}

Config& LoadResult::value() & {
  assert(is_ok());
  return config_;
}

const Config& LoadResult::value() const& {
  assert(is_ok());
  return config_;
}

Config&& LoadResult::value() && {
  assert(is_ok());
  return std::move(config_);
}

LoadResult load_config_string(const std::string& text, const std::string& name) {
  Diagnostics diag(name);
  Config config;
  config.path = name;
  parse_document(text, diag, config);
  std::vector<ConfigError> errors = diag.take();
  for (ConfigError& e : check_config(config)) errors.push_back(std::move(e));
  return LoadResult(std::move(config), std::move(errors));
}

LoadResult load_config_file(const std::string& path) {
  std::string text;
  std::string error;
  if (!read_file(path, &text, &error)) {
    Config config;
    config.path = path;
    return LoadResult(std::move(config), {ConfigError{SourceLocation{path, 0}, "", error}});
  }
  return load_config_string(text, path);
}

}  // namespace config
