#include "server/control/create_options.h"

#include <bit>

#include "server/control/qmp_error.h"

namespace server::control {

using blockcore::Result;
using blockcore::Status;
using blockcore::qcow2::CompressionType;
using blockcore::qcow2::CreateOptions;
using nlohmann::json;

namespace {

// A QEMU 'size' member that must be present.
uint64_t required_size(ArgReader& r, std::string_view key) {
  bool present = r.ok() && r.optional_value(key) != nullptr;
  // optional_value marked it read; read it again typed (same member, same checks).
  std::optional<uint64_t> v = r.optional_uint64(key);
  if (!present && r.ok()) r.fail(generic_error(missing_parameter(r.full_name(key))));
  return v.value_or(0);
}

// A BlockdevRef that fleece takes by node-name only: inline node definitions would
// open a node just for the job, which blockdev-add does better.
std::optional<std::string> node_ref(ArgReader& r, std::string_view key, bool required) {
  const json* v = r.optional_value(key);
  if (v == nullptr) {
    if (required && r.ok()) r.fail(generic_error(missing_parameter(r.full_name(key))));
    return std::nullopt;
  }
  if (v->is_string()) return v->get<std::string>();
  if (v->is_object()) {
    r.fail(generic_error("Parameter '" + r.full_name(key) +
                         "': fleece takes the node-name of a node added with blockdev-add, "
                         "not an inline node definition"));
  } else {
    r.fail_type(key, "BlockdevRef");
  }
  return std::nullopt;
}

void read_file(ArgReader& r, FileCreateSpec& f) {
  f.filename = r.required_string("filename");
  f.size = required_size(r, "size");
  f.preallocation =
      r.optional_enum("preallocation", {"off", "metadata", "falloc", "full"}).value_or("off");
  if (f.preallocation == "metadata") {
    r.fail(generic_error("Unsupported preallocation mode 'metadata'"));
  }
  // QEMU sets the btrfs NOCOW flag or an XFS extent size hint; both are tuning hints
  // fleece accepts without acting on them.
  (void)r.optional_bool("nocow");
  (void)r.optional_uint64("extent-size-hint");
}

void read_qcow2(ArgReader& r, Qcow2CreateSpec& q) {
  q.file = node_ref(r, "file", /*required=*/true).value_or("");
  q.data_file = node_ref(r, "data-file", /*required=*/false);
  q.data_file_raw = r.optional_bool("data-file-raw", false);
  q.extended_l2 = r.optional_bool("extended-l2", false);
  q.size = required_size(r, "size");
  q.version = r.optional_enum("version", {"v2", "v3"});
  q.backing_file = r.optional_string("backing-file");
  q.backing_fmt = r.optional_enum("backing-fmt", {"file", "qcow2", "raw"});
  q.backing_node = node_ref(r, "backing", /*required=*/false);
  if (r.ok() && q.backing_node && q.backing_file) {
    r.fail(generic_error("'backing' and 'backing-file' cannot be used together"));
  }
  if (r.ok() && q.backing_node && q.backing_fmt) {
    r.fail(generic_error("'backing-fmt' cannot be used with 'backing': the format is the "
                         "backing node's driver"));
  }
  if (r.optional_value("encrypt") != nullptr) {
    r.fail(generic_error("Encrypted qcow2 images are not supported by fleece"));
  }
  q.cluster_size = r.optional_uint64("cluster-size");
  if (auto p = r.optional_enum("preallocation", {"off", "metadata", "falloc", "full"});
      p && *p != "off") {
    r.fail(generic_error("Preallocation mode '" + *p +
                         "' is not supported by fleece for qcow2 images"));
  }
  q.lazy_refcounts = r.optional_bool("lazy-refcounts", false);
  q.refcount_bits = r.optional_uint64("refcount-bits");
  q.compression_type = r.optional_enum("compression-type", {"zlib", "zstd"});
}

}  // namespace

CreateSpec read_create_options(ArgReader& r) {
  CreateSpec spec;
  bool present = r.ok() && r.optional_value("driver") != nullptr;
  std::optional<std::string> driver = r.optional_enum("driver", {"file", "qcow2"});
  if (!present && r.ok()) r.fail(generic_error(missing_parameter(r.full_name("driver"))));
  spec.driver = driver.value_or("");
  if (spec.driver == "file") read_file(r, spec.file);
  if (spec.driver == "qcow2") read_qcow2(r, spec.qcow2);
  return spec;
}

Result<CreateOptions> qcow2_create_options(const Qcow2CreateSpec& q,
                                           const std::optional<std::string>& backing_file,
                                           const std::optional<std::string>& backing_format,
                                           const std::optional<std::string>& data_file_name) {
  // The checks and messages of QEMU's qcow2_co_create(), in its order.
  constexpr char kUseV3[] = " (use version=v3 or greater)";
  CreateOptions o;
  o.size = q.size;
  if (q.size % 512 != 0) return generic_error("Image size must be a multiple of 512 bytes");
  o.version = q.version.value_or("v3") == "v2" ? 2 : 3;
  o.extended_l2 = q.extended_l2;
  if (o.extended_l2 && o.version < 3) {
    return generic_error(
        std::string("Extended L2 tables are only supported with compatibility level 1.1 and "
                    "above") + kUseV3);
  }
  const uint64_t cluster_size = q.cluster_size.value_or(65536);
  if (!std::has_single_bit(cluster_size) || cluster_size < 512 || cluster_size > (2u << 20)) {
    return generic_error("Cluster size must be a power of two between 512 and 2048k");
  }
  o.cluster_bits = static_cast<uint32_t>(std::countr_zero(cluster_size));
  if (o.extended_l2 && cluster_size < 16384) {
    return generic_error(
        "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
  }
  if (backing_format && !backing_file) {
    return generic_error("Backing format cannot be used without backing file");
  }
  o.lazy_refcounts = q.lazy_refcounts;
  if (o.lazy_refcounts && o.version < 3) {
    return generic_error(
        std::string("Lazy refcounts only supported with compatibility level 1.1 and above") +
        kUseV3);
  }
  const uint64_t refcount_bits = q.refcount_bits.value_or(16);
  if (refcount_bits > 64 || !std::has_single_bit(refcount_bits)) {
    return generic_error("Refcount width must be a power of two and may not exceed 64 bits");
  }
  if (o.version < 3 && refcount_bits != 16) {
    return generic_error(
        std::string("Different refcount widths than 16 bits require compatibility level 1.1 "
                    "or above") + kUseV3);
  }
  o.refcount_order = static_cast<uint32_t>(std::countr_zero(refcount_bits));
  if (q.data_file_raw && !data_file_name) {
    return generic_error("data-file-raw requires data-file");
  }
  if (q.data_file_raw && backing_file) {
    return generic_error("Backing file and data-file-raw cannot be used at the same time");
  }
  o.data_file_raw = q.data_file_raw;
  if (data_file_name && o.version < 3) {
    return generic_error(
        std::string("External data files are only supported with compatibility level 1.1 "
                    "and above") + kUseV3);
  }
  o.data_file = data_file_name;
  if (q.compression_type.value_or("zlib") == "zstd") {
    if (o.version < 3) {
      return generic_error(
          std::string("Non-zlib compression type is only supported with compatibility level "
                      "1.1 and above") + kUseV3);
    }
    o.compression = CompressionType::kZstd;
  }
  o.backing_file = backing_file.value_or("");
  o.backing_format = backing_format;
  // What is left (sizes beyond the format's limits, over-long names) the image creator
  // refuses with its own message.
  if (Status s = blockcore::qcow2::check_create_options(o); !s.is_ok()) {
    return generic_error(s.message());
  }
  return o;
}

}  // namespace server::control
