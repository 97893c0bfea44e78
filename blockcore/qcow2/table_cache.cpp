#include "blockcore/qcow2/table_cache.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace blockcore::qcow2 {

TableCache::TableCache(BlockNode& file, size_t table_bytes, size_t capacity, std::string kind)
    : file_(file), table_bytes_(table_bytes), capacity_(std::max<size_t>(capacity, 2)),
      kind_(std::move(kind)) {}

TableCache::Table* TableCache::insert(uint64_t offset) {
  auto t = std::make_unique<Table>();
  t->offset = offset;
  t->bytes.assign(table_bytes_, std::byte{0});
  t->last_use = ++clock_;
  Table* raw = t.get();
  tables_[offset] = std::move(t);
  return raw;
}

Task<Status> TableCache::reserve_slot() {
  for (int attempt = 0; tables_.size() >= capacity_ && attempt < 2; ++attempt) {
    Table* victim = nullptr;
    for (auto& [off, t] : tables_) {
      if (t->pins == 0 && !t->dirty && (!victim || t->last_use < victim->last_use)) {
        victim = t.get();
      }
    }
    if (victim) {
      tables_.erase(victim->offset);
      co_return Status::ok();
    }
    if (attempt == 0 && make_room_) {
      FLEECE_CO_RETURN_IF_ERROR(co_await make_room_());
    }
  }
  // Everything is pinned or dirty even after a write-back: grow beyond the capacity
  // for now (bounded by the requests in flight, which each pin a few tables).
  co_return Status::ok();
}

Task<Result<TableCache::Ref>> TableCache::get(uint64_t offset) {
  auto it = tables_.find(offset);
  if (it != tables_.end()) {
    it->second->last_use = ++clock_;
    co_return Ref(it->second.get());
  }
  if (Status s = co_await reserve_slot(); !s.is_ok()) co_return s;
  // Read into a buffer first: a concurrent lookup cannot see a half-read table because
  // every caller holds the image's metadata lock.
  std::vector<std::byte> bytes(table_bytes_);
  Status s = co_await file_.read(offset, bytes);
  if (!s.is_ok()) {
    co_return s.with_context("reading " + kind_ + " at offset " + std::to_string(offset));
  }
  Table* t = insert(offset);
  t->bytes = std::move(bytes);
  co_return Ref(t);
}

Task<Result<TableCache::Ref>> TableCache::create(uint64_t offset, std::span<const std::byte> init) {
  auto it = tables_.find(offset);
  if (it == tables_.end()) {
    if (Status s = co_await reserve_slot(); !s.is_ok()) co_return s;
    it = tables_.find(offset);
  }
  Table* t = it != tables_.end() ? it->second.get() : insert(offset);
  std::fill(t->bytes.begin(), t->bytes.end(), std::byte{0});
  if (!init.empty()) {
    std::memcpy(t->bytes.data(), init.data(), std::min(init.size(), t->bytes.size()));
  }
  t->dirty = true;
  t->last_use = ++clock_;
  co_return Ref(t);
}

void TableCache::drop(uint64_t offset) {
  auto it = tables_.find(offset);
  if (it == tables_.end()) return;
  if (it->second->pins == 0) {
    tables_.erase(it);
  } else {
    it->second->dirty = false;  // pinned by the caller freeing it: just never write it
  }
}

bool TableCache::has_dirty() const {
  return std::any_of(tables_.begin(), tables_.end(), [](const auto& kv) { return kv.second->dirty; });
}

Task<Status> TableCache::write_dirty() {
  std::vector<Table*> dirty;
  for (auto& [off, t] : tables_) {
    if (t->dirty) dirty.push_back(t.get());
  }
  for (Table* t : dirty) {
    Ref pin(t);  // keep it while the write is in flight
    if (write_check_) FLEECE_CO_RETURN_IF_ERROR(write_check_(t->offset, table_bytes_));
    // Clear first: a change made while the write is in flight marks it dirty again.
    t->dirty = false;
    Status s = co_await file_.write(t->offset, t->bytes, IoFlags::kNone);
    if (!s.is_ok()) {
      t->dirty = true;
      co_return s.with_context("writing " + kind_ + " at offset " + std::to_string(t->offset));
    }
  }
  co_return Status::ok();
}

void TableCache::drop_clean() {
  for (auto it = tables_.begin(); it != tables_.end();) {
    if (!it->second->dirty && it->second->pins == 0) {
      it = tables_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace blockcore::qcow2
