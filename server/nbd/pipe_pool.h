// PipePool: the pipes one connection sends large READ replies through (file pages
// spliced in by the node, spliced out to the socket by the ReplyWriter: no copy in
// user space). Empty pipes come back and are reused; a pipe that still holds data (a
// dropped reply) is closed instead. When the kernel refuses a pipe — the user's pipe
// budget (fs.pipe-user-pages-soft) is spent, or pipe-max-size is below kCapacity —
// acquire() returns nothing for a while and the caller copies as before.
// Threading: confined to the connection's strand.
#pragma once

#include <cstddef>
#include <vector>

#include "blockcore/io/pipe_buffer.h"

namespace server::nbd {

class PipePool {
 public:
  // 1 MiB: Linux's default pipe-max-size, and fio/qemu's usual large request.
  static constexpr size_t kCapacity = 1u << 20;
  // After a refused pipe, this many acquire() calls return nothing before trying again.
  static constexpr unsigned kBackoffAcquires = 64;

  explicit PipePool(size_t max_retained) : max_retained_(max_retained) {}
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // An empty pipe of kCapacity bytes, or an empty handle.
  blockcore::io::PipeBuffer acquire();
  // Takes a pipe back (an empty handle is ignored).
  void release(blockcore::io::PipeBuffer pipe);
  // Closes free pipes beyond `keep` (an idle connection gives back its pipe budget).
  void trim(size_t keep);

  size_t retained() const { return free_.size(); }
  uint64_t refusals() const { return refusals_; }

 private:
  std::vector<blockcore::io::PipeBuffer> free_;
  size_t max_retained_;
  unsigned backoff_ = 0;
  uint64_t refusals_ = 0;
};

}  // namespace server::nbd
