// Pulling one backup point: maps the fleece view over NBD (base:allocation for a full
// backup, the frozen qemu:dirty-bitmap:B for an incremental), reads the planned ranges
// with several requests in flight and stores them in a new qcow2 file — data clusters
// written, all-zero clusters left unallocated (full) or written as zero clusters
// (incremental, so they hide the backing file). On any failure the new file is removed.
// Threading: one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "server/fleecectl/backup_client/progress.h"

namespace fleecectl::backup {

struct PullOptions {
  std::string uri;             // NBD URI naming the fleece's export
  std::string bitmap_context;  // "qemu:dirty-bitmap:B" for an incremental; "" for full
  std::string target_path;     // the new qcow2 file (must not exist)
  std::string backing;         // its backing file name (relative to it); "" for full
  uint32_t cluster_size = 64 * 1024;
  unsigned max_in_flight = 8;
  uint64_t max_request = 4u << 20;
  uint64_t max_rate = 0;  // bytes per second read from the view; 0 = no limit
  // Polled between reads: true stops the pull ("interrupted").
  std::function<bool()> interrupted;
};

struct PullResult {
  uint64_t virtual_size = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
};

// Runs the pull; `start_info` goes into the progress "start" line. False with `error`
// set on failure (and the target file removed).
bool pull_point(const PullOptions& o, Progress& progress, const nlohmann::json& start_info,
                PullResult* result, std::string* error);

}  // namespace fleecectl::backup
