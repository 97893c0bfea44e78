// Option checks, initial layout and file creation of new qcow2 images (see
// image_creator.h).
#include "blockcore/qcow2/image_creator.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/refcount_codec.h"

namespace blockcore::qcow2 {
namespace {

Status bad(const std::string& m) { return Status::invalid("qcow2 create: " + m); }

uint64_t div_round_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// L1 entries a disk of o.size bytes needs.
uint64_t l1_entries(const CreateOptions& o) {
  const uint32_t l2_bits = o.cluster_bits - (o.extended_l2 ? 4 : 3);
  const uint32_t span_bits = o.cluster_bits + l2_bits;
  return (o.size >> span_bits) + ((o.size & ((1ull << span_bits) - 1)) != 0);
}

Status check_name(const std::string& s, const char* what, size_t max_len) {
  if (s.empty()) return bad(std::string(what) + " is empty");
  if (s.size() > max_len) {
    return bad(std::string(what) + " is longer than " + std::to_string(max_len) + " bytes");
  }
  if (s.find('\0') != std::string::npos) return bad(std::string(what) + " contains a NUL byte");
  return Status::ok();
}

Header header_for(const CreateOptions& o) {
  Header h;
  h.version = o.version;
  h.cluster_bits = o.cluster_bits;
  h.size = o.size;
  h.refcount_order = o.refcount_order;
  h.backing_file = o.backing_file;
  h.backing_format = o.backing_format;
  if (o.version == 2) {
    h.header_length = kHeaderV2Length;
    return h;
  }
  h.header_length = kHeaderV3Length;
  if (o.extended_l2) h.incompatible_features |= kIncompatExtendedL2;
  if (o.compression != CompressionType::kDeflate) {
    h.incompatible_features |= kIncompatCompression;
    h.compression_type = o.compression;
  }
  if (o.data_file) {
    h.incompatible_features |= kIncompatDataFile;
    h.data_file = o.data_file;
  }
  if (o.data_file_raw) h.autoclear_features |= kAutoclearDataFileRaw;
  if (o.lazy_refcounts) h.compatible_features |= kCompatLazyRefcounts;
  h.feature_names = default_feature_names();
  return h;
}

}  // namespace

Status check_create_options(const CreateOptions& o) {
  if (o.version != 2 && o.version != 3) {
    return bad("version " + std::to_string(o.version) + " (compat) must be 2 or 3");
  }
  if (o.cluster_bits < kMinClusterBits || o.cluster_bits > kMaxClusterBits) {
    return bad("cluster size 2^" + std::to_string(o.cluster_bits) +
               " out of range (512 bytes to 2 MiB)");
  }
  if (o.refcount_order > kMaxRefcountOrder) {
    return bad("refcount_order " + std::to_string(o.refcount_order) + " out of range (0..6)");
  }
  if (o.size == 0 || o.size > kMaxImageSize) {
    return bad("size " + std::to_string(o.size) + " out of range (1.." +
               std::to_string(kMaxImageSize) + ")");
  }
  if (o.size % 512 != 0) {
    return bad("size " + std::to_string(o.size) + " is not a multiple of 512");
  }
  if (o.version == 2) {
    if (o.refcount_order != 4) return bad("version 2 images only support 16-bit refcounts");
    if (o.lazy_refcounts) return bad("lazy refcounts need version 3");
    if (o.data_file) return bad("an external data file needs version 3");
    if (o.extended_l2) return bad("extended L2 entries need version 3");
    if (o.compression != CompressionType::kDeflate) {
      return bad("a compression type other than deflate needs version 3");
    }
  }
  if (o.compression != CompressionType::kDeflate && o.compression != CompressionType::kZstd) {
    return bad("unknown compression type");
  }
  if (o.extended_l2 && o.cluster_bits < kMinClusterBitsExtendedL2) {
    return bad("extended L2 entries need a cluster size of at least 16 KiB");
  }
  if (o.data_file_raw && !o.data_file) return bad("data_file_raw needs a data file");
  if (o.data_file) FLEECE_RETURN_IF_ERROR(check_name(*o.data_file, "data file name", 4095));
  if (!o.backing_file.empty()) {
    FLEECE_RETURN_IF_ERROR(
        check_name(o.backing_file, "backing file name", kMaxBackingFileNameLength));
    if (o.data_file_raw) return bad("a backing file cannot be used with data_file_raw");
  }
  if (o.backing_format) {
    if (o.backing_file.empty()) return bad("a backing format needs a backing file");
    FLEECE_RETURN_IF_ERROR(check_name(*o.backing_format, "backing format", 255));
  }
  if (l1_entries(o) * 8 > kMaxL1Bytes) {
    return bad("size " + std::to_string(o.size) + " needs an L1 table larger than " +
               std::to_string(kMaxL1Bytes) + " bytes with this cluster size");
  }
  return Status::ok();
}

Result<std::vector<ImageWrite>> layout_new_image(const CreateOptions& o) {
  FLEECE_RETURN_IF_ERROR(check_create_options(o));
  const uint64_t cs = 1ull << o.cluster_bits;
  const uint64_t l1_count = l1_entries(o);
  const uint64_t l1_clusters = div_round_up(l1_count * 8, cs);
  const uint64_t rb_entries = refcounts_per_block(cs, o.refcount_order);

  // Refcount table and blocks must cover every metadata cluster, themselves included.
  uint64_t rt_clusters = 1, rb_count = 1;
  for (;;) {
    const uint64_t total = 1 + rt_clusters + rb_count + l1_clusters;
    const uint64_t rb = div_round_up(total, rb_entries);
    const uint64_t rt = div_round_up(rb * 8, cs);
    if (rb == rb_count && rt == rt_clusters) break;
    rb_count = rb;
    rt_clusters = rt;
  }
  if (rt_clusters * cs > kMaxRefcountTableBytes) {
    return bad("the refcount table would exceed " + std::to_string(kMaxRefcountTableBytes) +
               " bytes");
  }
  const uint64_t rt_offset = cs;
  const uint64_t rb_offset = rt_offset + rt_clusters * cs;
  const uint64_t l1_offset = rb_offset + rb_count * cs;
  const uint64_t total_clusters = 1 + rt_clusters + rb_count + l1_clusters;

  Header h = header_for(o);
  h.l1_size = static_cast<uint32_t>(l1_count);
  h.l1_table_offset = l1_offset;
  h.refcount_table_offset = rt_offset;
  h.refcount_table_clusters = static_cast<uint32_t>(rt_clusters);
  auto header = serialize_header(h);
  if (!header && !h.feature_names.empty()) {
    // Like QEMU, leave out the (optional) feature name table when cluster 0 is too small.
    h.feature_names.clear();
    header = serialize_header(h);
  }
  if (!header) return header.status().with_context("qcow2 create");

  std::vector<ImageWrite> writes;
  writes.push_back({0, std::move(*header)});
  writes.back().bytes.resize(cs);

  ImageWrite table{rt_offset, std::vector<std::byte>(rt_clusters * cs)};
  for (uint64_t i = 0; i < rb_count; ++i) store_be64(table.bytes.data() + i * 8, rb_offset + i * cs);
  writes.push_back(std::move(table));

  ImageWrite blocks{rb_offset, std::vector<std::byte>(rb_count * cs)};
  for (uint64_t c = 0; c < total_clusters; ++c) {
    std::span<std::byte> block(blocks.bytes.data() + (c / rb_entries) * cs, cs);
    set_refcount(block, o.refcount_order, c % rb_entries, 1);
  }
  writes.push_back(std::move(blocks));
  writes.push_back({l1_offset, std::vector<std::byte>(l1_clusters * cs)});
  return writes;
}

Status create_image_file(const std::string& path, const CreateOptions& o) {
  auto layout = layout_new_image(o);
  if (!layout) return layout.status();
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return Status::from_errno(errno, "qcow2 create: open " + path);
  Status st;
  for (const ImageWrite& w : *layout) {
    size_t done = 0;
    while (done < w.bytes.size() && st.is_ok()) {
      const ssize_t n = ::pwrite(fd, w.bytes.data() + done, w.bytes.size() - done,
                                 static_cast<off_t>(w.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        st = Status::from_errno(n < 0 ? errno : EIO, "qcow2 create: write " + path);
      } else {
        done += static_cast<size_t>(n);
      }
    }
    if (!st.is_ok()) break;
  }
  if (st.is_ok() && ::fsync(fd) != 0) st = Status::from_errno(errno, "qcow2 create: fsync " + path);
  if (::close(fd) != 0 && st.is_ok()) st = Status::from_errno(errno, "qcow2 create: close " + path);
  if (!st.is_ok()) ::unlink(path.c_str());
  return st;
}

}  // namespace blockcore::qcow2
