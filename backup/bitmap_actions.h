// The six dirty-bitmap transaction actions (QEMU's block-dirty-bitmap-add, -remove,
// -clear, -enable, -disable, -merge) over a node's NodeBitmaps. Each one alone is also
// the QMP command of the same name (a one-action Transaction).
//
// Every check (node and bitmap look-ups, busy, read-only, inconsistent, granularity,
// name taken, store) happens in prepare() before any side effect, with QEMU's messages
// (bitmap_checks.h). What each phase does — chosen so that fleece, which keeps taking
// writes during a transaction (QEMU drains them), never loses a write from a bitmap:
//   add      prepare creates it (stored, for a persistent one); abort removes it.
//   remove   prepare marks it busy (later actions of the transaction cannot use it);
//            commit removes it (from the store too); abort releases it.
//   clear    prepare saves the content and clears; abort puts the saved bits back by
//            merging them in (a disabled bitmap: restores the copy), so writes recorded
//            meanwhile stay; an inconsistent bitmap becomes inconsistent again.
//   enable   prepare enables (commit re-asserts it, so "disable, enable" ends enabled);
//            abort disables and restores the content (what it recorded meanwhile goes).
//   disable  prepare checks; commit disables — a bitmap never stops recording before
//            the transaction commits.
//   merge    prepare merges the sources (a snapshot of their union) into the target;
//            abort restores a disabled target's copy, and on an enabled target resets
//            the granules the merge set that no write touched meanwhile.
// An abort on a recording bitmap keeps the writes made meanwhile: clear's saved copy is
// taken atomically with the clear, and a merge's undo spares every granule a hidden
// write tracker (NodeBitmaps::add_write_tracker) saw written since prepare.
// Differences from QEMU, on purpose: clear works on an inconsistent bitmap (it becomes
// consistent and clean: fleece's way out besides remove), and merge reads busy source
// bitmaps (an exported or frozen bitmap may be read).
// Threading: see transaction.h — management calls are serialized by the caller.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "backup/bitmap_checks.h"
#include "backup/transaction.h"

namespace backup {

struct BitmapAddParams {
  std::string node;
  std::string name;
  std::optional<uint64_t> granularity;  // default: kDefaultBitmapGranularity
  bool persistent = false;
  bool disabled = false;
};

// The target of remove, clear, enable, disable.
struct BitmapParams {
  std::string node;
  std::string name;
};

struct BitmapMergeSource {
  std::optional<std::string> node;  // unset: the merge's node
  std::string name;
};

struct BitmapMergeParams {
  std::string node;
  std::string target;
  std::vector<BitmapMergeSource> sources;
};

// The QMP type names.
inline constexpr char kBitmapAddType[] = "block-dirty-bitmap-add";
inline constexpr char kBitmapRemoveType[] = "block-dirty-bitmap-remove";
inline constexpr char kBitmapClearType[] = "block-dirty-bitmap-clear";
inline constexpr char kBitmapEnableType[] = "block-dirty-bitmap-enable";
inline constexpr char kBitmapDisableType[] = "block-dirty-bitmap-disable";
inline constexpr char kBitmapMergeType[] = "block-dirty-bitmap-merge";

TransactionActionPtr make_bitmap_add(NodeLookup lookup, BitmapAddParams params);
TransactionActionPtr make_bitmap_remove(NodeLookup lookup, BitmapParams params);
TransactionActionPtr make_bitmap_clear(NodeLookup lookup, BitmapParams params);
TransactionActionPtr make_bitmap_enable(NodeLookup lookup, BitmapParams params);
TransactionActionPtr make_bitmap_disable(NodeLookup lookup, BitmapParams params);
TransactionActionPtr make_bitmap_merge(NodeLookup lookup, BitmapMergeParams params);

}  // namespace backup
