// Opening a qcow2 node: header, external data file, backing chain (from the header or
// given), metadata load, the refcount repair a crash leaves for the next open, and the
// persistent bitmaps (the bitmap store, attached to the node).
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "blockcore/base/big_endian.h"
#include "blockcore/base/run_blocking.h"
#include "blockcore/drivers/file_node.h"
#include "blockcore/drivers/raw_node.h"
#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "blockcore/qcow2/qcow2_node.h"

namespace blockcore::qcow2 {
namespace {

// Cache budgets: L2 tables covering the whole disk up to 32 MiB of tables; refcount
// blocks up to 4 MiB.
constexpr uint64_t kL2CacheBytes = 32ull << 20;
constexpr uint64_t kRefblockCacheBytes = 4ull << 20;

std::string image_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

// The file name a node's data comes from (its `file` chain's bottom).
std::string filename_of(BlockNode& node) {
  if (auto* f = dynamic_cast<FileNode*>(&node)) return f->filename();
  return node.describe();
}

// Resolves a backing or data file name from an image header against the image's folder.
Result<std::string> resolve_name(const std::string& name, const std::string& image_file,
                                 const char* what) {
  if (name.rfind("json:", 0) == 0 || name.find("://") != std::string::npos) {
    return Status::not_supported(std::string(what) + " '" + name +
                                 "' is not a plain file name (give the node in the config)");
  }
  std::filesystem::path p(name);
  if (p.is_absolute()) return name;
  return (std::filesystem::path(image_file).parent_path() / p).string();
}

// Opens a node for an image header's backing or data file: through the graph when the
// node is opened by one, directly otherwise (tests, tools).
Result<BlockNodePtr> open_implicit(const OpenRequest& r, const NodeSpec& spec,
                                   const ChainContext& chain) {
  if (r.open_implicit_child) return r.open_implicit_child(spec, chain);
  if (chain.depth > kMaxImplicitChainDepth) {
    return Status::error(ELOOP, "backing chain deeper than " +
                                    std::to_string(kMaxImplicitChainDepth) + " images");
  }
  if (spec.driver == "file") {
    Result<std::shared_ptr<FileNode>> f = FileNode::open(spec, r.pool);
    if (!f.is_ok()) return f.status();
    return BlockNodePtr(f.value());
  }
  Result<std::shared_ptr<FileNode>> file = FileNode::open(*spec.file_child->inline_spec, r.pool);
  if (!file.is_ok()) return file.status();
  if (spec.driver == "raw") {
    auto raw = RawNode::open(spec, file.value());
    if (!raw.is_ok()) return raw.status();
    return BlockNodePtr(raw.value());
  }
  OpenRequest child{spec, r.pool, file.value()};
  child.chain = chain;
  child.on_corruption = r.on_corruption;
  return open_qcow2_node(child);
}

NodeSpec file_spec(const std::string& filename, bool read_only) {
  NodeSpec f;
  f.driver = "file";
  f.read_only = read_only;
  f.file.filename = filename;
  f.origin = "image header";
  return f;
}

Task<Result<BlockNodePtr>> open_backing_from_header(const OpenRequest& r, const Header& h,
                                                    const std::string& image_file) {
  if (h.backing_file.empty()) co_return BlockNodePtr();
  Result<std::string> path = resolve_name(h.backing_file, image_file, "the backing file");
  if (!path.is_ok()) co_return path.status();
  std::string fmt;
  if (h.backing_format) {
    fmt = *h.backing_format;
  } else {
    fmt = probe_image_format(path.value());
    spdlog::warn("{}: the backing file '{}' has no recorded format; probed as {}",
                 r.spec.node_name, path.value(), fmt);
  }
  if (fmt != "raw" && fmt != "qcow2") {
    co_return Status::not_supported("backing file '" + path.value() + "' has format '" + fmt +
                                    "' (supported: raw, qcow2)");
  }
  ChainContext chain = r.chain;
  const std::string self = image_id(image_file);
  if (!self.empty()) chain.image_ids.push_back(self);
  const std::string id = image_id(path.value());
  if (!id.empty() && std::find(chain.image_ids.begin(), chain.image_ids.end(), id) !=
                         chain.image_ids.end()) {
    co_return Status::error(ELOOP, "backing chain loops: '" + path.value() +
                                       "' is already part of the chain above '" + image_file + "'");
  }
  chain.depth += 1;
  NodeSpec spec;
  spec.driver = fmt;
  spec.read_only = true;
  spec.origin = "backing file of " + image_file;
  spec.file_child = ChildRef{"", std::make_shared<NodeSpec>(file_spec(path.value(), true))};
  Result<BlockNodePtr> node = open_implicit(r, spec, chain);
  if (!node.is_ok()) {
    // A loop or an absurd depth is reported once, not wrapped by every layer above it.
    if (node.status().code() == ELOOP) co_return node.status();
    co_return node.status().with_context("opening backing file '" + path.value() + "'");
  }
  co_return node;
}

Task<Result<BlockNodePtr>> open_async(const OpenRequest& r) {
  const NodeSpec& spec = r.spec;
  if (!r.file_child) co_return Status::invalid("qcow2 needs a 'file' child");
  BlockNodePtr file = r.file_child;
  const std::string image_file = filename_of(*file);
  if (file->info().request_alignment > 1) {
    co_return Status::not_supported("qcow2 over a file opened with 'direct: true' is not "
                                    "supported yet; open the file without O_DIRECT");
  }
  const uint64_t file_size = file->size();
  if (file_size < kHeaderV2Length) {
    co_return Status::invalid("'" + image_file + "' is not a qcow2 image (only " +
                              std::to_string(file_size) + " bytes)");
  }
  std::vector<std::byte> head(std::min<uint64_t>(file_size, kHeaderReadLimit));
  if (Status s = co_await file->read(0, head); !s.is_ok()) co_return s;
  Result<Header> parsed = parse_header(head);
  if (!parsed.is_ok()) co_return parsed.status().with_context("'" + image_file + "'");
  Header h = std::move(parsed.value());

  bool read_only = spec.read_only;
  if (!read_only && (h.incompatible_features & kIncompatCorrupt)) {
    co_return Status::invalid("'" + image_file + "' is marked corrupt; open it read-only, or "
                              "repair it with 'qemu-img check -r all'");
  }
  if (!read_only && file->read_only()) {
    co_return Status::read_only("the file child of a writable qcow2 node is read-only");
  }

  ImageFiles files;
  files.file = file;
  if (h.has_data_file()) {
    if (r.data_file_child) {
      files.data_file = r.data_file_child;
    } else if (h.data_file) {
      Result<std::string> path = resolve_name(*h.data_file, image_file, "the data file");
      if (!path.is_ok()) co_return path.status();
      Result<BlockNodePtr> d = open_implicit(r, file_spec(path.value(), read_only), r.chain);
      if (!d.is_ok()) co_return d.status().with_context("opening data file '" + path.value() + "'");
      files.data_file = d.value();
    } else {
      co_return Status::invalid("'" + image_file + "' keeps its data in an external data file "
                                "but names none; give the node a 'data-file'");
    }
  } else if (r.data_file_child) {
    co_return Status::invalid("'" + image_file + "' has no external data file, but 'data-file' "
                              "was given");
  }

  switch (spec.backing_mode) {
    case BackingMode::kNone:
      break;
    case BackingMode::kChild:
      files.backing = r.backing_child;
      break;
    case BackingMode::kFromImage: {
      Result<BlockNodePtr> b = co_await open_backing_from_header(r, h, image_file);
      if (!b.is_ok()) co_return b.status();
      files.backing = b.value();
      break;
    }
  }

  const Geometry g = Geometry::from(h);
  const uint64_t l2_tables_needed = std::max<uint64_t>(g.l1_entries_for(h.size), 1);
  const size_t l2_cache =
      static_cast<size_t>(std::clamp<uint64_t>(l2_tables_needed, 4, kL2CacheBytes / g.cluster_size));
  const size_t rb_cache = static_cast<size_t>(
      std::clamp<uint64_t>(kRefblockCacheBytes / g.cluster_size, 4, 1024));
  auto image = std::make_unique<Image>(spec.node_name, h, files, read_only, l2_cache, rb_cache);
  if (r.on_corruption) {
    image->set_corruption_handler(
        [handler = r.on_corruption, name = spec.node_name](const std::string& msg) {
          handler(name, msg);
        });
  }
  {
    AsyncMutex::Guard meta = co_await image->meta_lock().lock();
    if (Status s = co_await image->prepare_for_use(); !s.is_ok()) {
      co_return s.with_context("'" + image_file + "'");
    }
  }
  // The persistent bitmaps (a read-write image is taken over: see qcow2_bitmap_store.h).
  std::vector<DirtyBitmapPtr> bitmaps;
  Result<Qcow2BitmapStorePtr> store = co_await open_bitmap_store(*image, bitmaps);
  if (!store.is_ok()) {
    // Leave the image as clean as it can be; a crash marker left behind is harmless.
    AsyncMutex::Guard meta = co_await image->meta_lock().lock();
    (void)co_await image->close();
    co_return store.status().with_context("'" + image_file + "'");
  }

  NodeInfo info;
  info.size = h.size;
  info.read_only = read_only;
  info.can_flush = !read_only;
  info.can_fua = false;  // FUA is a flush of data and metadata
  info.can_trim = !read_only;
  info.can_zero = !read_only;
  info.can_fast_zero = !read_only && (h.version >= 3 || !files.backing);
  info.can_cache = false;
  info.can_multi_conn = true;
  info.rotational = file->info().rotational;
  info.request_alignment = 1;
  info.preferred_alignment = 4096;
  info.max_transfer = 32u << 20;
  auto node = std::make_shared<Qcow2Node>(spec.node_name, std::move(image), info);
  node->bitmaps().attach_store(std::move(store.value()), std::move(bitmaps));
  co_return BlockNodePtr(node);
}

}  // namespace

Result<BlockNodePtr> open_qcow2_node(const OpenRequest& r) {
  return run_blocking<Result<BlockNodePtr>>([&r]() { return open_async(r); });
}

Result<std::shared_ptr<Qcow2Node>> Qcow2Node::open(const OpenRequest& r) {
  Result<BlockNodePtr> n = open_qcow2_node(r);
  if (!n.is_ok()) return n.status();
  return std::static_pointer_cast<Qcow2Node>(n.value());
}

}  // namespace blockcore::qcow2
