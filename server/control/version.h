// The version fleece reports over QMP (greeting and query-version). QMP tools expect
// QEMU's VersionInfo shape, so fleece's own version goes in the "qemu" triple and the
// "package" string says what it really is.
// Keep in sync with project(fleece VERSION ...) in the top-level CMakeLists.txt.
// Threading: constants.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace server::control {

inline constexpr int kVersionMajor = 0;
inline constexpr int kVersionMinor = 1;
inline constexpr int kVersionMicro = 0;

inline std::string version_package() {
  return "fleece " + std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor) + "." +
         std::to_string(kVersionMicro);
}

// {"qemu": {"major": .., "minor": .., "micro": ..}, "package": "fleece X.Y.Z"}
inline nlohmann::json version_info() {
  return {{"qemu", {{"major", kVersionMajor}, {"minor", kVersionMinor}, {"micro", kVersionMicro}}},
          {"package", version_package()}};
}

}  // namespace server::control
