// TableCache: an LRU cache of cluster-sized qcow2 metadata tables (L2 tables or
// refcount blocks) read from and written back to the image file. Tables are kept as
// their on-disk bytes; changes mark them dirty and reach the file only through
// write_dirty(), which the image calls in the order crash safety demands (refcount
// blocks before the L2 tables that need them; see qcow2_image.h). When the cache is full
// and every unpinned table is dirty, the `make_room` hook (the image's ordered metadata
// write-back) runs before a table is evicted.
// Threading: not thread-safe; every call is made under the image's metadata lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "blockcore/block_node.h"

namespace blockcore::qcow2 {

class TableCache {
 public:
  struct Table {
    uint64_t offset = 0;
    std::vector<std::byte> bytes;
    bool dirty = false;
    uint64_t last_use = 0;
    uint32_t pins = 0;
  };

  // A pinned table: never evicted while a Ref to it lives.
  class Ref {
   public:
    Ref() = default;
    explicit Ref(Table* t) : t_(t) { ++t_->pins; }
    Ref(const Ref& o) : t_(o.t_) {
      if (t_) ++t_->pins;
    }
    Ref& operator=(Ref o) {
      std::swap(t_, o.t_);
      return *this;
    }
    ~Ref() {
      if (t_) --t_->pins;
    }
    explicit operator bool() const { return t_ != nullptr; }
    uint64_t offset() const { return t_->offset; }
    std::span<std::byte> bytes() { return t_->bytes; }
    std::span<const std::byte> bytes() const { return t_->bytes; }
    bool dirty() const { return t_->dirty; }
    void mark_dirty() { t_->dirty = true; }

   private:
    Table* t_ = nullptr;
  };

  using MakeRoom = std::function<Task<Status>()>;
  // Called before a table is written at `offset` (the overlap check); a failure stops
  // the write.
  using WriteCheck = std::function<Status(uint64_t offset, uint64_t length)>;

  // `file`: where tables live; `table_bytes`: the cluster size; `capacity`: tables kept.
  TableCache(BlockNode& file, size_t table_bytes, size_t capacity, std::string kind);

  void set_make_room(MakeRoom hook) { make_room_ = std::move(hook); }
  void set_write_check(WriteCheck check) { write_check_ = std::move(check); }

  // The table at `offset`, read from the file on a miss. EIO for a short file read.
  Task<Result<Ref>> get(uint64_t offset);
  // A new table at `offset` filled with `init` (zeroes when empty), dirty, not read.
  Task<Result<Ref>> create(uint64_t offset, std::span<const std::byte> init = {});
  // Forgets the table at `offset` (its cluster was freed); it is not written back.
  void drop(uint64_t offset);

  bool has_dirty() const;
  // Writes every dirty table (ascending offsets) and marks them clean; stops at the
  // first error (the rest stay dirty).
  Task<Status> write_dirty();
  // Drops every clean unpinned table (after an error, or to bound memory).
  void drop_clean();

  size_t size() const { return tables_.size(); }
  size_t capacity() const { return capacity_; }
  size_t table_bytes() const { return table_bytes_; }

 private:
  // Makes room for one more table: evicts the least recently used clean unpinned one,
  // running make_room_ first when there is none.
  Task<Status> reserve_slot();
  Table* insert(uint64_t offset);

  BlockNode& file_;
  const size_t table_bytes_;
  const size_t capacity_;
  const std::string kind_;
  MakeRoom make_room_;
  WriteCheck write_check_;
  std::map<uint64_t, std::unique_ptr<Table>> tables_;
  uint64_t clock_ = 0;
};

}  // namespace blockcore::qcow2
