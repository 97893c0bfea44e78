#include "config/node_drivers.h"

#include <cstdint>
#include <limits>
#include <optional>

#include "blockcore/filters/throttle_limits.h"
#include "config/node_parser.h"

namespace config {
namespace {

constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// driver: file — filename, cache: {direct}, direct, locking, bitmap-file.
void parse_file_options(MapReader& m, blockcore::NodeSpec& spec, NodeParser& nodes) {
  if (auto f = m.string("filename", /*required=*/true)) {
    if (f->empty()) {
      m.diag().error(m.where_of("filename"), m.path_of("filename"), "the file name is empty");
    }
    spec.file.filename = *f;
    nodes.note_filename(m, *f);
  }
  std::optional<bool> cache_direct;
  if (YAML::Node cache = m.get("cache"); cache.IsDefined()) {
    MapReader c(cache, m.path_of("cache"), m.diag(), m.where_of("cache"));
    cache_direct = c.boolean("direct");
    c.finish();
  }
  std::optional<bool> direct = m.boolean("direct");
  if (cache_direct && direct) {
    m.diag().error(m.where_of("direct"), m.path_of("direct"),
                   "give either cache.direct or direct, not both");
  }
  spec.file.direct = direct.value_or(cache_direct.value_or(false));
  if (auto l = m.choice("locking", {"auto", "on", "off"})) {
    spec.file.locking = *l == "on"    ? blockcore::LockMode::kOn
                        : *l == "off" ? blockcore::LockMode::kOff
                                      : blockcore::LockMode::kAuto;
  }
  nodes.parse_bitmap_file(m, spec);
}

// driver: raw — file (required), offset, size, bitmap-file.
void parse_raw_options(MapReader& m, blockcore::NodeSpec& spec, NodeParser& nodes) {
  if (auto o = m.size("offset", 0, kMaxOffset)) spec.raw.offset = *o;
  if (auto s = m.size("size", 0, kMaxOffset)) spec.raw.size = *s;
  spec.file_child = nodes.parse_child(m, "file", spec);
  nodes.parse_bitmap_file(m, spec);
}

// driver: qcow2 — file (required), backing (absent: from the image header; null: none;
// a node name or an inline node), data-file (a node name or an inline node; absent: the
// external data file the image header names, if any).
void parse_qcow2_options(MapReader& m, blockcore::NodeSpec& spec, NodeParser& nodes) {
  spec.file_child = nodes.parse_child(m, "file", spec);
  nodes.parse_backing(m, "backing", spec);
  spec.data_file_child =
      nodes.parse_child(m, "data-file", spec, NodeParser::ChildUse::kWritten, /*required=*/false);
}

// driver: throttle — file (required), limits: {bps-*, iops-*, their -max and -max-length,
// iops-size}. Byte rates and iops-size take size suffixes (10M = 10 MiB/s); operation
// rates and -max-length (seconds) are plain numbers. A missing limits map (or an empty
// one) throttles nothing until block-set-throttle sets limits.
void parse_throttle_options(MapReader& m, blockcore::NodeSpec& spec, NodeParser& nodes) {
  spec.file_child = nodes.parse_child(m, "file", spec);
  YAML::Node v = m.get("limits");
  if (!v.IsDefined() || v.IsNull()) return;
  MapReader l(v, m.path_of("limits"), m.diag(), m.where_of("limits"));
  if (!l.is_map()) return;
  blockcore::ThrottleLimits limits;
  bool ok = true;
  for (const blockcore::ThrottleKey& key : blockcore::throttle_keys()) {
    const uint64_t min = key.part == blockcore::ThrottleKeyPart::kMaxLength ? 1 : 0;
    std::optional<uint64_t> value =
        key.is_bytes() ? l.size(key.name, min, blockcore::kThrottleValueMax)
                       : l.number(key.name, min, blockcore::kThrottleValueMax);
    if (value) {
      key.field(limits) = *value;
    } else if (l.has(key.name)) {
      ok = false;  // reported by the reader
    }
  }
  l.finish();
  if (!ok) return;
  if (blockcore::Status s = blockcore::check_throttle_limits(limits); !s.is_ok()) {
    // The message starts with the key it is about: point at that key's line.
    const std::string first = s.message().substr(0, s.message().find(' '));
    const bool known = blockcore::find_throttle_key(first) != nullptr && l.has(first);
    m.diag().error(known ? l.where_of(first) : m.where_of("limits"),
                   known ? l.path_of(first) : m.path_of("limits"), s.message());
    return;
  }
  spec.throttle = limits;
}

}  // namespace

const std::vector<NodeDriverSyntax>& node_driver_syntaxes() {
  static const std::vector<NodeDriverSyntax> kDrivers = {
      {"file", &parse_file_options},
      {"raw", &parse_raw_options},
      {"qcow2", &parse_qcow2_options, /*own_bitmap_store=*/true},
      {"throttle", &parse_throttle_options},
  };
  return kDrivers;
}

const NodeDriverSyntax* find_node_driver_syntax(const std::string& name) {
  for (const NodeDriverSyntax& d : node_driver_syntaxes()) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

bool can_store_bitmaps(const blockcore::NodeSpec& spec) {
  if (spec.bitmap_file) return true;
  const NodeDriverSyntax* d = find_node_driver_syntax(spec.driver);
  return d == nullptr || d->own_bitmap_store;  // an unknown driver is reported elsewhere
}

std::string known_node_driver_names() {
  std::string names;
  for (const NodeDriverSyntax& d : node_driver_syntaxes()) {
    names += (names.empty() ? "" : ", ") + d.name;
  }
  return names;
}

std::vector<std::string> node_driver_keys(const NodeDriverSyntax& driver) {
  Diagnostics scratch("");
  NodeParser parser(scratch);
  MapReader m(YAML::Node(YAML::NodeType::Map), "", scratch);
  blockcore::NodeSpec spec;
  driver.parse(m, spec, parser);
  return {m.known_keys().begin(), m.known_keys().end()};
}

}  // namespace config
