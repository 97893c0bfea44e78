#include "server/fleecectl/backup_client/manifest.h"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fleecectl::backup {

using nlohmann::json;

std::string point_file_name(unsigned index, const std::string& kind) {
  char name[64];
  std::snprintf(name, sizeof(name), "%04u-%s.qcow2", index, kind == "full" ? "full" : "inc");
  return name;
}

json manifest_to_json(const Manifest& m) {
  json points = json::array();
  for (const Point& p : m.points) {
    json j = {{"point", p.index},          {"kind", p.kind},
              {"file", p.file},            {"time", p.time},
              {"node", p.node},            {"bitmap", p.bitmap},
              {"virtual-size", p.virtual_size}, {"bytes-read", p.bytes_read},
              {"bytes-written", p.bytes_written}};
    if (!p.backing.empty()) j["backing"] = p.backing;
    points.push_back(std::move(j));
  }
  return {{"format", kManifestFormat}, {"version", kManifestVersion}, {"points", points}};
}

namespace {

template <class T>
bool take(const json& j, const char* key, T* out, std::string* error) {
  auto it = j.find(key);
  if (it == j.end()) {
    *error = std::string("a point has no \"") + key + "\"";
    return false;
  }
  try {
    *out = it->get<T>();
  } catch (const json::exception&) {
    *error = std::string("a point's \"") + key + "\" has the wrong type";
    return false;
  }
  return true;
}

bool check_point(const Point& p, const Manifest& m, std::string* error) {
  const std::string where = "point " + std::to_string(p.index) + ": ";
  if (p.index != m.points.size()) {
    *error = where + "points must be numbered 0, 1, 2, ... in order";
  } else if (p.kind != "full" && p.kind != "incremental") {
    *error = where + "kind must be full or incremental, not '" + p.kind + "'";
  } else if ((p.index == 0) != (p.kind == "full")) {
    *error = where + "the chain must start with its only full backup";
  } else if (p.file.empty() || p.file.find('/') != std::string::npos) {
    *error = where + "bad file name '" + p.file + "'";
  } else if (p.index > 0 && p.backing != m.points.back().file) {
    *error = where + "its backing must be the point before (" + m.points.back().file + ")";
  } else if (p.index == 0 && !p.backing.empty()) {
    *error = where + "a full backup has no backing file";
  } else {
    return true;
  }
  return false;
}

}  // namespace

std::optional<Manifest> manifest_from_json(const json& j, std::string* error) {
  if (!j.is_object() || j.value("format", "") != kManifestFormat) {
    *error = std::string("not a ") + kManifestFormat + " manifest";
    return std::nullopt;
  }
  if (j.value("version", 0) != kManifestVersion) {
    *error = "unsupported manifest version " + j.value("version", json()).dump();
    return std::nullopt;
  }
  auto points = j.find("points");
  if (points == j.end() || !points->is_array()) {
    *error = "the manifest has no \"points\" list";
    return std::nullopt;
  }
  Manifest m;
  for (const json& pj : *points) {
    Point p;
    if (!pj.is_object()) {
      *error = "a point is not an object";
      return std::nullopt;
    }
    if (!take(pj, "point", &p.index, error) || !take(pj, "kind", &p.kind, error) ||
        !take(pj, "file", &p.file, error) || !take(pj, "time", &p.time, error) ||
        !take(pj, "node", &p.node, error) || !take(pj, "bitmap", &p.bitmap, error) ||
        !take(pj, "virtual-size", &p.virtual_size, error) ||
        !take(pj, "bytes-read", &p.bytes_read, error) ||
        !take(pj, "bytes-written", &p.bytes_written, error)) {
      return std::nullopt;
    }
    if (pj.contains("backing") && !take(pj, "backing", &p.backing, error)) return std::nullopt;
    if (!check_point(p, m, error)) return std::nullopt;
    m.points.push_back(std::move(p));
  }
  return m;
}

std::optional<Manifest> load_manifest(const std::string& dir, std::string* error) {
  error->clear();
  const std::filesystem::path path = std::filesystem::path(dir) / kManifestName;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read " + path.string();
    return std::nullopt;
  }
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = path.string() + " is not JSON";
    return std::nullopt;
  }
  auto m = manifest_from_json(j, error);
  if (!m) *error = path.string() + ": " + *error;
  return m;
}

bool save_manifest(const std::string& dir, const Manifest& m, std::string* error) {
  const std::filesystem::path path = std::filesystem::path(dir) / kManifestName;
  const std::filesystem::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << manifest_to_json(m).dump(2) << '\n';
    out.flush();
    if (!out) {
      *error = "cannot write " + tmp.string();
      return false;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    *error = "cannot rename " + tmp.string() + ": " + ec.message();
    std::filesystem::remove(tmp, ec);
    return false;
  }
  return true;
}

const Point* find_point(const Manifest& m, std::optional<unsigned> index) {
  if (m.points.empty()) return nullptr;
  if (!index) return &m.points.back();
  return *index < m.points.size() ? &m.points[*index] : nullptr;
}

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace fleecectl::backup
