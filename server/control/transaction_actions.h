// The QMP side of transactions: the action types `transaction` accepts (type name ->
// parser of the action's "data" into a backup::TransactionAction) and the runner that
// every bitmap command shares. Each command family that offers transaction actions
// registers its parsers through one register_*_actions() function (the bitmap actions:
// bitmap_commands.cpp; issue 5 adds fleece-start the same way), and the six
// block-dirty-bitmap-* commands are one-action transactions built with the same parsers,
// so a command and its transaction action accept exactly the same arguments.
//
// Bitmap management is serialized: the command handlers and `transaction` share one
// ManagementLock (created with the command table, not global), held from the first
// prepare() to the last clean(), so two clients' transactions never interleave at the
// store I/O they await.
// Threading: tables are built once before serving, then read-only.
#pragma once

#include <asio/awaitable.hpp>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "backup/transaction.h"
#include "blockcore/base/async_mutex.h"
#include "blockcore/base/result.h"
#include "server/control/arg_reader.h"
#include "server/control/command_context.h"

namespace server::control {

class CommandTable;

using ManagementLock = blockcore::AsyncMutex;

// Reads an action's arguments from `data` (a command's "arguments" or a transaction
// action's "data") and builds the action. Argument errors are recorded in `data` (the
// caller checks data.finish() before using the action, which may then be null).
using ActionParser =
    std::function<backup::TransactionActionPtr(ArgReader& data, CommandContext& ctx)>;

class TransactionActionTable {
 public:
  // REQUIRES: `type` is not registered yet (std::logic_error otherwise).
  void add(std::string type, ActionParser parser);
  const ActionParser* find(std::string_view type) const;
  std::vector<std::string> types() const;  // sorted

 private:
  std::map<std::string, ActionParser, std::less<>> parsers_;
};

// The action families (one file each).
void register_bitmap_actions(TransactionActionTable& table);  // bitmap_commands.cpp
void register_fleece_actions(TransactionActionTable& table);  // fleece_commands.cpp

// Every action type `transaction` accepts.
TransactionActionTable make_default_action_table();

// Runs `t` under `lock`; maps its failure to a GenericError with the action's message.
asio::awaitable<blockcore::Result<nlohmann::json>> run_transaction(backup::Transaction& t,
                                                                   ManagementLock& lock);

// The command families that need the management lock.
void register_bitmap_commands(CommandTable& table,
                              const std::shared_ptr<ManagementLock>& lock);  // bitmap_commands.cpp
void register_transaction_commands(
    CommandTable& table,
    const std::shared_ptr<ManagementLock>& lock);  // transaction_commands.cpp
void register_fleece_commands(CommandTable& table,
                              const std::shared_ptr<ManagementLock>& lock);  // fleece_commands.cpp

}  // namespace server::control
