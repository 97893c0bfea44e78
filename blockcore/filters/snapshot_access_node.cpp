#include "blockcore/filters/snapshot_access_node.h"

#include <utility>

namespace blockcore {

SnapshotAccessNode::SnapshotAccessNode(std::string name, FleeceSnapshotPtr snapshot)
    : BlockNode(std::move(name), "snapshot-access"), snapshot_(std::move(snapshot)) {
  const NodeInfo& live = snapshot_->live().info();
  NodeInfo info;
  info.size = snapshot_->size();
  info.read_only = false;  // trims release overlay space; writes are refused below
  info.can_flush = false;
  info.can_fua = false;
  info.can_trim = true;
  info.can_zero = false;
  info.can_fast_zero = false;
  info.can_cache = false;
  info.can_multi_conn = true;
  info.rotational = live.rotational;
  info.request_alignment = live.request_alignment;
  info.preferred_alignment = live.preferred_alignment;
  info.max_transfer = live.max_transfer;
  set_info(info);
}

std::string SnapshotAccessNode::describe() const {
  return "snapshot of '" + snapshot_->live().name() + "' (fleece '" + snapshot_->id() + "')";
}

Task<Status> SnapshotAccessNode::do_read(uint64_t off, std::span<std::byte> buf) {
  co_return co_await snapshot_->read(off, buf);
}

Task<Status> SnapshotAccessNode::do_write(uint64_t, std::span<const std::byte>, IoFlags) {
  co_return Status::read_only(name() + ": a fleecing snapshot cannot be written");
}

Task<Status> SnapshotAccessNode::do_write_zeroes(uint64_t, uint64_t, IoFlags) {
  co_return Status::read_only(name() + ": a fleecing snapshot cannot be written");
}

Task<Status> SnapshotAccessNode::do_discard(uint64_t off, uint64_t len, IoFlags) {
  co_return co_await snapshot_->discard(off, len);
}

Task<Status> SnapshotAccessNode::do_flush() { co_return Status::ok(); }

Task<Status> SnapshotAccessNode::do_cache(uint64_t, uint64_t) { co_return Status::ok(); }

Task<Result<ExtentList>> SnapshotAccessNode::do_block_status(uint64_t off, uint64_t len) {
  co_return co_await snapshot_->block_status(off, len);
}

}  // namespace blockcore
