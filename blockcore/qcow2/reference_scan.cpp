// The reference scan (see reference_scan.h): counts the references the metadata of a
// qcow2 image holds to each host cluster, the way QEMU's check does.
#include "blockcore/qcow2/reference_scan.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <utility>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/bitmap_directory.h"
#include "blockcore/qcow2/cluster_entry.h"

namespace blockcore::qcow2 {
namespace {

// Refcount table entries: block offset in bits 9-63, bits 0-8 reserved.
constexpr uint64_t kRefBlockOffsetMask = 0xfffffffffffffe00ull;
// Largest single read the scan issues.
constexpr uint64_t kReadChunk = 4ull << 20;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

class Scanner {
 public:
  Scanner(BlockNode& file, const Header& h, const Geometry& g, ReferenceScan& out)
      : file_(file), h_(h), g_(g), out_(out), file_size_(file.size()) {}

  Status init() {
    const uint64_t clusters = (file_size_ + g_.cluster_size - 1) >> g_.cluster_bits;
    if (clusters > static_cast<uint64_t>(INT32_MAX)) {
      return Status::error(EFBIG, "qcow2 image file of " + std::to_string(file_size_) +
                                      " bytes has too many clusters to check");
    }
    out_.refs.assign(static_cast<size_t>(clusters), 0);
    return Status::ok();
  }

  void scan_fixed_structures() {
    count_checked(0, g_.cluster_size, 1, [] { return std::string("the header cluster"); });
    if (h_.crypto_header && h_.crypto_header->second != 0) {
      count_checked(h_.crypto_header->first, h_.crypto_header->second, 1,
                    [] { return std::string("the crypto header"); });
    }
    count_checked(h_.l1_table_offset, uint64_t{h_.l1_size} * 8, 1,
                  [] { return std::string("the active L1 table"); });
    count_checked(h_.refcount_table_offset,
                  uint64_t{h_.refcount_table_clusters} << g_.cluster_bits, 1,
                  [] { return std::string("the refcount table"); });
  }

  // Records the L2 tables an L1 table refers to (counted and read later, once each).
  void collect_l1(std::span<const uint64_t> l1, const std::string& owner) {
    for (size_t i = 0; i < l1.size(); ++i) {
      const uint64_t e = l1[i];
      if (e == 0) continue;
      const auto where = [&] { return owner + " entry " + std::to_string(i); };
      if (e & kL1ReservedMask) {
        problem(where() + " has reserved bits set (" + hex(e) + ")");
      }
      const uint64_t l2 = e & kOffsetMask;
      if (l2 == 0) {
        if (e & ~kL1ReservedMask) problem(where() + " has flags but no L2 table offset");
        continue;
      }
      if (g_.offset_in_cluster(l2) != 0) {
        problem(where() + ": L2 table offset " + hex(l2) + " is not cluster aligned");
        continue;
      }
      if (!in_file(l2, g_.cluster_size)) {
        problem(where() + ": L2 table offset " + hex(l2) + outside());
        continue;
      }
      ++l2_visits_[l2];
    }
  }

  Task<Status> scan_l2_tables() {
    std::vector<std::byte> table(static_cast<size_t>(g_.cluster_size));
    for (const auto& [offset, visits] : l2_visits_) {
      count(offset, g_.cluster_size, visits);
      ++out_.l2_tables;
      FLEECE_CO_RETURN_IF_ERROR(co_await read(offset, table));
      for (uint64_t i = 0; i < g_.l2_entries; ++i) {
        const std::byte* p = table.data() + i * g_.l2_entry_bytes;
        L2Entry e;
        e.word = load_be64(p);
        if (g_.extended_l2) e.bitmap = load_be64(p + 8);
        if (e.word == 0 && e.bitmap == 0) continue;
        scan_l2_entry(offset, i, e, visits);
      }
    }
    co_return Status::ok();
  }

  Task<Status> scan_snapshots(std::span<const SnapshotEntry> snapshots) {
    if (snapshots.empty()) co_return Status::ok();
    if (h_.has_data_file()) {
      problem(std::to_string(snapshots.size()) +
              " internal snapshots in an image with an external data file");
    }
    count_checked(h_.snapshots_offset, snapshot_table_bytes(snapshots), 1,
                  [] { return std::string("the snapshot table"); });
    // Snapshot L1 tables never overlap in a valid image: together they fit in the file.
    uint64_t budget = file_size_;
    std::vector<uint64_t> l1;
    for (size_t n = 0; n < snapshots.size(); ++n) {
      const SnapshotEntry& s = snapshots[n];
      const std::string owner = "snapshot " + std::to_string(n) + " (id '" + s.id +
                                "', name '" + s.name + "') L1 table";
      if (s.l1_size == 0) continue;
      if (g_.offset_in_cluster(s.l1_table_offset) != 0) {
        problem(owner + " offset " + hex(s.l1_table_offset) + " is not cluster aligned");
        continue;
      }
      if (uint64_t{s.l1_size} * 8 > kMaxL1Bytes) {
        problem(owner + " has " + std::to_string(s.l1_size) + " entries, more than allowed");
        continue;
      }
      const uint64_t bytes = uint64_t{s.l1_size} * 8;
      if (!count_checked(s.l1_table_offset, bytes, 1, [&] { return owner; })) continue;
      if (bytes > budget) {
        problem(owner + ": snapshot L1 tables add up to more than the image file");
        break;
      }
      budget -= bytes;
      std::vector<std::byte> raw(static_cast<size_t>(bytes));
      FLEECE_CO_RETURN_IF_ERROR(co_await read(s.l1_table_offset, raw));
      l1.resize(s.l1_size);
      for (size_t i = 0; i < l1.size(); ++i) l1[i] = load_be64(raw.data() + i * 8);
      collect_l1(l1, owner);
    }
    co_return Status::ok();
  }

  Task<Status> scan_bitmaps();

  void scan_refcount_table(std::span<const uint64_t> table) {
    std::vector<std::pair<size_t, uint64_t>> blocks;
    for (size_t i = 0; i < table.size(); ++i) {
      const uint64_t e = table[i];
      if (e == 0) continue;
      const std::string where = "refcount table entry " + std::to_string(i);
      if (e & ~kRefBlockOffsetMask) {
        problem(where + " has reserved bits set (" + hex(e) + ")");
        continue;
      }
      if (g_.offset_in_cluster(e) != 0) {
        problem(where + ": refcount block offset " + hex(e) + " is not cluster aligned");
        continue;
      }
      if (!in_file(e, g_.cluster_size)) {
        problem(where + ": refcount block offset " + hex(e) + outside());
        continue;
      }
      count(e, g_.cluster_size, 1);
      blocks.emplace_back(i, e);
    }
    // A refcount block is referenced by nothing but its table entry.
    for (const auto& [i, off] : blocks) {
      const uint32_t refs = out_.refs[static_cast<size_t>(g_.cluster_index(off))];
      if (refs != 1) {
        problem("refcount block " + std::to_string(i) + " at " + hex(off) + " is referenced " +
                std::to_string(refs) + " times (it overlaps other metadata or data)");
      }
    }
  }

  void finish() {
    if (suppressed_ > 0) {
      out_.problems.push_back("... and " + std::to_string(suppressed_) + " more problems");
    }
  }

 private:
  void problem(std::string s) {
    if (out_.problems.size() < kMaxReportedProblems) {
      out_.problems.push_back(std::move(s));
    } else {
      ++suppressed_;
    }
  }

  std::string outside() const {
    return " lies outside the image file (" + std::to_string(file_size_) + " bytes)";
  }

  // True when every cluster [off, off+len) touches is a cluster of the file.
  bool in_file(uint64_t off, uint64_t len) const {
    if (len == 0) return true;
    if (off > UINT64_MAX - len) return false;
    return ((off + len - 1) >> g_.cluster_bits) < out_.refs.size();
  }

  // Adds `times` references to each cluster [off, off+len) touches (saturating).
  void count(uint64_t off, uint64_t len, uint64_t times) {
    if (len == 0) return;
    const uint64_t first = off >> g_.cluster_bits;
    const uint64_t last = (off + len - 1) >> g_.cluster_bits;
    for (uint64_t c = first; c <= last; ++c) {
      uint32_t& r = out_.refs[static_cast<size_t>(c)];
      const uint64_t sum = uint64_t{r} + times;
      if (sum > UINT32_MAX) {
        if (r != UINT32_MAX) problem("cluster " + hex(c << g_.cluster_bits) +
                                     " has more than 2^32-1 references");
        r = UINT32_MAX;
      } else {
        r = static_cast<uint32_t>(sum);
      }
    }
  }

  template <class Describe>
  bool count_checked(uint64_t off, uint64_t len, uint64_t times, Describe describe) {
    if (!in_file(off, len)) {
      problem(describe() + " at " + hex(off) + " (" + std::to_string(len) + " bytes)" +
              outside());
      return false;
    }
    count(off, len, times);
    return true;
  }

  void scan_l2_entry(uint64_t table, uint64_t i, const L2Entry& e, uint64_t visits) {
    const auto where = [&] { return "L2 table at " + hex(table) + " entry " + std::to_string(i); };
    if (e.compressed()) {
      if (e.copied()) problem(where() + ": compressed cluster has the COPIED flag set");
      if (h_.has_data_file()) {
        problem(where() + ": compressed cluster in an image with an external data file");
        return;
      }
      if (g_.extended_l2 && e.bitmap != 0) {
        problem(where() + ": compressed cluster with a nonzero subcluster bitmap");
        return;
      }
      ++out_.data_clusters;
      const uint64_t off = e.compressed_offset(g_);
      const uint64_t len = e.compressed_length(g_);
      if (off < g_.cluster_size) {
        problem(where() + ": compressed data at " + hex(off) + " lies in the header cluster");
        return;
      }
      count_checked(off, len, visits, [&] { return where() + ": compressed data"; });
      return;
    }
    if (e.word & kL2ReservedMask) {
      problem(where() + " has reserved bits set (" + hex(e.word) + ")");
    }
    const uint64_t host = e.word & kOffsetMask;
    if (g_.extended_l2) {
      if (e.word & kFlagZero) problem(where() + ": zero flag set with extended L2 entries");
      if (host != 0 && (e.alloc_bits() & e.zero_bits()) != 0) {
        problem(where() + ": subclusters both allocated and zero (bitmap " + hex(e.bitmap) + ")");
      }
      if (host == 0 && e.alloc_bits() != 0 && !(e.copied() && h_.has_data_file())) {
        problem(where() + ": unallocated cluster with a nonzero subcluster allocation bitmap");
      }
    } else if (host == 0 && (e.word & kFlagZero)) {
      return;  // zero cluster without a host cluster
    }
    if (host == 0) {
      // With an external data file, COPIED and offset 0 is data at offset 0 of that file.
      if (e.copied() && h_.has_data_file()) {
        ++out_.data_clusters;
      } else if (e.copied()) {
        problem(where() + ": unallocated cluster has the COPIED flag set");
      }
      return;
    }
    ++out_.data_clusters;
    if (g_.offset_in_cluster(host) != 0) {
      problem(where() + ": data cluster offset " + hex(host) + " is not cluster aligned");
      return;
    }
    if (h_.has_data_file()) return;  // the data lives in the external data file
    count_checked(host, g_.cluster_size, visits, [&] { return where() + ": data cluster"; });
  }

  // Reads [off, off+out.size()) of the file in chunks the node accepts, widening each
  // chunk to the node's request alignment. The range lies inside the file.
  Task<Status> read(uint64_t off, std::span<std::byte> out) {
    const uint64_t align = std::max<uint64_t>(file_.info().request_alignment, 1);
    const uint64_t limit = std::min<uint64_t>(file_.info().max_transfer, kReadChunk);
    const uint64_t chunk = std::max<uint64_t>(limit & ~(align - 1), align);
    const uint64_t end = off + out.size();
    uint64_t pos = off;
    while (pos < end) {
      const uint64_t start = pos & ~(align - 1);
      uint64_t stop = std::min<uint64_t>(start + chunk, (end + align - 1) & ~(align - 1));
      stop = std::min(stop, file_size_);
      const uint64_t take = std::min(stop, end) - pos;
      if (start == pos && stop - start == take) {
        FLEECE_CO_RETURN_IF_ERROR(
            co_await file_.read(pos, out.subspan(static_cast<size_t>(pos - off),
                                                 static_cast<size_t>(take))));
      } else {
        bounce_.resize(static_cast<size_t>(stop - start));
        FLEECE_CO_RETURN_IF_ERROR(co_await file_.read(start, bounce_));
        std::copy_n(bounce_.begin() + static_cast<ptrdiff_t>(pos - start),
                    static_cast<ptrdiff_t>(take), out.begin() + static_cast<ptrdiff_t>(pos - off));
      }
      pos += take;
    }
    co_return Status::ok();
  }

  // One parsed bitmap directory entry.
  struct BitmapEntry {
    uint64_t table_offset = 0;
    uint32_t table_size = 0;
    std::string name;
  };
  void parse_bitmap_directory(std::span<const std::byte> dir, std::vector<BitmapEntry>& out);

  BlockNode& file_;
  const Header& h_;
  const Geometry& g_;
  ReferenceScan& out_;
  const uint64_t file_size_;
  std::map<uint64_t, uint64_t> l2_visits_;  // L2 table offset -> L1 entries referring to it
  std::vector<std::byte> bounce_;
  uint64_t suppressed_ = 0;
};

void Scanner::parse_bitmap_directory(std::span<const std::byte> dir,
                                     std::vector<BitmapEntry>& out) {
  const uint32_t expected = h_.bitmaps->nb_bitmaps;
  uint64_t pos = 0;
  while (pos < dir.size()) {
    const std::string where = "bitmap directory entry " + std::to_string(out.size());
    if (dir.size() - pos < kBitmapDirEntryFixedBytes) {
      problem(where + " is cut short by the end of the directory");
      return;
    }
    const std::byte* p = dir.data() + pos;
    BitmapEntry b;
    b.table_offset = load_be64(p);
    b.table_size = load_be32(p + 8);
    const uint32_t flags = load_be32(p + 12);
    const auto type = static_cast<uint8_t>(p[16]);
    const auto granularity_bits = static_cast<uint8_t>(p[17]);
    const uint16_t name_size = load_be16(p + 18);
    const uint32_t extra = load_be32(p + 20);
    const uint64_t size = align8(kBitmapDirEntryFixedBytes + uint64_t{extra} + name_size);
    if (size > dir.size() - pos) {
      problem(where + " is cut short by the end of the directory");
      return;
    }
    if (out.size() >= expected) {
      problem("the bitmap directory holds more entries than the " + std::to_string(expected) +
              " the header announces");
      return;
    }
    const auto* name = reinterpret_cast<const char*>(p + kBitmapDirEntryFixedBytes + extra);
    b.name = std::string(name, name_size);
    const std::string bm = "bitmap '" + b.name + "'";
    pos += size;
    std::string bad;
    if (b.table_offset == 0 || g_.offset_in_cluster(b.table_offset) != 0) {
      bad = "bitmap table offset " + hex(b.table_offset) + " is not cluster aligned";
    } else if (b.table_size == 0 || b.table_size > kBitmapMaxTableEntries ||
               (uint64_t{b.table_size} << g_.cluster_bits) > kBitmapMaxDataBytes) {
      bad = "bitmap table size " + std::to_string(b.table_size) + " is out of range";
    } else if (granularity_bits < kBitmapMinGranularityBits ||
               granularity_bits > kBitmapMaxGranularityBits) {
      bad = "granularity bits " + std::to_string(granularity_bits) + " are out of range";
    } else if (flags & ~kBitmapKnownFlags) {
      bad = "reserved flags are set (" + hex(flags) + ")";
    } else if (name_size == 0 || name_size > kBitmapMaxNameBytes) {
      bad = "name size " + std::to_string(name_size) + " is out of range";
    } else if (type != kBitmapTypeDirtyTracking) {
      bad = "type " + std::to_string(type) + " is unknown";
    }
    if (!bad.empty()) {
      problem(bm + ": " + bad);
      out.push_back(BitmapEntry{});  // keeps the count; nothing to scan
      continue;
    }
    // A consistent bitmap's table covers the whole disk.
    const uint64_t covered_bits = uint64_t{b.table_size} << (g_.cluster_bits + 3);
    if (!(flags & kBitmapFlagInUse) && (h_.size - 1) >> granularity_bits >= covered_bits &&
        h_.size != 0) {
      problem(bm + ": its table of " + std::to_string(b.table_size) +
              " entries is too small for the disk");
    }
    out.push_back(std::move(b));
  }
  if (out.size() != expected) {
    problem("the bitmap directory holds " + std::to_string(out.size()) +
            " entries, the header announces " + std::to_string(expected));
  }
}

Task<Status> Scanner::scan_bitmaps() {
  // Counted whenever the extension is present, even with autoclear bit 0 clear (QEMU
  // then ignores the bitmaps, but the header still points at these clusters, so
  // reclaiming them as leaks would let new data overwrite them).
  if (!h_.bitmaps) co_return Status::ok();
  const BitmapsExtension& ext = *h_.bitmaps;
  if (ext.directory_size == 0 || ext.directory_size > kMaxBitmapDirectoryBytes) {
    problem("the bitmap directory size " + std::to_string(ext.directory_size) +
            " is out of range");
    co_return Status::ok();
  }
  if (g_.offset_in_cluster(ext.directory_offset) != 0) {
    problem("the bitmap directory offset " + hex(ext.directory_offset) +
            " is not cluster aligned");
    co_return Status::ok();
  }
  if (!count_checked(ext.directory_offset, ext.directory_size, 1,
                     [] { return std::string("the bitmap directory"); })) {
    co_return Status::ok();
  }
  std::vector<std::byte> dir(static_cast<size_t>(ext.directory_size));
  FLEECE_CO_RETURN_IF_ERROR(co_await read(ext.directory_offset, dir));
  std::vector<BitmapEntry> bitmaps;
  parse_bitmap_directory(dir, bitmaps);

  // Bitmap tables never overlap in a valid image: together they fit in the file.
  uint64_t budget = file_size_;
  std::vector<std::byte> raw;
  for (const BitmapEntry& b : bitmaps) {
    if (b.table_size == 0) continue;  // invalid entry, reported
    const std::string bm = "bitmap '" + b.name + "'";
    const uint64_t bytes = uint64_t{b.table_size} * 8;
    if (!count_checked(b.table_offset, bytes, 1, [&] { return bm + " table"; })) continue;
    if (bytes > budget) {
      problem(bm + ": bitmap tables add up to more than the image file");
      break;
    }
    budget -= bytes;
    raw.resize(static_cast<size_t>(bytes));
    FLEECE_CO_RETURN_IF_ERROR(co_await read(b.table_offset, raw));
    for (uint32_t i = 0; i < b.table_size; ++i) {
      const uint64_t e = load_be64(raw.data() + uint64_t{i} * 8);
      const uint64_t off = e & kBitmapTableOffsetMask;
      const std::string where = bm + " table entry " + std::to_string(i);
      if (e & kBitmapTableReservedMask) {
        problem(where + " has reserved bits set (" + hex(e) + ")");
        continue;
      }
      if (off == 0) continue;  // all zeroes or all ones, no cluster
      if (e & kBitmapTableAllOnes) {
        problem(where + " has both a data offset and the all-ones flag (" + hex(e) + ")");
        continue;
      }
      if (g_.offset_in_cluster(off) != 0) {
        problem(where + ": data offset " + hex(off) + " is not cluster aligned");
        continue;
      }
      count_checked(off, g_.cluster_size, 1, [&] { return where + ": data cluster"; });
    }
  }
  co_return Status::ok();
}

}  // namespace

Task<Result<ReferenceScan>> scan_references(BlockNode& file, const Header& h, const Geometry& g,
                                            std::span<const uint64_t> active_l1,
                                            std::span<const uint64_t> refcount_table,
                                            std::span<const SnapshotEntry> snapshots) {
  ReferenceScan out;
  Scanner s(file, h, g, out);
  FLEECE_CO_RETURN_IF_ERROR(s.init());
  s.scan_fixed_structures();
  s.collect_l1(active_l1, "active L1 table");
  FLEECE_CO_RETURN_IF_ERROR(co_await s.scan_snapshots(snapshots));
  FLEECE_CO_RETURN_IF_ERROR(co_await s.scan_l2_tables());
  FLEECE_CO_RETURN_IF_ERROR(co_await s.scan_bitmaps());
  s.scan_refcount_table(refcount_table);
  s.finish();
  co_return out;
}

}  // namespace blockcore::qcow2
