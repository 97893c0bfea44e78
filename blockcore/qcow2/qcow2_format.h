// The qcow2 on-disk header: constants of the format, the parsed header with its
// extensions, and the functions that decode cluster 0 of an image (validating every
// field against hostile input) and encode it back. Unknown header extensions are kept
// verbatim so an image keeps what fleeced does not understand.
// Reference: QEMU docs/interop/qcow2.rst. All integers are big-endian on disk.
// Threading: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/result.h"

namespace blockcore::qcow2 {

inline constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
inline constexpr uint32_t kHeaderV2Length = 72;
inline constexpr uint32_t kHeaderV3Length = 112;  // what fleeced writes (with compression_type)

inline constexpr uint32_t kMinClusterBits = 9;
inline constexpr uint32_t kMaxClusterBits = 21;
inline constexpr uint32_t kMinClusterBitsExtendedL2 = 14;

// Incompatible feature bits.
inline constexpr uint64_t kIncompatDirty = 1ull << 0;
inline constexpr uint64_t kIncompatCorrupt = 1ull << 1;
inline constexpr uint64_t kIncompatDataFile = 1ull << 2;
inline constexpr uint64_t kIncompatCompression = 1ull << 3;
inline constexpr uint64_t kIncompatExtendedL2 = 1ull << 4;
inline constexpr uint64_t kIncompatKnown = 0x1f;
// Compatible feature bits.
inline constexpr uint64_t kCompatLazyRefcounts = 1ull << 0;
// Autoclear feature bits.
inline constexpr uint64_t kAutoclearBitmaps = 1ull << 0;
inline constexpr uint64_t kAutoclearDataFileRaw = 1ull << 1;
// fleece's own: vouches for the fleece bitmaps record (below). Any other program that
// writes the image clears it, as the spec demands of unknown autoclear bits.
inline constexpr uint64_t kAutoclearFleeceBitmaps = 1ull << 63;
// The autoclear bits a writer of this code base keeps; every other one is cleared.
inline constexpr uint64_t kAutoclearKnown =
    kAutoclearBitmaps | kAutoclearDataFileRaw | kAutoclearFleeceBitmaps;

// Header extension types.
inline constexpr uint32_t kExtEnd = 0x00000000;
inline constexpr uint32_t kExtBackingFormat = 0xe2792aca;
inline constexpr uint32_t kExtFeatureTable = 0x6803f857;
inline constexpr uint32_t kExtBitmaps = 0x23852875;
inline constexpr uint32_t kExtCryptoHeader = 0x0537be77;
inline constexpr uint32_t kExtDataFile = 0x44415441;
// fleece's crash-safe bitmaps record: a type QEMU does not know, so it keeps it verbatim.
inline constexpr uint32_t kExtFleeceBitmaps = 0x666c6362;  // "flcb"

enum class CompressionType : uint8_t { kDeflate = 0, kZstd = 1 };

// Limits that keep a hostile header from costing memory or time (QEMU's values).
inline constexpr uint64_t kMaxL1Bytes = 32ull << 20;              // QCOW_MAX_L1_SIZE
inline constexpr uint64_t kMaxRefcountTableBytes = 8ull << 20;    // QCOW_MAX_REFTABLE_SIZE
inline constexpr uint32_t kMaxBackingFileNameLength = 1023;
inline constexpr uint32_t kMaxSnapshots = 65536;
inline constexpr uint64_t kMaxImageSize = 1ull << 61;            // bytes of guest disk
inline constexpr uint32_t kMaxBitmaps = 65535;                     // QCOW2_MAX_BITMAPS
inline constexpr uint64_t kMaxBitmapDirectoryBytes = 1024ull * kMaxBitmaps;

// One 48-byte entry of the feature name table.
struct FeatureName {
  uint8_t type = 0;  // 0 incompatible, 1 compatible, 2 autoclear
  uint8_t bit = 0;
  std::string name;  // up to 46 bytes
};

// A header extension fleeced does not interpret, kept verbatim.
struct RawExtension {
  uint32_t type = 0;
  std::vector<std::byte> data;
};

// The bitmaps extension payload (its directory is read by the bitmaps code).
struct BitmapsExtension {
  uint32_t nb_bitmaps = 0;
  uint64_t directory_size = 0;
  uint64_t directory_offset = 0;
};

// fleece's crash-safe bitmaps record (extension kExtFleeceBitmaps), to be trusted only
// while kAutoclearFleeceBitmaps and kAutoclearBitmaps are set: the bitmaps of the
// directory at `directory_offset` whose stored copy fleeced keeps a superset of every
// write it made (their in_use flag only tells other programs not to trust them).
// Payload, big-endian: u32 version (1), u32 entries, u64 directory_offset, then
// ceil(entries / 8) bytes: bit i (LSB first) of byte i / 8 = directory entry i is
// crash-safe; bits past `entries` are zero. Another version is kept verbatim as an
// unknown extension (and not trusted).
struct FleeceBitmapsRecord {
  uint64_t directory_offset = 0;
  std::vector<bool> crash_safe;  // by directory entry index
  bool operator==(const FleeceBitmapsRecord&) const = default;
};

struct Header {
  uint32_t version = 3;
  uint64_t backing_file_offset = 0;  // as read; serialize() recomputes it
  uint32_t backing_file_size = 0;
  uint32_t cluster_bits = 16;
  uint64_t size = 0;                 // guest disk size in bytes
  uint32_t crypt_method = 0;
  uint32_t l1_size = 0;              // entries
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  // v3 fields (v2 images read as: no features, refcount_order 4, length 72).
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;
  uint32_t header_length = kHeaderV3Length;
  CompressionType compression_type = CompressionType::kDeflate;

  // Extensions and trailing strings.
  std::string backing_file;                   // empty: none
  std::optional<std::string> backing_format;  // the backing format extension
  std::optional<std::string> data_file;       // external data file name extension
  std::vector<FeatureName> feature_names;     // the feature name table, if present
  std::optional<BitmapsExtension> bitmaps;
  std::optional<std::pair<uint64_t, uint64_t>> crypto_header;  // offset, length
  std::optional<FleeceBitmapsRecord> fleece_bitmaps;
  std::vector<RawExtension> unknown_extensions;  // in file order, kept verbatim
  // v3: header bytes 105..header_length-1 as read (the padding after compression_type
  // and any fields newer than fleeced), written back verbatim; empty = zeroes.
  std::vector<std::byte> unknown_header_fields;

  uint64_t cluster_size() const { return 1ull << cluster_bits; }
  bool extended_l2() const { return (incompatible_features & kIncompatExtendedL2) != 0; }
  bool has_data_file() const { return (incompatible_features & kIncompatDataFile) != 0; }
  bool data_file_raw() const { return (autoclear_features & kAutoclearDataFileRaw) != 0; }
  uint32_t refcount_bits() const { return 1u << refcount_order; }
};

// Bytes of cluster 0 that parse_header() needs at most: the whole first cluster, but
// never more than this (2 MiB clusters); a shorter file is read to its end.
inline constexpr size_t kHeaderReadLimit = 2u << 20;

// Decodes the header at the start of `bytes` (the image's first min(cluster size, file
// size) bytes; pass at least 4 KiB or the whole file when it is shorter). Checks, with a
// clear EINVAL message (ENOTSUP for features fleeced does not implement, such as
// encryption or an unknown incompatible bit named from the feature table when present):
// magic, version 2 or 3, cluster_bits 9..21, v3 header_length >= 104 and a multiple of
// 8 and inside the cluster, refcount_order <= 6 (4 for v2), size <= kMaxImageSize,
// l1_size large enough for size and <= kMaxL1Bytes/8, table offsets cluster-aligned,
// refcount_table_clusters * cluster_size <= kMaxRefcountTableBytes, extensions inside
// cluster 0, each known extension at most once, backing name length <= 1023 and inside
// cluster 0, extended L2 only with cluster_bits >= 14, compression type 0 or 1 (and
// nonzero only with the compression incompatible bit), data file bit consistent, a
// version-1 fleece bitmaps record well formed.
// Table positions against the file size are checked by the opener, not here.
Result<Header> parse_header(std::span<const std::byte> bytes);

// Encodes `h` as the first bytes of cluster 0: the header (v2: 72 bytes; v3: header_length),
// then the extensions (backing format, data file, feature table, bitmaps, crypto, the
// fleece bitmaps record, the unknown ones in their original order — except one of the
// record's type when a record is written), the end marker, and the backing file name;
// backing_file_offset/size are set to where the name lands. EINVAL when it does not fit
// in one cluster. A v2 header carries no extensions but backing format and unknown ones.
Result<std::vector<std::byte>> serialize_header(const Header& h);

// "qcow2" when the file at `path` starts with the qcow2 magic, else "raw" (also when it
// cannot be read: opening it later reports why). For callers that must guess a format
// because none was given (QEMU's probing); never used where a format is recorded.
// Blocking: reads 4 bytes.
std::string probe_image_format(const std::string& path);

// The feature name table fleeced writes into images it creates (every bit it knows,
// fleece's own autoclear bit included).
std::vector<FeatureName> default_feature_names();

// "dirty, corrupt" etc. for log messages: names of the set bits of a feature word of
// `type`, from the image's table, falling back to the built-in names, then "bit N".
std::string describe_features(const Header& h, uint8_t type, uint64_t bits);

}  // namespace blockcore::qcow2
