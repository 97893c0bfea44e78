#include "blockcore/filters/throttle_node.h"

#include <utility>

namespace blockcore {
namespace {

std::string node_label(const NodeSpec& spec) {
  return spec.node_name.empty() ? std::string("throttle node")
                                : "throttle node '" + spec.node_name + "'";
}

}  // namespace

Result<std::shared_ptr<ThrottleNode>> ThrottleNode::open(const NodeSpec& spec,
                                                         BlockNodePtr file_child) {
  const std::string label = node_label(spec);
  if (spec.driver != "throttle") {
    return Status::invalid("ThrottleNode::open called for driver '" + spec.driver + "'");
  }
  if (!file_child) return Status::invalid(label + ": needs a 'file' child");
  if (!spec.read_only && file_child->read_only()) {
    return Status::read_only(label + ": is writable but its file child '" + file_child->name() +
                             "' is read-only");
  }
  if (Status s = check_throttle_limits(spec.throttle); !s.is_ok()) {
    return Status::invalid(label + ": " + s.message());
  }
  return std::shared_ptr<ThrottleNode>(new ThrottleNode(spec, std::move(file_child)));
}

ThrottleNode::ThrottleNode(const NodeSpec& spec, BlockNodePtr file_child)
    : BlockNode(spec.node_name, "throttle"), file_(std::move(file_child)), gate_(spec.throttle) {
  NodeInfo info = file_->info();  // capabilities and limits are the child's
  info.size = file_->size();
  info.file_offsets_match = true;
  info.can_truncate = false;
  if (spec.read_only || file_->read_only()) info.drop_write_capabilities();
  set_info(info);
  add_child(ChildRole::kFile, file_);
}

Status ThrottleNode::set_limits(const ThrottleLimits& limits) {
  if (Status s = check_throttle_limits(limits); !s.is_ok()) {
    return Status::invalid(name() + ": " + s.message());
  }
  gate_.set_limits(limits);
  return Status::ok();
}

Task<Status> ThrottleNode::do_read(uint64_t off, std::span<std::byte> buf) {
  co_await gate_.admit(ThrottleDirection::kRead, buf.size());
  co_return co_await file_->read(off, buf);
}

Task<Status> ThrottleNode::do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) {
  co_await gate_.admit(ThrottleDirection::kWrite, buf.size());
  co_return co_await file_->write(off, buf, flags);
}

Task<Status> ThrottleNode::do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) {
  co_await gate_.admit(ThrottleDirection::kWrite, len);
  co_return co_await file_->write_zeroes(off, len, flags);
}

Task<Status> ThrottleNode::do_discard(uint64_t off, uint64_t len, IoFlags flags) {
  co_await gate_.admit(ThrottleDirection::kWrite, len);
  co_return co_await file_->discard(off, len, flags);
}

Task<Status> ThrottleNode::do_flush() { co_return co_await file_->flush(); }

Task<Status> ThrottleNode::do_cache(uint64_t off, uint64_t len) {
  co_await gate_.admit(ThrottleDirection::kRead, len);
  co_return co_await file_->cache(off, len);
}

Task<Result<ExtentList>> ThrottleNode::do_block_status(uint64_t off, uint64_t len) {
  co_return co_await file_->block_status(off, len);
}

}  // namespace blockcore
