// Transaction: an all-or-nothing group of actions (QEMU's qmp_transaction model). Every
// action's prepare() runs in order; if one fails, abort() runs for the actions already
// prepared, in reverse order, and the transaction fails with that action's error; if
// all are prepared, commit() runs for every action in order. clean() ends every action
// whose prepare() ran, whatever happened. The bitmap actions (bitmap_actions.h) are one
// family; others (fleece-start) implement TransactionAction and join the same list.
//
// The contract an action keeps:
//   prepare()  makes every check that can refuse the action (a refusal has no side
//              effect), then applies what later actions of the same transaction must
//              see (a merge's bits, a cleared map) in a way abort() can undo. Store I/O
//              may fail here; a failed prepare() leaves nothing behind.
//   commit()   finishes the action; only I/O can fail it (never a user error). The
//              transaction still commits every other action and reports the first
//              commit error (committed() tells the caller the change took effect).
//   abort()    undoes prepare(); a failure (store I/O) is appended to the reported
//              error, since the state could not be put back exactly.
//   clean()    releases what prepare() held (snapshots, busy holds). Never fails.
// Threading: run() is a coroutine; the caller serializes transactions (and the other
// bitmap management calls) among themselves — see server/control/bitmap_commands.cpp.
// A Transaction is run once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "blockcore/base/status.h"
#include "blockcore/base/task.h"

namespace backup {

class TransactionAction {
 public:
  virtual ~TransactionAction() = default;

  // The QMP action type ("block-dirty-bitmap-add"), for messages.
  virtual std::string type() const = 0;

  virtual blockcore::Task<blockcore::Status> prepare() = 0;
  virtual blockcore::Task<blockcore::Status> commit();
  virtual blockcore::Task<blockcore::Status> abort();
  virtual void clean() {}
};

using TransactionActionPtr = std::unique_ptr<TransactionAction>;

class Transaction {
 public:
  Transaction() = default;
  explicit Transaction(std::vector<TransactionActionPtr> actions);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  void add(TransactionActionPtr action);
  size_t size() const { return actions_.size(); }

  // Runs the transaction (see above). OK when every action was prepared and committed.
  // REQUIRES: not run before.
  blockcore::Task<blockcore::Status> run();

  // After run(): true when the commit phase ran (every action took effect, even if one
  // commit reported an I/O error); false when the transaction was aborted.
  bool committed() const { return committed_; }

 private:
  void clean_prepared(size_t count);

  std::vector<TransactionActionPtr> actions_;
  bool ran_ = false;
  bool committed_ = false;
};

}  // namespace backup
