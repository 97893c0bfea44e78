// RawNode: the `raw` format driver — the bytes of its `file` child, optionally only a
// window [offset, offset + size) of them (QEMU's raw offset/size options). Every
// operation is forwarded explicitly with the offset applied; nothing passes through by
// default, so an operation added later cannot silently bypass the window.
// Threading: stateless after open (the child is immutable); all methods may run
// concurrently on any executor, with the child's own threading rules.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "blockcore/base/result.h"
#include "blockcore/block_node.h"
#include "blockcore/node_spec.h"

namespace blockcore {

class RawNode final : public BlockNode {
 public:
  // Opens a raw node named spec.node_name (spec.driver must be "raw") over file_child.
  // The window must lie inside the child and start (and end, unless it ends where the
  // child ends) on the child's request_alignment. A writable raw node needs a writable
  // child. Errors: EINVAL (bad window, missing child), EROFS (read-only child).
  static Result<std::shared_ptr<RawNode>> open(const NodeSpec& spec, BlockNodePtr file_child);

  std::string describe() const override { return file_->describe(); }
  bool can_write_from_pipe() const override {
    return !read_only() && file_->can_write_from_pipe();
  }
  uint64_t offset() const { return offset_; }
  const BlockNodePtr& file() const { return file_; }

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override;
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags flags) override;
  std::optional<Status> do_read_now(uint64_t off, std::span<std::byte> buf) override;
  std::optional<Status> do_write_now(uint64_t off, std::span<const std::byte> buf,
                                     IoFlags flags) override;
  Task<Status> do_read_to_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe) override;
  Task<Status> do_write_from_pipe(uint64_t off, uint64_t len, io::PipeBuffer& pipe,
                                  IoFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags flags) override;
  Task<Status> do_flush() override;
  Task<Status> do_cache(uint64_t off, uint64_t len) override;
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override;

 private:
  RawNode(const NodeSpec& spec, BlockNodePtr file_child, uint64_t offset, uint64_t size);

  const BlockNodePtr file_;
  const uint64_t offset_;
};

}  // namespace blockcore
