// SnapshotAccessNode ("snapshot-access"): the block node that exposes a FleecingSnapshot
// — the point-in-time view of a live node — for a read-only export. Reads, block status
// and trim go to the snapshot; writes and write-zeroes fail with EROFS. The node is
// not read-only in NodeInfo terms only so that trim (which releases overlay space)
// reaches it; the export decides whether clients may send trims.
// Threading: like every BlockNode.
#pragma once

#include <memory>
#include <string>

#include "blockcore/block_node.h"
#include "blockcore/filters/fleece_snapshot.h"

namespace blockcore {

class SnapshotAccessNode final : public BlockNode {
 public:
  SnapshotAccessNode(std::string name, FleeceSnapshotPtr snapshot);

  const FleeceSnapshotPtr& snapshot() const { return snapshot_; }
  std::string describe() const override;

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override;
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_flush() override;
  Task<Status> do_cache(uint64_t off, uint64_t len) override;
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override;

 private:
  FleeceSnapshotPtr snapshot_;
};

}  // namespace blockcore
