#include "config/yaml_reader.h"

#include <algorithm>
#include <limits>

namespace config {
namespace {

constexpr const char* kIntTag = "tag:yaml.org,2002:int";
constexpr const char* kBoolTag = "tag:yaml.org,2002:bool";

bool is_plain(const YAML::Node& n) { return n.Tag() == "?"; }

// Decimal digits only; nullopt on anything else or on overflow (`overflow` set).
std::optional<uint64_t> parse_digits(const std::string& s, bool* overflow) {
  *overflow = false;
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      *overflow = true;
      return std::nullopt;
    }
    v = v * 10 + d;
  }
  return v;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string range_text(uint64_t min, uint64_t max) {
  return std::to_string(min) + "-" + std::to_string(max);
}

}  // namespace

SourceLocation Diagnostics::where(const YAML::Node& node) const {
  SourceLocation w{file_, 0};
  if (node.IsDefined() && !node.IsNull() && node.Mark().line >= 0) w.line = node.Mark().line + 1;
  return w;
}

void Diagnostics::error(const SourceLocation& where, std::string path, std::string message) {
  errors_.push_back(ConfigError{where, std::move(path), std::move(message)});
}

std::string describe_yaml(const YAML::Node& n) {
  if (!n.IsDefined()) return "nothing";
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "null (no value)";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      return is_plain(n) ? "'" + n.Scalar() + "'" : "the quoted string \"" + n.Scalar() + "\"";
    default:
      return "nothing";
  }
}

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string index_path(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

std::optional<uint64_t> parse_size(const std::string& text, std::string* error) {
  std::string digits = text;
  unsigned shift = 0;
  if (!digits.empty() && !(digits.back() >= '0' && digits.back() <= '9')) {
    static constexpr char kSuffixes[] = "BKMGTPE";
    const char s = static_cast<char>(std::toupper(static_cast<unsigned char>(digits.back())));
    const char* p = std::find(kSuffixes, kSuffixes + 7, s);
    if (p == kSuffixes + 7) {
      if (error)
        *error = "'" + text + "' is not a size (a number, optionally with B, K, M, G, T, P or E)";
      return std::nullopt;
    }
    shift = static_cast<unsigned>(p - kSuffixes) * 10;
    digits.pop_back();
  }
  bool overflow = false;
  std::optional<uint64_t> v = parse_digits(digits, &overflow);
  if (!v && !overflow) {
    if (error) {
      *error =
          !digits.empty() && digits[0] == '-'
              ? "'" + text + "' must not be negative"
              : "'" + text + "' is not a size (a number, optionally with B, K, M, G, T, P or E)";
    }
    return std::nullopt;
  }
  if (overflow || (shift > 0 && *v > (std::numeric_limits<uint64_t>::max() >> shift))) {
    if (error) *error = "'" + text + "' is too large";
    return std::nullopt;
  }
  return *v << shift;
}

std::optional<std::string> ValueReader::string(const YAML::Node& n, const std::string& path,
                                               const SourceLocation& where) const {
  if (n.IsScalar()) return n.Scalar();
  diag.error(where.line ? where : diag.where(n), path,
             "expected a string, got " + describe_yaml(n));
  return std::nullopt;
}

std::optional<bool> ValueReader::boolean(const YAML::Node& n, const std::string& path,
                                         const SourceLocation& where) const {
  if (n.IsScalar() && (is_plain(n) || n.Tag() == kBoolTag)) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  diag.error(where.line ? where : diag.where(n), path,
             "expected true or false, got " + describe_yaml(n));
  return std::nullopt;
}

std::optional<uint64_t> ValueReader::number(const YAML::Node& n, const std::string& path,
                                            const SourceLocation& where, uint64_t min,
                                            uint64_t max) const {
  const SourceLocation& at = where.line ? where : diag.where(n);
  if (!n.IsScalar() || !(is_plain(n) || n.Tag() == kIntTag)) {
    diag.error(at, path, "expected a number, got " + describe_yaml(n));
    return std::nullopt;
  }
  bool overflow = false;
  std::optional<uint64_t> v = parse_digits(n.Scalar(), &overflow);
  if (!v) {
    const std::string& s = n.Scalar();
    if (overflow) {
      diag.error(at, path, s + " is too large (expected " + range_text(min, max) + ")");
    } else if (s.size() > 1 && s[0] == '-' && parse_digits(s.substr(1), &overflow)) {
      diag.error(at, path, s + " must not be negative (expected " + range_text(min, max) + ")");
    } else {
      diag.error(at, path, "expected a number, got " + describe_yaml(n));
    }
    return std::nullopt;
  }
  if (*v < min || *v > max) {
    diag.error(at, path, n.Scalar() + " is out of range (" + range_text(min, max) + ")");
    return std::nullopt;
  }
  return v;
}

std::optional<uint64_t> ValueReader::size(const YAML::Node& n, const std::string& path,
                                          const SourceLocation& where, uint64_t min,
                                          uint64_t max) const {
  const SourceLocation& at = where.line ? where : diag.where(n);
  if (!n.IsScalar()) {
    diag.error(at, path, "expected a size (like 65536 or 64K), got " + describe_yaml(n));
    return std::nullopt;
  }
  std::string why;
  std::optional<uint64_t> v = parse_size(n.Scalar(), &why);
  if (!v) {
    diag.error(at, path, why);
    return std::nullopt;
  }
  if (*v < min || *v > max) {
    diag.error(at, path, n.Scalar() + " is out of range (" + range_text(min, max) + " bytes)");
    return std::nullopt;
  }
  return v;
}

std::optional<std::vector<std::string>> ValueReader::string_list(
    const YAML::Node& n, const std::string& path, const SourceLocation& where) const {
  if (!n.IsSequence()) {
    diag.error(where.line ? where : diag.where(n), path,
               "expected a list of strings, got " + describe_yaml(n));
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (size_t i = 0; i < n.size(); ++i) {
    std::optional<std::string> s = string(n[i], index_path(path, i), diag.where(n[i]));
    if (s) {
      out.push_back(*s);
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

MapReader::MapReader(const YAML::Node& node, std::string path, Diagnostics& diag,
                     const SourceLocation& where)
    : node_(node), path_(std::move(path)), diag_(diag), where_(diag.where(node)) {
  if (where_.line == 0) where_ = where.line ? where : SourceLocation{diag.file(), 0};
  if (!node.IsMap()) {
    diag_.error(where_, path_, "expected a map, got " + describe_yaml(node));
    return;
  }
  is_map_ = true;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: the iterator yields a temporary pair, references to it would dangle.
    const YAML::Node k = it->first;
    const YAML::Node value = it->second;
    if (!k.IsScalar()) {
      diag_.error(diag_.where(k).line ? diag_.where(k) : where_, path_,
                  "a key must be a plain string, got " + describe_yaml(k));
      continue;
    }
    auto [pos, inserted] = entries_.emplace(k.Scalar(), Entry{k, value});
    if (!inserted) {
      diag_.error(diag_.where(k), path_,
                  "duplicate key '" + k.Scalar() + "' (first at line " +
                      std::to_string(diag_.where(pos->second.key).line) + ")");
      continue;
    }
    order_.push_back(k.Scalar());
  }
}

SourceLocation MapReader::where_of(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return where_;
  SourceLocation w = diag_.where(it->second.key);
  return w.line ? w : where_;
}

bool MapReader::has(const std::string& key) {
  known_.insert(key);
  return entries_.count(key) != 0;
}

YAML::Node MapReader::get(const std::string& key, bool required) {
  known_.insert(key);
  auto it = entries_.find(key);
  if (it != entries_.end()) return it->second.value;
  if (required && is_map_) diag_.error(where_, path_, "missing required key '" + key + "'");
  return YAML::Node(YAML::NodeType::Undefined);
}

std::optional<std::string> MapReader::string(const std::string& key, bool required) {
  YAML::Node v = get(key, required);
  if (!v.IsDefined()) return std::nullopt;
  return ValueReader{diag_}.string(v, path_of(key), where_of(key));
}

std::optional<bool> MapReader::boolean(const std::string& key) {
  YAML::Node v = get(key);
  if (!v.IsDefined()) return std::nullopt;
  return ValueReader{diag_}.boolean(v, path_of(key), where_of(key));
}

std::optional<uint64_t> MapReader::number(const std::string& key, uint64_t min, uint64_t max) {
  YAML::Node v = get(key);
  if (!v.IsDefined()) return std::nullopt;
  return ValueReader{diag_}.number(v, path_of(key), where_of(key), min, max);
}

std::optional<uint64_t> MapReader::size(const std::string& key, uint64_t min, uint64_t max) {
  YAML::Node v = get(key);
  if (!v.IsDefined()) return std::nullopt;
  return ValueReader{diag_}.size(v, path_of(key), where_of(key), min, max);
}

std::optional<std::string> MapReader::choice(const std::string& key,
                                             const std::vector<std::string>& choices) {
  YAML::Node v = get(key);
  if (!v.IsDefined()) return std::nullopt;
  if (v.IsScalar() && std::find(choices.begin(), choices.end(), v.Scalar()) != choices.end()) {
    return v.Scalar();
  }
  std::string list;
  for (const std::string& c : choices) list += (list.empty() ? "" : "|") + c;
  diag_.error(where_of(key), path_of(key), "expected " + list + ", got " + describe_yaml(v));
  return std::nullopt;
}

std::optional<std::vector<std::string>> MapReader::string_list(const std::string& key) {
  YAML::Node v = get(key);
  if (!v.IsDefined()) return std::nullopt;
  return ValueReader{diag_}.string_list(v, path_of(key), where_of(key));
}

void MapReader::finish() {
  for (const std::string& key : order_) {
    if (known_.count(key)) continue;
    std::string hint;
    size_t best = 3;
    for (const std::string& k : known_) {
      const size_t d = edit_distance(key, k);
      if (d < best) {
        best = d;
        hint = " (did you mean '" + k + "'?)";
      }
    }
    if (hint.empty()) {
      std::string list;
      for (const std::string& k : known_) list += (list.empty() ? "" : ", ") + k;
      hint = " (known keys: " + list + ")";
    }
    diag_.error(where_of(key), path_, "unknown key '" + key + "'" + hint);
  }
}

}  // namespace config
