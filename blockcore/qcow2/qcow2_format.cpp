// The qcow2 header codec: parse_header() validates cluster 0 of an image against
// hostile input, serialize_header() encodes it back (see qcow2_format.h).
#include "blockcore/qcow2/qcow2_format.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "blockcore/base/big_endian.h"

namespace blockcore::qcow2 {
namespace {

constexpr size_t kFeatureEntryBytes = 48;
constexpr size_t kFeatureNameBytes = 46;
constexpr size_t kHeaderV3MinLength = 104;
constexpr size_t kBitmapsExtBytes = 24;
constexpr size_t kCryptoExtBytes = 16;
constexpr size_t kFleeceRecordFixedBytes = 16;
constexpr uint32_t kFleeceRecordVersion = 1;
constexpr size_t kMaxFormatNameLength = 255;
constexpr size_t kMaxDataFileNameLength = 4095;               // PATH_MAX - 1
constexpr uint64_t kMaxFileOffset = static_cast<uint64_t>(INT64_MAX);

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

std::string num(uint64_t v) { return std::to_string(v); }

Status invalid(std::string m) { return Status::invalid("qcow2 header: " + std::move(m)); }
Status unsupported(std::string m) {
  return Status::not_supported("qcow2 header: " + std::move(m));
}

uint64_t align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

std::string ext_name(uint32_t type) {
  switch (type) {
    case kExtBackingFormat: return "backing format";
    case kExtFeatureTable: return "feature name table";
    case kExtBitmaps: return "bitmaps";
    case kExtCryptoHeader: return "encryption header pointer";
    case kExtDataFile: return "external data file name";
    case kExtFleeceBitmaps: return "fleece bitmaps";
    default: return hex32(type);
  }
}

// A string from an extension or the backing name: no NUL bytes inside.
Result<std::string> read_name(std::span<const std::byte> data, const char* what, size_t max_len) {
  if (data.size() > max_len) {
    return invalid(std::string(what) + " is " + num(data.size()) + " bytes long, more than " +
                   num(max_len));
  }
  std::string s(reinterpret_cast<const char*>(data.data()), data.size());
  if (s.find('\0') != std::string::npos) {
    return invalid(std::string(what) + " contains a NUL byte");
  }
  return s;
}

// Parses one extension's payload into `h` (each known type appears at most once).
Status parse_extension(Header& h, uint32_t type, std::span<const std::byte> data,
                       uint64_t cluster_size, uint32_t& seen) {
  int slot = -1;
  switch (type) {
    case kExtBackingFormat: slot = 0; break;
    case kExtFeatureTable: slot = 1; break;
    case kExtBitmaps: slot = 2; break;
    case kExtCryptoHeader: slot = 3; break;
    case kExtDataFile: slot = 4; break;
    case kExtFleeceBitmaps:
      if (data.size() < 4 || load_be32(data.data()) != kFleeceRecordVersion) {
        // Another version of fleece's record: kept, never trusted.
        h.unknown_extensions.push_back(RawExtension{type, {data.begin(), data.end()}});
        return Status::ok();
      }
      slot = 5;
      break;
    default:
      h.unknown_extensions.push_back(RawExtension{type, {data.begin(), data.end()}});
      return Status::ok();
  }
  if (seen & (1u << slot)) return invalid("duplicate " + ext_name(type) + " extension");
  seen |= 1u << slot;

  switch (type) {
    case kExtBackingFormat: {
      auto s = read_name(data, "backing format name", kMaxFormatNameLength);
      if (!s) return s.status();
      h.backing_format = std::move(*s);
      return Status::ok();
    }
    case kExtDataFile: {
      auto s = read_name(data, "external data file name", kMaxDataFileNameLength);
      if (!s) return s.status();
      if (s->empty()) return invalid("external data file name is empty");
      h.data_file = std::move(*s);
      return Status::ok();
    }
    case kExtFeatureTable: {
      if (data.size() % kFeatureEntryBytes != 0) {
        return invalid("feature name table length " + num(data.size()) +
                       " is not a multiple of 48");
      }
      for (size_t off = 0; off < data.size(); off += kFeatureEntryBytes) {
        FeatureName f;
        f.type = static_cast<uint8_t>(data[off]);
        f.bit = static_cast<uint8_t>(data[off + 1]);
        const char* name = reinterpret_cast<const char*>(data.data() + off + 2);
        f.name.assign(name, strnlen(name, kFeatureNameBytes));
        h.feature_names.push_back(std::move(f));
      }
      return Status::ok();
    }
    case kExtBitmaps: {
      if (data.size() != kBitmapsExtBytes) {
        return invalid("bitmaps extension is " + num(data.size()) + " bytes, expected 24");
      }
      BitmapsExtension b;
      b.nb_bitmaps = load_be32(data.data());
      const uint32_t reserved = load_be32(data.data() + 4);
      b.directory_size = load_be64(data.data() + 8);
      b.directory_offset = load_be64(data.data() + 16);
      if (reserved != 0) return invalid("bitmaps extension: reserved field is not zero");
      if (b.nb_bitmaps == 0 || b.nb_bitmaps > kMaxBitmaps) {
        return invalid("bitmaps extension: " + num(b.nb_bitmaps) +
                       " bitmaps (must be 1.." + num(kMaxBitmaps) + ")");
      }
      if (b.directory_size == 0 || b.directory_size > kMaxBitmapDirectoryBytes) {
        return invalid("bitmaps extension: directory size " + num(b.directory_size) +
                       " out of range (1.." + num(kMaxBitmapDirectoryBytes) + ")");
      }
      if (b.directory_offset == 0 || b.directory_offset % cluster_size != 0 ||
          b.directory_offset > kMaxFileOffset - b.directory_size) {
        return invalid("bitmaps extension: directory offset " + num(b.directory_offset) +
                       " is not a valid cluster-aligned offset");
      }
      h.bitmaps = b;
      return Status::ok();
    }
    case kExtFleeceBitmaps: {
      if (data.size() < kFleeceRecordFixedBytes) {
        return invalid("fleece bitmaps extension is " + num(data.size()) + " bytes, too short");
      }
      const uint32_t entries = load_be32(data.data() + 4);
      if (entries > kMaxBitmaps) {
        return invalid("fleece bitmaps extension lists " + num(entries) + " bitmaps, more than " +
                       num(kMaxBitmaps));
      }
      const size_t mask_bytes = (entries + 7) / 8;
      if (data.size() != kFleeceRecordFixedBytes + mask_bytes) {
        return invalid("fleece bitmaps extension is " + num(data.size()) + " bytes, expected " +
                       num(kFleeceRecordFixedBytes + mask_bytes));
      }
      FleeceBitmapsRecord r;
      r.directory_offset = load_be64(data.data() + 8);
      r.crash_safe.resize(entries);
      const std::byte* mask = data.data() + kFleeceRecordFixedBytes;
      for (size_t i = 0; i < mask_bytes * 8; ++i) {
        const bool bit = (std::to_integer<uint8_t>(mask[i / 8]) >> (i % 8)) & 1;
        if (i < entries) {
          r.crash_safe[i] = bit;
        } else if (bit) {
          return invalid("fleece bitmaps extension: bits set past its " + num(entries) +
                         " entries");
        }
      }
      h.fleece_bitmaps = std::move(r);
      return Status::ok();
    }
    case kExtCryptoHeader: {
      if (data.size() != kCryptoExtBytes) {
        return invalid("encryption header pointer is " + num(data.size()) +
                       " bytes, expected 16");
      }
      h.crypto_header = std::make_pair(load_be64(data.data()), load_be64(data.data() + 8));
      return Status::ok();
    }
  }
  return Status::ok();
}

// Walks the extension area [begin, end) of cluster 0.
Status parse_extensions(Header& h, std::span<const std::byte> bytes, uint64_t begin,
                        uint64_t end) {
  uint32_t seen = 0;
  uint64_t off = begin;
  while (off < end) {
    if (end - off < 8) {
      return invalid("header extension at byte " + num(off) + " is cut off by the end of " +
                     "the extension area (byte " + num(end) + ")");
    }
    const uint32_t type = load_be32(bytes.data() + off);
    const uint32_t len = load_be32(bytes.data() + off + 4);
    off += 8;
    if (type == kExtEnd) return Status::ok();
    if (len > end - off) {
      return invalid(ext_name(type) + " extension at byte " + num(off - 8) + ": length " +
                     num(len) + " runs past the end of the extension area (byte " +
                     num(end) + ")");
    }
    FLEECE_RETURN_IF_ERROR(
        parse_extension(h, type, bytes.subspan(off, len), 1ull << h.cluster_bits, seen));
    off += align8(len);
  }
  return Status::ok();
}

// A table of `bytes` bytes at `offset`: cluster aligned, not at 0 when non-empty, and
// not running past the largest file offset.
Status check_table(const char* what, uint64_t offset, uint64_t bytes, uint64_t cluster_size) {
  if (offset % cluster_size != 0) {
    return invalid(std::string(what) + " offset " + num(offset) +
                   " is not aligned to the cluster size " + num(cluster_size));
  }
  if (bytes != 0 && offset == 0) {
    return invalid(std::string(what) + " offset is 0 (it would overlap the header)");
  }
  if (offset > kMaxFileOffset - bytes) {
    return invalid(std::string(what) + " at offset " + num(offset) + " (" + num(bytes) +
                   " bytes) runs past the largest file offset");
  }
  return Status::ok();
}

// Every rule that ties fields together, checked after the extensions are known.
Status check_fields(const Header& h) {
  const uint64_t cs = h.cluster_size();
  const uint64_t unknown = h.incompatible_features & ~kIncompatKnown;
  if (unknown != 0) {
    return unsupported("image uses unsupported incompatible features: " +
                       describe_features(h, 0, unknown));
  }
  if (h.crypt_method == 1 || h.crypt_method == 2) {
    return unsupported(std::string("encrypted images (") +
                       (h.crypt_method == 1 ? "AES" : "LUKS") + ") are not supported");
  }
  if (h.crypt_method != 0) return invalid("unknown encryption method " + num(h.crypt_method));
  if (h.crypto_header) {
    return invalid("encryption header pointer extension in an image without LUKS encryption");
  }
  if (h.refcount_order > 6) {
    return invalid("refcount_order " + num(h.refcount_order) + " is larger than 6");
  }
  if (h.extended_l2() && h.cluster_bits < kMinClusterBitsExtendedL2) {
    return invalid("extended L2 entries need clusters of at least 16 KiB (cluster_bits " +
                   num(h.cluster_bits) + ")");
  }
  const auto ct = static_cast<uint8_t>(h.compression_type);
  if (ct > 1) return unsupported("unknown compression type " + num(ct));
  if (ct != 0 && !(h.incompatible_features & kIncompatCompression)) {
    return invalid("compression type " + num(ct) +
                   " is set without the compression type incompatible bit");
  }
  if (ct == 0 && (h.incompatible_features & kIncompatCompression)) {
    return invalid("the compression type incompatible bit is set but compression type is "
                   "deflate");
  }
  if (h.data_file && !h.has_data_file()) {
    return invalid("external data file name extension without the external data file bit");
  }
  if (h.data_file_raw() && !h.has_data_file()) {
    return invalid("raw external data bit set without the external data file bit");
  }
  if (h.data_file_raw() && !h.backing_file.empty()) {
    return invalid("a raw external data file cannot be combined with a backing file");
  }
  if (h.size > kMaxImageSize) {
    return invalid("virtual size " + num(h.size) + " is larger than " + num(kMaxImageSize));
  }
  if (h.l1_size > kMaxL1Bytes / 8) {
    return invalid("L1 table of " + num(h.l1_size) + " entries is larger than " +
                   num(kMaxL1Bytes) + " bytes");
  }
  const uint32_t l2_bits = h.cluster_bits - (h.extended_l2() ? 4 : 3);
  const uint32_t span_bits = h.cluster_bits + l2_bits;
  const uint64_t needed = (h.size >> span_bits) + ((h.size & ((1ull << span_bits) - 1)) ? 1 : 0);
  if (h.l1_size < needed) {
    return invalid("L1 table of " + num(h.l1_size) + " entries is too small for virtual size " +
                   num(h.size) + " (needs " + num(needed) + ")");
  }
  FLEECE_RETURN_IF_ERROR(check_table("L1 table", h.l1_table_offset, uint64_t{h.l1_size} * 8, cs));
  if (h.refcount_table_clusters == 0) return invalid("image has no refcount table");
  if (uint64_t{h.refcount_table_clusters} * cs > kMaxRefcountTableBytes) {
    return invalid("refcount table of " + num(h.refcount_table_clusters) +
                   " clusters is larger than " + num(kMaxRefcountTableBytes) + " bytes");
  }
  FLEECE_RETURN_IF_ERROR(check_table("refcount table", h.refcount_table_offset,
                                     uint64_t{h.refcount_table_clusters} * cs, cs));
  if (h.nb_snapshots > kMaxSnapshots) {
    return invalid(num(h.nb_snapshots) + " snapshots, more than " + num(kMaxSnapshots));
  }
  // 40 bytes is the smallest snapshot table entry.
  FLEECE_RETURN_IF_ERROR(
      check_table("snapshot table", h.snapshots_offset, uint64_t{h.nb_snapshots} * 40, cs));
  return Status::ok();
}

void put_extension(std::vector<std::byte>& out, uint32_t type, std::span<const std::byte> data) {
  const size_t at = out.size();
  out.resize(at + 8 + align8(data.size()));
  store_be32(out.data() + at, type);
  store_be32(out.data() + at + 4, static_cast<uint32_t>(data.size()));
  if (!data.empty()) std::memcpy(out.data() + at + 8, data.data(), data.size());
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

Result<Header> parse_header(std::span<const std::byte> bytes) {
  if (bytes.size() < kHeaderV2Length) {
    return invalid("image is " + num(bytes.size()) + " bytes, shorter than a qcow2 header");
  }
  const std::byte* p = bytes.data();
  const uint32_t magic = load_be32(p);
  if (magic != kMagic) return invalid("bad magic " + hex32(magic) + ", not a qcow2 image");
  Header h;
  h.version = load_be32(p + 4);
  if (h.version != 2 && h.version != 3) {
    return unsupported("qcow2 version " + num(h.version) + " is not supported (only 2 and 3)");
  }
  h.backing_file_offset = load_be64(p + 8);
  h.backing_file_size = load_be32(p + 16);
  h.cluster_bits = load_be32(p + 20);
  h.size = load_be64(p + 24);
  h.crypt_method = load_be32(p + 32);
  h.l1_size = load_be32(p + 36);
  h.l1_table_offset = load_be64(p + 40);
  h.refcount_table_offset = load_be64(p + 48);
  h.refcount_table_clusters = load_be32(p + 56);
  h.nb_snapshots = load_be32(p + 60);
  h.snapshots_offset = load_be64(p + 64);
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits) {
    return invalid("cluster_bits " + num(h.cluster_bits) + " out of range (" +
                   num(kMinClusterBits) + ".." + num(kMaxClusterBits) + ")");
  }
  const uint64_t cs = h.cluster_size();
  const uint64_t avail = std::min<uint64_t>(bytes.size(), cs);  // readable part of cluster 0

  if (h.version == 2) {
    h.header_length = kHeaderV2Length;
    h.refcount_order = 4;
  } else {
    if (avail < kHeaderV3MinLength) {
      return invalid("image is " + num(bytes.size()) + " bytes, shorter than a v3 header");
    }
    h.incompatible_features = load_be64(p + 72);
    h.compatible_features = load_be64(p + 80);
    h.autoclear_features = load_be64(p + 88);
    h.refcount_order = load_be32(p + 96);
    h.header_length = load_be32(p + 100);
    if (h.header_length < kHeaderV3MinLength || h.header_length % 8 != 0) {
      return invalid("header_length " + num(h.header_length) +
                     " is invalid (at least 104 and a multiple of 8)");
    }
    if (h.header_length > avail) {
      return invalid("header_length " + num(h.header_length) + " runs past " +
                     (avail == cs ? "cluster 0" : "the end of the image"));
    }
    if (h.header_length > kHeaderV3MinLength) {
      h.compression_type = static_cast<CompressionType>(p[104]);
      h.unknown_header_fields.assign(p + 105, p + h.header_length);
      bool all_zero = true;
      for (std::byte b : h.unknown_header_fields) all_zero &= (b == std::byte{0});
      if (all_zero) h.unknown_header_fields.clear();
    }
  }

  uint64_t ext_end = avail;
  if (h.backing_file_offset != 0) {
    if (h.backing_file_size > kMaxBackingFileNameLength) {
      return invalid("backing file name length " + num(h.backing_file_size) +
                     " is larger than " + num(kMaxBackingFileNameLength));
    }
    if (h.backing_file_offset < h.header_length) {
      return invalid("backing file name offset " + num(h.backing_file_offset) +
                     " lies inside the header");
    }
    if (h.backing_file_offset > cs || h.backing_file_size > cs - h.backing_file_offset) {
      return invalid("backing file name (offset " + num(h.backing_file_offset) + ", " +
                     num(h.backing_file_size) + " bytes) runs past cluster 0");
    }
    if (h.backing_file_offset + h.backing_file_size > bytes.size()) {
      return invalid("backing file name runs past the end of the image");
    }
    auto name = read_name(bytes.subspan(h.backing_file_offset, h.backing_file_size),
                          "backing file name", kMaxBackingFileNameLength);
    if (!name) return name.status();
    h.backing_file = std::move(*name);
    ext_end = h.backing_file_offset;
  }
  FLEECE_RETURN_IF_ERROR(parse_extensions(h, bytes, h.header_length, ext_end));
  FLEECE_RETURN_IF_ERROR(check_fields(h));
  if (h.backing_format && h.backing_file.empty()) {
    return invalid("backing format extension without a backing file");
  }
  return h;
}

Result<std::vector<std::byte>> serialize_header(const Header& h) {
  if (h.version != 2 && h.version != 3) {
    return Status::invalid("qcow2 header: cannot write version " + num(h.version));
  }
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits) {
    return Status::invalid("qcow2 header: cannot write cluster_bits " + num(h.cluster_bits));
  }
  if (h.backing_file.size() > kMaxBackingFileNameLength) {
    return Status::invalid("qcow2 header: backing file name longer than 1023 bytes");
  }
  if (h.backing_format && h.backing_file.empty()) {
    return Status::invalid("qcow2 header: backing format without a backing file");
  }
  size_t length = kHeaderV2Length;
  if (h.version == 2) {
    if (h.incompatible_features || h.compatible_features || h.autoclear_features ||
        h.refcount_order != 4 || h.compression_type != CompressionType::kDeflate ||
        h.data_file || h.bitmaps || h.crypto_header || h.fleece_bitmaps ||
        !h.unknown_header_fields.empty()) {
      return Status::invalid("qcow2 header: a v2 header cannot carry feature bits, "
                             "refcount_order other than 4, compression, a data file, "
                             "bitmaps or encryption");
    }
  } else {
    length = h.header_length;
    if (length < kHeaderV3MinLength || length % 8 != 0) {
      return Status::invalid("qcow2 header: cannot write header_length " + num(length));
    }
    if (length == kHeaderV3MinLength && (h.compression_type != CompressionType::kDeflate ||
                                         !h.unknown_header_fields.empty())) {
      return Status::invalid("qcow2 header: header_length 104 has no room for the "
                             "compression type");
    }
    if (length > kHeaderV3MinLength && h.unknown_header_fields.size() > length - 105) {
      return Status::invalid("qcow2 header: unknown header fields do not fit header_length");
    }
  }

  std::vector<std::byte> out(length);
  std::byte* p = out.data();
  store_be32(p, kMagic);
  store_be32(p + 4, h.version);
  store_be32(p + 20, h.cluster_bits);
  store_be64(p + 24, h.size);
  store_be32(p + 32, h.crypt_method);
  store_be32(p + 36, h.l1_size);
  store_be64(p + 40, h.l1_table_offset);
  store_be64(p + 48, h.refcount_table_offset);
  store_be32(p + 56, h.refcount_table_clusters);
  store_be32(p + 60, h.nb_snapshots);
  store_be64(p + 64, h.snapshots_offset);
  if (h.version == 3) {
    store_be64(p + 72, h.incompatible_features);
    store_be64(p + 80, h.compatible_features);
    store_be64(p + 88, h.autoclear_features);
    store_be32(p + 96, h.refcount_order);
    store_be32(p + 100, static_cast<uint32_t>(length));
    if (length > kHeaderV3MinLength) {
      p[104] = static_cast<std::byte>(h.compression_type);
      if (!h.unknown_header_fields.empty()) {
        std::memcpy(p + 105, h.unknown_header_fields.data(), h.unknown_header_fields.size());
      }
    }
  }

  if (h.backing_format) put_extension(out, kExtBackingFormat, as_bytes(*h.backing_format));
  if (h.version == 3) {
    if (h.data_file) put_extension(out, kExtDataFile, as_bytes(*h.data_file));
    if (!h.feature_names.empty()) {
      std::vector<std::byte> table(h.feature_names.size() * kFeatureEntryBytes);
      for (size_t i = 0; i < h.feature_names.size(); ++i) {
        const FeatureName& f = h.feature_names[i];
        std::byte* e = table.data() + i * kFeatureEntryBytes;
        e[0] = static_cast<std::byte>(f.type);
        e[1] = static_cast<std::byte>(f.bit);
        std::memcpy(e + 2, f.name.data(), std::min(f.name.size(), kFeatureNameBytes));
      }
      put_extension(out, kExtFeatureTable, table);
    }
    if (h.bitmaps) {
      std::array<std::byte, kBitmapsExtBytes> b{};
      store_be32(b.data(), h.bitmaps->nb_bitmaps);
      store_be64(b.data() + 8, h.bitmaps->directory_size);
      store_be64(b.data() + 16, h.bitmaps->directory_offset);
      put_extension(out, kExtBitmaps, b);
    }
    if (h.crypto_header) {
      std::array<std::byte, kCryptoExtBytes> b{};
      store_be64(b.data(), h.crypto_header->first);
      store_be64(b.data() + 8, h.crypto_header->second);
      put_extension(out, kExtCryptoHeader, b);
    }
    if (h.fleece_bitmaps) {
      const FleeceBitmapsRecord& r = *h.fleece_bitmaps;
      if (r.crash_safe.size() > kMaxBitmaps) {
        return Status::invalid("qcow2 header: the fleece bitmaps record lists more than " +
                               num(kMaxBitmaps) + " bitmaps");
      }
      std::vector<std::byte> b(kFleeceRecordFixedBytes + (r.crash_safe.size() + 7) / 8);
      store_be32(b.data(), kFleeceRecordVersion);
      store_be32(b.data() + 4, static_cast<uint32_t>(r.crash_safe.size()));
      store_be64(b.data() + 8, r.directory_offset);
      for (size_t i = 0; i < r.crash_safe.size(); ++i) {
        if (r.crash_safe[i]) b[kFleeceRecordFixedBytes + i / 8] |= std::byte(1u << (i % 8));
      }
      put_extension(out, kExtFleeceBitmaps, b);
    }
  }
  for (const RawExtension& e : h.unknown_extensions) {
    // A record fleece writes replaces one of another version.
    if (e.type == kExtFleeceBitmaps && h.fleece_bitmaps) continue;
    put_extension(out, e.type, e.data);
  }
  put_extension(out, kExtEnd, {});

  if (!h.backing_file.empty()) {
    store_be64(out.data() + 8, out.size());
    store_be32(out.data() + 16, static_cast<uint32_t>(h.backing_file.size()));
    const auto name = as_bytes(h.backing_file);
    out.insert(out.end(), name.begin(), name.end());
  }
  if (out.size() > h.cluster_size()) {
    return Status::invalid("qcow2 header: header, extensions and backing file name (" +
                           num(out.size()) + " bytes) do not fit in one " +
                           num(h.cluster_size()) + "-byte cluster");
  }
  return out;
}

std::vector<FeatureName> default_feature_names() {
  return {
      {0, 0, "dirty bit"},
      {0, 1, "corrupt bit"},
      {0, 2, "external data file"},
      {0, 3, "compression type"},
      {0, 4, "extended L2 entries"},
      {1, 0, "lazy refcounts"},
      {2, 0, "bitmaps"},
      {2, 1, "raw external data"},
      {2, 63, "fleece crash-safe bitmaps"},
  };
}

std::string describe_features(const Header& h, uint8_t type, uint64_t bits) {
  const std::vector<FeatureName> builtin = default_feature_names();
  std::string out;
  for (uint32_t bit = 0; bit < 64; ++bit) {
    if (!((bits >> bit) & 1)) continue;
    std::string name;
    for (const FeatureName& f : h.feature_names) {
      if (f.type == type && f.bit == bit && !f.name.empty()) {
        name = f.name;
        break;
      }
    }
    if (name.empty()) {
      for (const FeatureName& f : builtin) {
        if (f.type == type && f.bit == bit) name = f.name;
      }
    }
    if (name.empty()) {
      name = "bit " + num(bit);
    } else {
      name += " (bit " + num(bit) + ")";
    }
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::string probe_image_format(const std::string& path) {
  std::byte magic[4];
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "raw";
  const ssize_t n = ::pread(fd, magic, sizeof magic, 0);
  ::close(fd);
  return n == static_cast<ssize_t>(sizeof magic) && load_be32(magic) == kMagic ? "qcow2" : "raw";
}

}  // namespace blockcore::qcow2
