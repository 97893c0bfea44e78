#include "blockcore/drivers/raw_node.h"

#include <string>
#include <utility>

namespace blockcore {
namespace {

std::string node_label(const NodeSpec& spec) {
  return spec.node_name.empty() ? std::string("raw node") : "raw node '" + spec.node_name + "'";
}

}  // namespace

Result<std::shared_ptr<RawNode>> RawNode::open(const NodeSpec& spec, BlockNodePtr file_child) {
  const std::string label = node_label(spec);
  if (spec.driver != "raw") {
    return Status::invalid("RawNode::open called for driver '" + spec.driver + "'");
  }
  if (!file_child) return Status::invalid(label + ": needs a 'file' child");
  if (!spec.read_only && file_child->read_only()) {
    return Status::read_only(label + ": is writable but its file child '" + file_child->name() +
                             "' is read-only");
  }

  const uint64_t child_size = file_child->size();
  const uint64_t offset = spec.raw.offset;
  if (offset > child_size) {
    return Status::invalid(label + ": offset " + std::to_string(offset) +
                           " is past the end of its file (" + std::to_string(child_size) +
                           " bytes)");
  }
  const uint64_t size = spec.raw.size.value_or(child_size - offset);
  if (size > child_size - offset) {
    return Status::invalid(label + ": offset " + std::to_string(offset) + " + size " +
                           std::to_string(size) + " is past the end of its file (" +
                           std::to_string(child_size) + " bytes)");
  }
  const uint64_t align = file_child->info().request_alignment;
  if (offset % align != 0) {
    return Status::invalid(label + ": offset " + std::to_string(offset) +
                           " is not a multiple of the file's request alignment (" +
                           std::to_string(align) + ")");
  }
  if (size % align != 0 && offset + size != child_size) {
    return Status::invalid(label + ": size " + std::to_string(size) +
                           " is not a multiple of the file's request alignment (" +
                           std::to_string(align) + ")");
  }
  return std::shared_ptr<RawNode>(new RawNode(spec, std::move(file_child), offset, size));
}

RawNode::RawNode(const NodeSpec& spec, BlockNodePtr file_child, uint64_t offset, uint64_t size)
    : BlockNode(spec.node_name, "raw"), file_(std::move(file_child)), offset_(offset) {
  NodeInfo info = file_->info();  // capabilities and limits are the file's
  info.size = size;
  info.file_offsets_match = offset == 0;
  if (spec.read_only || file_->read_only()) info.drop_write_capabilities();
  set_info(info);
  add_child(ChildRole::kFile, file_);
}

Task<Status> RawNode::do_read(uint64_t off, std::span<std::byte> buf) {
  co_return co_await file_->read(offset_ + off, buf);
}

Task<Status> RawNode::do_read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe) {
  co_return co_await file_->read_to_pipe(offset_ + off, len, pipe);
}

Task<Status> RawNode::do_write_from_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe,
                                         IoFlags flags) {
  co_return co_await file_->write_from_pipe(offset_ + off, len, pipe, flags);
}

Task<Status> RawNode::do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) {
  co_return co_await file_->write(offset_ + off, buf, flags);
}

std::optional<Status> RawNode::do_read_now(uint64_t off, std::span<std::byte> buf) {
  return file_->read_now(offset_ + off, buf);
}

std::optional<Status> RawNode::do_write_now(uint64_t off, std::span<const std::byte> buf,
                                            IoFlags flags) {
  return file_->write_now(offset_ + off, buf, flags);
}

Task<Status> RawNode::do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) {
  co_return co_await file_->write_zeroes(offset_ + off, len, flags);
}

Task<Status> RawNode::do_discard(uint64_t off, uint64_t len, IoFlags flags) {
  co_return co_await file_->discard(offset_ + off, len, flags);
}

Task<Status> RawNode::do_flush() { co_return co_await file_->flush(); }

Task<Status> RawNode::do_cache(uint64_t off, uint64_t len) {
  co_return co_await file_->cache(offset_ + off, len);
}

Task<Result<ExtentList>> RawNode::do_block_status(uint64_t off, uint64_t len) {
  // The child answers for [offset_ + off, +len) and never describes more than len, so
  // the extents stay inside the window; positions are relative to the start anyway.
  co_return co_await file_->block_status(offset_ + off, len);
}

}  // namespace blockcore
