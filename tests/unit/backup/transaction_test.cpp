// backup::Transaction: prepare in order, commit in order, abort in reverse order of the
// prepared actions only, clean for every action whose prepare ran, errors reported.
#include "backup/transaction.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "testing/run_task.h"

namespace backup {
namespace {

using blockcore::Status;
using blockcore::Task;
using fleece_test::run_task;

// Records every call as "<phase><index>" ("p0", "c0", "a0", "k0").
class LoggingAction final : public TransactionAction {
 public:
  struct Config {
    Status prepare, commit, abort;
  };
  LoggingAction(int index, std::vector<std::string>& log, Config c = {})
      : index_(index), log_(log), c_(std::move(c)) {}
  std::string type() const override { return "test-" + std::to_string(index_); }
  Task<Status> prepare() override {
    log_.push_back("p" + std::to_string(index_));
    co_return c_.prepare;
  }
  Task<Status> commit() override {
    log_.push_back("c" + std::to_string(index_));
    co_return c_.commit;
  }
  Task<Status> abort() override {
    log_.push_back("a" + std::to_string(index_));
    co_return c_.abort;
  }
  void clean() override { log_.push_back("k" + std::to_string(index_)); }

 private:
  int index_;
  std::vector<std::string>& log_;
  Config c_;
};

using Log = std::vector<std::string>;

TEST(Transaction, PreparesAllThenCommitsAllInOrderThenCleans) {
  Log log;
  Transaction t;
  for (int i = 0; i < 3; ++i) t.add(std::make_unique<LoggingAction>(i, log));
  EXPECT_EQ(t.size(), 3u);
  EXPECT_TRUE(run_task(t.run()).is_ok());
  EXPECT_TRUE(t.committed());
  EXPECT_EQ(log, (Log{"p0", "p1", "p2", "c0", "c1", "c2", "k0", "k1", "k2"}));
}

TEST(Transaction, AFailedPrepareAbortsThePreparedOnesInReverseAndStops) {
  Log log;
  Transaction t;
  t.add(std::make_unique<LoggingAction>(0, log));
  t.add(std::make_unique<LoggingAction>(1, log));
  t.add(std::make_unique<LoggingAction>(
      2, log, LoggingAction::Config{.prepare = Status::error(EBUSY, "action 2 refuses")}));
  t.add(std::make_unique<LoggingAction>(3, log));
  Status s = run_task(t.run());
  EXPECT_EQ(s.code(), EBUSY);
  EXPECT_EQ(s.message(), "action 2 refuses");
  EXPECT_FALSE(t.committed());
  // Action 3 is never prepared; action 2 is not aborted (it did nothing) but cleaned.
  EXPECT_EQ(log, (Log{"p0", "p1", "p2", "a1", "a0", "k0", "k1", "k2"}));
}

TEST(Transaction, AFailingFirstActionTouchesNothingElse) {
  Log log;
  Transaction t;
  t.add(std::make_unique<LoggingAction>(0, log,
                                        LoggingAction::Config{.prepare = Status::invalid("no")}));
  t.add(std::make_unique<LoggingAction>(1, log));
  EXPECT_FALSE(run_task(t.run()).is_ok());
  EXPECT_EQ(log, (Log{"p0", "k0"}));
}

TEST(Transaction, RollbackErrorsAreAppendedToTheReason) {
  Log log;
  Transaction t;
  t.add(std::make_unique<LoggingAction>(
      0, log, LoggingAction::Config{.abort = Status::io_error("store gone")}));
  t.add(std::make_unique<LoggingAction>(
      1, log, LoggingAction::Config{.prepare = Status::invalid("bad argument")}));
  Status s = run_task(t.run());
  EXPECT_EQ(s.code(), EINVAL);
  EXPECT_EQ(s.message(), "bad argument; rolling back test-0 failed: store gone");
}

TEST(Transaction, ACommitErrorIsReportedAfterEveryActionCommitted) {
  Log log;
  Transaction t;
  t.add(std::make_unique<LoggingAction>(
      0, log, LoggingAction::Config{.commit = Status::io_error("first")}));
  t.add(std::make_unique<LoggingAction>(
      1, log, LoggingAction::Config{.commit = Status::io_error("second")}));
  t.add(std::make_unique<LoggingAction>(2, log));
  Status s = run_task(t.run());
  EXPECT_EQ(s.message(), "first");
  EXPECT_TRUE(t.committed());
  EXPECT_EQ(log, (Log{"p0", "p1", "p2", "c0", "c1", "c2", "k0", "k1", "k2"}));
}

TEST(Transaction, AnEmptyTransactionSucceeds) {
  Transaction t;
  EXPECT_TRUE(run_task(t.run()).is_ok());
  EXPECT_TRUE(t.committed());
}

// An action type written outside this library (as fleece-start will be) needs only
// prepare(); the others default to doing nothing.
class PrepareOnly final : public TransactionAction {
 public:
  explicit PrepareOnly(bool* prepared) : prepared_(prepared) {}
  std::string type() const override { return "prepare-only"; }
  Task<Status> prepare() override {
    *prepared_ = true;
    co_return Status::ok();
  }

 private:
  bool* prepared_;
};

TEST(Transaction, ActionsNeedOnlyPrepare) {
  bool prepared = false;
  Log log;
  std::vector<TransactionActionPtr> v;
  v.push_back(std::make_unique<PrepareOnly>(&prepared));
  v.push_back(std::make_unique<LoggingAction>(
      1, log, LoggingAction::Config{.prepare = Status::invalid("no")}));
  Transaction t(std::move(v));
  EXPECT_FALSE(run_task(t.run()).is_ok());
  EXPECT_TRUE(prepared);
}

}  // namespace
}  // namespace backup
