// Restoring a backup point: reads the disk as of that point through its qcow2 backing
// chain (blockcore's qcow2 driver) and writes it to a new raw or qcow2 file, leaving the
// ranges that read as zeroes sparse. On failure the new file is removed.
// Threading: one thread.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "server/fleecectl/backup_client/progress.h"

namespace fleecectl::backup {

struct RestoreResult {
  uint64_t virtual_size = 0;
  uint64_t bytes_written = 0;  // data bytes (zero ranges stay sparse)
};

// `format` is "raw" or "qcow2"; `to` must not exist. False with `error` set on failure.
bool restore_point(const std::string& chain_file, const std::string& to, const std::string& format,
                   Progress& progress, const nlohmann::json& start_info, RestoreResult* result,
                   std::string* error);

}  // namespace fleecectl::backup
