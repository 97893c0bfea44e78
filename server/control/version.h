// The version fleece reports over QMP (greeting and query-version). QMP tools expect
// QEMU's VersionInfo shape, so fleece's own version goes in the "qemu" triple and the
// "package" string says what it really is.
// The numbers come from project(fleece VERSION ...) in the top-level CMakeLists.txt.
// Threading: constants.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace server::control {

inline constexpr int kVersionMajor = FLEECE_VERSION_MAJOR;
inline constexpr int kVersionMinor = FLEECE_VERSION_MINOR;
inline constexpr int kVersionMicro = FLEECE_VERSION_PATCH;

inline std::string version_package() { return std::string("fleece ") + FLEECE_VERSION; }

// {"qemu": {"major": .., "minor": .., "micro": ..}, "package": "fleece X.Y.Z"}
inline nlohmann::json version_info() {
  return {{"qemu", {{"major", kVersionMajor}, {"minor", kVersionMinor}, {"micro", kVersionMicro}}},
          {"package", version_package()}};
}

}  // namespace server::control
