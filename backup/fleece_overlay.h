// Fleecing overlays: the sparse files that hold a snapshot's old data. An overlay is
// created in the overlay folder, opened, and unlinked at once, so it can never be left
// behind — not after fleece-stop, a failure, or a SIGKILL (the kernel frees an unlinked
// file when the last descriptor closes). Its space is reported from the open file.
// sweep_overlays() removes files a crash between create and unlink could have left.
// Threading: create_overlay() blocks on open(2) (control path); the node is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "blockcore/base/result.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/io/blocking_pool.h"

namespace backup {

// File names fleeced gives overlays: "fleece-<id>-XXXXXX.overlay" (mkostemps).
inline constexpr const char* kOverlayPrefix = "fleece-";
inline constexpr const char* kOverlaySuffix = ".overlay";

// A writable, unlinked, sparse file of `size` bytes in `dir`. Errors name the folder
// (ENOENT, EACCES, ENOSPC...).
blockcore::Result<std::shared_ptr<blockcore::FileNode>> create_overlay(
    const std::string& dir, const std::string& fleece_id, uint64_t size,
    blockcore::io::BlockingPool& pool);

// Removes leftover overlay files in `dir`; returns how many. Missing folder: 0.
size_t sweep_overlays(const std::string& dir);

}  // namespace backup
