#include "backup/transaction.h"

#include <cassert>
#include <utility>

namespace backup {

using blockcore::Status;
using blockcore::Task;

Task<Status> TransactionAction::commit() { co_return Status::ok(); }

Task<Status> TransactionAction::abort() { co_return Status::ok(); }

Transaction::Transaction(std::vector<TransactionActionPtr> actions)
    : actions_(std::move(actions)) {}

Transaction::~Transaction() = default;

void Transaction::add(TransactionActionPtr action) { actions_.push_back(std::move(action)); }

void Transaction::clean_prepared(size_t count) {
  for (size_t i = 0; i < count; ++i) actions_[i]->clean();
}

Task<Status> Transaction::run() {
  assert(!ran_ && "a Transaction runs once");
  ran_ = true;

  size_t prepared = 0;
  Status failure;
  for (; prepared < actions_.size(); ++prepared) {
    failure = co_await actions_[prepared]->prepare();
    if (!failure.is_ok()) break;
  }

  if (!failure.is_ok()) {
    // Undo in reverse order; the failed action left nothing to undo.
    std::string message = failure.to_string();
    for (size_t i = prepared; i-- > 0;) {
      Status s = co_await actions_[i]->abort();
      if (!s.is_ok()) {
        message += "; rolling back " + actions_[i]->type() + " failed: " + s.to_string();
      }
    }
    clean_prepared(prepared + 1);  // the failed one's prepare() ran too
    co_return Status::error(failure.code(), std::move(message));
  }

  committed_ = true;
  Status first_error;
  for (auto& action : actions_) {
    Status s = co_await action->commit();
    if (!s.is_ok() && first_error.is_ok()) first_error = std::move(s);
  }
  clean_prepared(actions_.size());
  co_return first_error;
}

}  // namespace backup
