// Qcow2Node: the `qcow2` format driver — a BlockNode whose guest disk is mapped through
// an Image's L1/L2 tables onto its file (or external data file), falling through to the
// backing node where a cluster is unallocated.
// Concurrency: requests lock the guest clusters they touch in a RangeLock — shared for
// reads and for writes into clusters already allocated (those run in parallel, the
// metadata lock held only for the lookup), exclusive for writes that allocate, zero or
// discard. Metadata changes happen under the image's metadata lock; data I/O never does.
// Copy-on-write of a partially written new cluster reads only the parts the write does
// not cover (from the backing chain, a compressed cluster or a shared cluster), and
// with extended L2 entries only inside the partially written subclusters.
// Threading: all BlockNode methods may run concurrently on any executor.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/range_lock.h"
#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/node_factory.h"
#include "blockcore/qcow2/cluster_entry.h"
#include "blockcore/qcow2/qcow2_image.h"

namespace blockcore::qcow2 {

// One stretch of guest bytes that reads the same way.
struct Run {
  uint64_t guest_off = 0;
  uint64_t length = 0;
  SubclusterType type = SubclusterType::kUnallocatedPlain;
  uint64_t host_off = 0;  // where guest_off lives, for types with a host offset
  L2Entry entry;          // the cluster's entry (compressed clusters are read through it)
};

class Qcow2Node final : public BlockNode {
 public:
  // Opens the qcow2 image in r.file_child (see qcow2_open.cpp).
  static Result<std::shared_ptr<Qcow2Node>> open(const OpenRequest& r);

  Qcow2Node(const std::string& name, std::unique_ptr<Image> image, const NodeInfo& info);
  // Writes metadata back and clears the dirty bit (blocking; see close_blocking()).
  ~Qcow2Node() override;

  std::string describe() const override { return image_->files().file->describe(); }
  Image& image() { return *image_; }
  // Stores the persistent bitmaps (closing the bitmap store), writes all metadata back
  // and marks the image clean, waiting for it on a private io_context. Called by the
  // destructor; safe to call earlier (idempotent).
  Status close_blocking();

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override;
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_flush() override;
  Task<Status> do_cache(uint64_t off, uint64_t len) override;
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override;

 private:
  // --- mapping and reading (qcow2_node.cpp) ---
  // Describes [off, off+len) as runs. REQUIRES: the metadata lock.
  Task<Status> map_range(uint64_t off, uint64_t len, std::vector<Run>& runs);
  // Appends the runs of [begin, end) of one cluster given its entry.
  void append_cluster_runs(uint64_t cluster_off, const L2Entry& e, uint64_t begin, uint64_t end,
                           std::vector<Run>& runs) const;
  // Reads what `run` describes into out (out.size() == run.length).
  Task<Status> read_run(const Run& run, std::span<std::byte> out);
  Task<Status> read_backing(uint64_t off, std::span<std::byte> out);
  Task<Status> read_compressed(const L2Entry& e, std::span<std::byte> cluster);
  // Reads guest bytes [begin, end) of the cluster at cluster_off as its entry `e`
  // describes them (used for copy-on-write).
  Task<Status> read_old(uint64_t cluster_off, const L2Entry& e, uint64_t begin, uint64_t end,
                        std::span<std::byte> out);

  // --- writing (qcow2_write.cpp) ---
  // True when every byte of [off, off+len) is in a cluster written in place.
  bool writable_in_place(const std::vector<Run>& runs) const;
  // REQUIRES: the exclusive range lock over the clusters of [off, off+len).
  Task<Status> write_locked(uint64_t off, std::span<const std::byte> buf);
  Task<Status> write_table_chunk(uint64_t off, std::span<const std::byte> buf);
 public:
  // How an allocating write treats one cluster.
  enum class ClusterAction {
    kInPlace,  // the host cluster is ours (refcount 1): write into it
    kReuse,    // a preallocated zero cluster of ours: write into it, clear the zero flag
    kNew,      // a new host cluster (unallocated, zero without host, compressed, shared)
  };

 private:
  // Writes `part` (at guest seg_begin) into the cluster at cluster_off whose entry was
  // `old`, on host cluster `host` (`fresh`: it reads as zeroes), copying what the part
  // does not cover; sets `updated` to the entry to link afterwards.
  Task<Status> write_cluster(uint64_t cluster_off, const L2Entry& old, ClusterAction action,
                             uint64_t host, bool fresh, uint64_t seg_begin,
                             std::span<const std::byte> part, L2Entry& updated);

  // --- zeroing and discarding (qcow2_zero.cpp) ---
  // Makes whole clusters [first, first + count * cluster) read as zeroes (or unmapped
  // for discard). REQUIRES: the exclusive range lock.
  Task<Status> zero_clusters(uint64_t first, uint64_t count, bool unmap, bool discard);
  // Writes zeroes over [off, off+len) through write_locked(). REQUIRES: the exclusive
  // range lock.
  Task<Status> write_zero_bytes(uint64_t off, uint64_t len);

  uint64_t cluster_lock_begin(uint64_t off) const { return off >> image_->geometry().cluster_bits; }
  uint64_t cluster_lock_end(uint64_t off, uint64_t len) const {
    return ((off + len - 1) >> image_->geometry().cluster_bits) + 1;
  }

  std::unique_ptr<Image> image_;
  RangeLock range_lock_;
};

// The factory's open function for the `qcow2` driver.
Result<BlockNodePtr> open_qcow2_node(const OpenRequest& r);

}  // namespace blockcore::qcow2
