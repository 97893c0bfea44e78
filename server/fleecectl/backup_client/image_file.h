// ImageFile: a qcow2 image (or chain) opened through blockcore's own qcow2 driver for
// fleecectl's backup files, with blocking calls: creating a backup point (an empty qcow2,
// backed by the point before for an incremental) and writing it; opening a point with
// its backing chain read-only to restore it. No external tool is needed.
// Writes of a new point are whole clusters (the planner widens every range), so the new
// image is opened without its backing chain: nothing is copied up from it.
// Threading: one thread; each call runs the node's coroutine to completion on a private
// io_context (blocking I/O runs inline: the BlockingPool has no threads).
#pragma once

#include <asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "blockcore/base/result.h"
#include "blockcore/base/status.h"
#include "blockcore/base/task.h"
#include "blockcore/block_node.h"
#include "blockcore/graph.h"
#include "blockcore/io/blocking_pool.h"

namespace fleecectl::backup {

class ImageFile {
 public:
  ~ImageFile();
  ImageFile(const ImageFile&) = delete;
  ImageFile& operator=(const ImageFile&) = delete;

  // Creates `path` (which must not exist) as a qcow2 image of `size` bytes with
  // `cluster_size` clusters, backed by `backing` (a qcow2 file name stored as given,
  // relative to the new image; empty: none), and opens it writable.
  static blockcore::Result<std::unique_ptr<ImageFile>> create_qcow2(
      const std::string& path, uint64_t size, uint32_t cluster_size, const std::string& backing);
  // Opens `path` read-only with the backing chain its header names.
  static blockcore::Result<std::unique_ptr<ImageFile>> open_chain(const std::string& path);

  uint64_t size() const { return node_->size(); }
  blockcore::Status read(uint64_t off, std::span<std::byte> buf);
  blockcore::Status write(uint64_t off, std::span<const std::byte> buf);
  // Makes [off, off+len) read as zeroes whatever the backing chain holds.
  blockcore::Status write_zeroes(uint64_t off, uint64_t len);
  // The extents of [off, off+len) (may cover less; never nothing without an error).
  blockcore::Result<blockcore::ExtentList> block_status(uint64_t off, uint64_t len);
  // Flushes, writes the qcow2 metadata back and marks the image clean; the image stays
  // usable for nothing else afterwards.
  blockcore::Status close();

 private:
  ImageFile();
  static blockcore::Result<std::unique_ptr<ImageFile>> open(const std::string& path,
                                                            bool writable,
                                                            blockcore::BackingMode backing);
  template <class T>
  T run(blockcore::Task<T> task);

  blockcore::io::BlockingPool pool_{0};
  asio::io_context ctx_;
  std::unique_ptr<blockcore::Graph> graph_;
  blockcore::BlockNodePtr node_;
  bool closed_ = false;
};

}  // namespace fleecectl::backup
