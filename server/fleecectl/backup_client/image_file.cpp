#include "server/fleecectl/backup_client/image_file.h"

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <bit>
#include <exception>
#include <filesystem>

#include "blockcore/qcow2/image_creator.h"
#include "blockcore/qcow2/qcow2_node.h"

namespace fleecectl::backup {

using blockcore::Result;
using blockcore::Status;

ImageFile::ImageFile() = default;

ImageFile::~ImageFile() {
  if (!closed_) (void)close();
}

template <class T>
T ImageFile::run(blockcore::Task<T> task) {
  // co_spawn needs a default-constructible result (Result<T> is not): wrap it.
  auto wrap = [](blockcore::Task<T> t) -> blockcore::Task<std::optional<T>> {
    co_return std::optional<T>(co_await std::move(t));
  };
  ctx_.restart();
  auto guard = asio::make_work_guard(ctx_);
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(ctx_, wrap(std::move(task)), [&](std::exception_ptr e, std::optional<T> value) {
    error = e;
    if (!e) result = std::move(value);
    guard.reset();
  });
  ctx_.run();
  if (error) std::rethrow_exception(error);
  return std::move(*result);
}

Result<std::unique_ptr<ImageFile>> ImageFile::open(const std::string& path, bool writable,
                                                   blockcore::BackingMode backing) {
  std::unique_ptr<ImageFile> img(new ImageFile());
  img->graph_ = std::make_unique<blockcore::Graph>(img->pool_);
  auto file = std::make_shared<blockcore::NodeSpec>();
  file->driver = "file";
  file->read_only = !writable;
  file->file.filename = path;
  blockcore::NodeSpec spec;
  spec.node_name = "backup";
  spec.driver = "qcow2";
  spec.read_only = !writable;
  spec.origin = path;
  spec.file_child = blockcore::ChildRef{"", file};
  spec.backing_mode = backing;
  Result<blockcore::BlockNodePtr> node = img->graph_->add(spec);
  if (!node.is_ok()) return node.status().with_context(path);
  img->node_ = node.value();
  return img;
}

Result<std::unique_ptr<ImageFile>> ImageFile::create_qcow2(const std::string& path, uint64_t size,
                                                           uint32_t cluster_size,
                                                           const std::string& backing) {
  blockcore::qcow2::CreateOptions o;
  o.size = size;
  o.cluster_bits = static_cast<uint32_t>(std::countr_zero(cluster_size));
  if (!backing.empty()) {
    o.backing_file = backing;
    o.backing_format = "qcow2";
  }
  FLEECE_RETURN_IF_ERROR(blockcore::qcow2::create_image_file(path, o));
  auto img = open(path, /*writable=*/true, blockcore::BackingMode::kNone);
  if (!img.is_ok()) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  return img;
}

Result<std::unique_ptr<ImageFile>> ImageFile::open_chain(const std::string& path) {
  return open(path, /*writable=*/false, blockcore::BackingMode::kFromImage);
}

Status ImageFile::read(uint64_t off, std::span<std::byte> buf) {
  return run(node_->read(off, buf));
}

Status ImageFile::write(uint64_t off, std::span<const std::byte> buf) {
  return run(node_->write(off, buf, blockcore::IoFlags::kNone));
}

Status ImageFile::write_zeroes(uint64_t off, uint64_t len) {
  return run(node_->write_zeroes(off, len, blockcore::IoFlags::kNone));
}

Result<blockcore::ExtentList> ImageFile::block_status(uint64_t off, uint64_t len) {
  return run(node_->block_status(off, len));
}

Status ImageFile::close() {
  if (closed_) return Status::ok();
  closed_ = true;
  Status s = Status::ok();
  if (!node_->read_only()) {
    s = run(node_->flush());
    if (auto* q = dynamic_cast<blockcore::qcow2::Qcow2Node*>(node_.get())) {
      Status c = q->close_blocking();
      if (s.is_ok()) s = c;
    }
  }
  node_.reset();
  graph_.reset();
  return s;
}

}  // namespace fleecectl::backup
