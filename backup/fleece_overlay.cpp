#include "backup/fleece_overlay.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <string_view>
#include <cerrno>
#include <filesystem>
#include <system_error>

#include "blockcore/node_spec.h"

namespace backup {

using blockcore::Result;
using blockcore::Status;

blockcore::Result<std::shared_ptr<blockcore::FileNode>> create_overlay(
    const std::string& dir, const std::string& fleece_id, uint64_t size,
    blockcore::io::BlockingPool& pool) {
  std::string path = dir + "/" + kOverlayPrefix + fleece_id + "-XXXXXX" + kOverlaySuffix;
  const int suffix = static_cast<int>(std::string_view(kOverlaySuffix).size());
  const int fd = ::mkostemps(path.data(), suffix, O_CLOEXEC);
  if (fd < 0) {
    return Status::from_errno(errno, "creating a fleecing overlay in '" + dir + "'");
  }
  const bool sized = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
  const int size_errno = errno;
  ::close(fd);
  if (!sized) {
    ::unlink(path.c_str());
    return Status::from_errno(size_errno, "sizing the fleecing overlay in '" + dir + "'");
  }
  blockcore::NodeSpec spec;
  spec.node_name = "fleece-" + fleece_id + "-overlay";
  spec.driver = "file";
  spec.read_only = false;
  spec.file.filename = path;
  spec.file.locking = blockcore::LockMode::kOff;
  spec.origin = "fleece-start";
  Result<std::shared_ptr<blockcore::FileNode>> node = blockcore::FileNode::open(spec, pool);
  ::unlink(path.c_str());
  if (!node.is_ok()) return node.status().with_context("opening the fleecing overlay");
  return node;
}

size_t sweep_overlays(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  size_t removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(kOverlayPrefix) || !name.ends_with(kOverlaySuffix)) continue;
    if (!it->is_regular_file(ec)) continue;
    if (fs::remove(it->path(), ec)) {
      ++removed;
      spdlog::info("removed a fleecing overlay left by an earlier run: {}", it->path().string());
    }
  }
  return removed;
}

}  // namespace backup
