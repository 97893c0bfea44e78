// ThrottleNode ("throttle"): a filter over one `file` child that limits the rate of the
// requests passing through it (bytes and operations per second, reads and writes apart
// and together, with bursts: ThrottleLimits). Reads and cache count as reads; writes,
// write-zeroes and discards count as writes of their length, as in QEMU's throttle
// driver. Flush and block status pass straight through. Data is never changed: offset N
// is offset N of the child (file_offsets_match), so the child's dirty bitmaps describe
// this node too — an export of the throttle node finds them, and writes mark them on the
// child, which writes the data. Limits change at run time with set_limits().
// Threading: like every BlockNode; waiting requests are suspended coroutines
// (ThrottleGate), never blocked threads.
#pragma once

#include <memory>
#include <string>

#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/filters/throttle_gate.h"
#include "blockcore/filters/throttle_limits.h"
#include "blockcore/node_spec.h"

namespace blockcore {

class ThrottleNode final : public BlockNode {
 public:
  // Opens a throttle node named spec.node_name over file_child with spec.throttle.
  // Errors: EINVAL (bad limits, missing child), EROFS (writable over a read-only child).
  static Result<std::shared_ptr<ThrottleNode>> open(const NodeSpec& spec, BlockNodePtr file_child);

  const BlockNodePtr& file() const { return file_; }
  ThrottleLimits limits() const { return gate_.limits(); }
  // Swaps the limits; requests waiting now are re-evaluated. EINVAL for bad limits.
  Status set_limits(const ThrottleLimits& limits);
  // Requests waiting for their turn in direction `d`.
  size_t waiting(ThrottleDirection d) const { return gate_.waiting(d); }

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override;
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_flush() override;
  Task<Status> do_cache(uint64_t off, uint64_t len) override;
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override;

 private:
  ThrottleNode(const NodeSpec& spec, BlockNodePtr file_child);

  const BlockNodePtr file_;
  ThrottleGate gate_;
};

}  // namespace blockcore
