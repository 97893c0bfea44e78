// Image: the metadata state of one open qcow2 image — header, geometry, the files it
// lives in (image file, optional external data file), its backing node, the refcounts,
// the L1/L2 mapping and the metadata map — plus the operations that keep the file
// consistent across crashes:
//   - prepare_modify(): before the first metadata change of a session, sets the dirty
//     bit durably (v3), so a crash leaves a marker telling the next open to reclaim
//     leaked clusters.
//   - write_back(): the ordered metadata write-back: refcount blocks; sync (this also
//     makes the data of new clusters durable); refcount table and L2 tables; sync and
//     L1 when it changed; sync; then the deferred decrements (whose blocks are written
//     by the next write-back). At no point does the file hold a reference to a cluster
//     whose count is too low, or a table entry pointing at unwritten data.
//   - mark_corrupt(): on detected corruption sets the corrupt bit, turns the image
//     read-only, logs and reports it.
//   - close(): write-back until clean, then clears the dirty bit.
// Threading: every method but the accessors must be called holding meta_lock().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "blockcore/base/async_mutex.h"
#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "blockcore/block_node.h"
#include "blockcore/qcow2/geometry.h"
#include "blockcore/qcow2/l2_tables.h"
#include "blockcore/qcow2/metadata_map.h"
#include "blockcore/qcow2/qcow2_format.h"
#include "blockcore/qcow2/refcounts.h"
#include "blockcore/qcow2/snapshot_table.h"

namespace blockcore::qcow2 {

struct ImageFiles {
  BlockNodePtr file;       // the qcow2 file
  BlockNodePtr data_file;  // the external data file, or null
  BlockNodePtr backing;    // the backing node, or null
};

class Image {
 public:
  // Receives "node: message" when the image is found corrupt.
  using CorruptionHandler = std::function<void(const std::string& message)>;

  Image(std::string node_name, Header header, ImageFiles files, bool read_only,
        size_t l2_cache_tables, size_t refblock_cache_tables);

  // Loads L1, the refcount table and the snapshot table, and fills the metadata map.
  Task<Status> load();

  const std::string& node_name() const { return node_name_; }
  const Header& header() const { return header_; }
  const Geometry& geometry() const { return g_; }
  BlockNode& file() { return *files_.file; }
  // Where guest data lives: the external data file if there is one.
  BlockNode& data() { return files_.data_file ? *files_.data_file : *files_.file; }
  BlockNode* backing() { return files_.backing.get(); }
  const ImageFiles& files() const { return files_; }
  bool external_data() const { return files_.data_file != nullptr; }
  bool read_only() const { return read_only_; }
  bool corrupt() const { return corrupt_; }
  AsyncMutex& meta_lock() { return meta_lock_; }
  Refcounts& refcounts() { return refcounts_; }
  L2Tables& l2() { return l2_; }
  MetadataMap& map() { return map_; }
  const std::vector<SnapshotEntry>& snapshots() const { return snapshots_; }
  void set_corruption_handler(CorruptionHandler h) { on_corrupt_ = std::move(h); }

  // The open sequence after construction: load(); then, for a read-write image, clears
  // the autoclear bits nobody here knows (as the spec demands of a writer) and, when the
  // dirty bit is set (a crash, or QEMU's lazy refcounts) or for a v2 image (no dirty bit
  // to tell a crash by), rebuilds the refcounts from a reference scan, logging what it
  // corrected. Errors name the problem, not the file (callers add it).
  Task<Status> prepare_for_use();
  // Before changing metadata: EROFS/EIO when the image may not be written, and the
  // dirty bit set durably on the first call.
  Task<Status> prepare_modify();
  // The ordered write-back described above.
  Task<Status> write_back();
  bool metadata_dirty() const;
  // A failed metadata operation: EUCLEAN (detected corruption) marks the image
  // corrupt; returns the status to report (EIO for corruption).
  Task<Status> fail(const Status& s);
  Task<Status> mark_corrupt(const std::string& why);
  // Writes everything back, then clears the dirty bit. Idempotent.
  Task<Status> close();

  // Reclaims leaked clusters and repairs refcounts from a scan of every reference
  // (after a crash left the dirty bit set). Returns the number of counts corrected.
  Task<Result<uint64_t>> repair_refcounts();

  // Rewrites cluster 0 — the header with every extension — from a copy of the current
  // header changed by `edit` (which may touch the extensions and the autoclear bits,
  // never the geometry or the tables' locations), durably (written, then synced); the
  // header in memory changes only on success. For the bitmap store: the write is checked
  // against the metadata map, EINVAL when the result does not fit in cluster 0.
  Task<Status> rewrite_header(const std::function<void(Header&)>& edit);
  // Syncs the image file (and the external data file).
  Task<Status> sync();

 private:
  Task<Status> write_header_u64(uint64_t offset, uint64_t value);
  Task<Status> clear_unknown_autoclear_bits();
  Task<Status> write_table_location(uint64_t offset, uint32_t clusters);

  const std::string node_name_;
  Header header_;
  const Geometry g_;
  ImageFiles files_;
  bool read_only_;
  bool corrupt_ = false;
  bool marked_dirty_ = false;  // the dirty bit is set (by us, or found set)
  AsyncMutex meta_lock_;
  MetadataMap map_;
  Refcounts refcounts_;
  L2Tables l2_;
  std::vector<SnapshotEntry> snapshots_;
  CorruptionHandler on_corrupt_;
};

}  // namespace blockcore::qcow2
