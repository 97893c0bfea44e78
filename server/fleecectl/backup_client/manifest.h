// The manifest of a fleecectl backup folder (DIR/manifest.json): the chain of points
// (a full backup, then incrementals each backed by the one before) with what each
// covered, so `backup incremental` knows what to build on and `backup restore` (and
// people) know the chain. Parsing and checking are pure; load/save touch the file
// (save writes a temporary file and renames it over the old one).
// Threading: plain values.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fleecectl::backup {

inline constexpr char kManifestName[] = "manifest.json";
inline constexpr char kManifestFormat[] = "fleecectl-backup";
inline constexpr int kManifestVersion = 1;

struct Point {
  unsigned index = 0;     // 0 for the full backup, then 1, 2, ...
  std::string kind;       // "full" or "incremental"
  std::string file;       // name inside DIR: "0000-full.qcow2", "0001-inc.qcow2"
  std::string backing;    // the previous point's file ("" for the full backup)
  std::string time;       // UTC, ISO 8601 ("2026-11-22T11:33:40Z"): the snapshot point
  std::string node;
  std::string bitmap;
  uint64_t virtual_size = 0;
  uint64_t bytes_read = 0;     // read from the fleece view
  uint64_t bytes_written = 0;  // data clusters stored (zero clusters not counted)
};

struct Manifest {
  std::vector<Point> points;
};

// The file name of point `index` of `kind`: NNNN-full.qcow2 / NNNN-inc.qcow2.
std::string point_file_name(unsigned index, const std::string& kind);

nlohmann::json manifest_to_json(const Manifest& m);
// The manifest in `j`, or nullopt with `error` set when it is not one (wrong format or
// version, points out of order, an incremental first, a backing that is not the point
// before, a file name with a '/').
std::optional<Manifest> manifest_from_json(const nlohmann::json& j, std::string* error);

// DIR/manifest.json: nullopt with `error` empty when there is none, with `error` set when
// it cannot be read or parsed.
std::optional<Manifest> load_manifest(const std::string& dir, std::string* error);
bool save_manifest(const std::string& dir, const Manifest& m, std::string* error);

// The point `index` of the manifest, or the latest when `index` is empty; nullptr when
// there is no such point.
const Point* find_point(const Manifest& m, std::optional<unsigned> index);

// Now in UTC as ISO 8601 with seconds ("2026-11-22T11:33:40Z").
std::string utc_now();

}  // namespace fleecectl::backup
