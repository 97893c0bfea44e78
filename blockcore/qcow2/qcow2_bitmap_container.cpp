// open_bitmap_container(): the bitmaps-only qcow2 file that keeps the persistent dirty
// bitmaps of a node without a store of its own (raw, file). See qcow2_bitmap_store.h.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "blockcore/base/run_blocking.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/qcow2/image_creator.h"
#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "blockcore/qcow2/qcow2_image.h"

namespace blockcore::qcow2 {
namespace {

constexpr uint32_t kContainerClusterBits = 16;
// Small caches: a container has no L2 tables in use and few refcount blocks.
constexpr size_t kContainerCacheTables = 4;

std::string num(uint64_t v) { return std::to_string(v); }

// Reads and checks the container's header: a qcow2 v3 image of `want_size` bytes that
// maps no guest data.
Task<Result<Header>> read_container_header(BlockNode& file, const std::string& path,
                                           uint64_t want_size) {
  const uint64_t file_size = file.size();
  if (file_size < kHeaderV2Length) {
    co_return Status::invalid("bitmap file '" + path + "' is not a qcow2 image (" +
                              num(file_size) + " bytes)");
  }
  std::vector<std::byte> head(std::min<uint64_t>(file_size, kHeaderReadLimit));
  FLEECE_CO_RETURN_IF_ERROR(co_await file.read(0, head));
  Result<Header> h = parse_header(head);
  if (!h.is_ok()) co_return h.status().with_context("bitmap file '" + path + "'");
  const auto refuse = [&](const std::string& why) {
    return Status::invalid("bitmap file '" + path + "' " + why);
  };
  if (h->version < 3) co_return refuse("is a qcow2 v2 image; bitmaps need qcow2 v3");
  if (h->size != want_size) {
    co_return refuse("has a virtual size of " + num(h->size) + " bytes, but the node has " +
                     num(want_size) + " (is it the bitmap file of another disk?)");
  }
  if (!h->backing_file.empty() || h->has_data_file() || h->nb_snapshots != 0) {
    co_return refuse("holds guest data (a backing file, a data file or snapshots); a bitmap "
                     "file holds bitmaps only");
  }
  co_return h;
}

}  // namespace

Result<Qcow2BitmapStorePtr> open_bitmap_container(const std::string& path, uint64_t disk_size,
                                                  bool read_only, bool create,
                                                  io::BlockingPool& pool,
                                                  std::vector<DirtyBitmapPtr>& loaded) {
  // qcow2 sizes are multiples of 512; granules (at least 512 bytes) come out the same.
  const uint64_t size = (disk_size + 511) & ~uint64_t{511};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::from_errno(errno, "bitmap file '" + path + "'");
    if (!create || read_only) {
      return Status::error(ENOENT, "bitmap file '" + path + "' does not exist");
    }
    CreateOptions o;
    o.size = size;
    o.cluster_bits = kContainerClusterBits;
    if (Status c = create_image_file(path, o); !c.is_ok()) {
      return c.with_context("creating the bitmap file");
    }
    spdlog::info("created bitmap file '{}' ({} bytes of disk)", path, disk_size);
  }

  NodeSpec fs;
  fs.driver = "file";
  fs.read_only = read_only;
  fs.file.filename = path;
  fs.origin = "bitmap file";
  Result<std::shared_ptr<FileNode>> file = FileNode::open(fs, pool);
  if (!file.is_ok()) return file.status();
  BlockNodePtr file_node = file.value();

  return run_blocking<Result<Qcow2BitmapStorePtr>>(
      [&]() -> Task<Result<Qcow2BitmapStorePtr>> {
        Result<Header> h = co_await read_container_header(*file_node, path, size);
        if (!h.is_ok()) co_return h.status();
        ImageFiles files;
        files.file = file_node;
        auto image = std::make_unique<Image>(path, h.value(), files, read_only,
                                             kContainerCacheTables, kContainerCacheTables);
        {
          AsyncMutex::Guard meta = co_await image->meta_lock().lock();
          if (Status s = co_await image->prepare_for_use(); !s.is_ok()) {
            co_return s.with_context("bitmap file '" + path + "'");
          }
          for (uint64_t e : image->l2().l1()) {
            if (e != 0) {
              co_return Status::invalid("bitmap file '" + path + "' maps guest data; a bitmap "
                                        "file holds bitmaps only");
            }
          }
        }
        Result<Qcow2BitmapStorePtr> store =
            co_await Qcow2BitmapStore::open(*image, disk_size, loaded);
        if (!store.is_ok()) {
          AsyncMutex::Guard meta = co_await image->meta_lock().lock();
          (void)co_await image->close();
          co_return store.status().with_context("bitmap file '" + path + "'");
        }
        store.value()->owned_image_ = std::move(image);
        co_return store;
      });
}

}  // namespace blockcore::qcow2
