// CommandTable: QMP command name -> handler. Each command family lives in its own file
// and registers itself through one register_*_commands() function; later issues add a
// family by writing such a file and one line in make_default_command_table().
// A handler reads its arguments with ArgReader (all checks before any side effect) and
// co_returns the "return" value, or a failed Status whose message becomes the QMP desc
// (see qmp_error.h for the class).
// Threading: built once before serving, then read-only (find/names are const).
#pragma once

#include <asio/awaitable.hpp>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/base/result.h"
#include "server/control/command_context.h"

namespace server::control {

// `args` is the "arguments" object (or null when the request had none); it stays alive
// until the handler completes.
using CommandHandler = std::function<asio::awaitable<blockcore::Result<nlohmann::json>>(
    const nlohmann::json& args, CommandContext& ctx)>;

class CommandTable {
 public:
  // REQUIRES: `name` is not registered yet (a duplicate is a programming error and
  // throws std::logic_error).
  void add(std::string name, CommandHandler handler);
  const CommandHandler* find(std::string_view name) const;
  std::vector<std::string> names() const;  // sorted
  size_t size() const { return commands_.size(); }

 private:
  std::map<std::string, CommandHandler, std::less<>> commands_;
};

// The command families (one file each).
void register_meta_commands(CommandTable& table);    // meta_commands.cpp
void register_block_commands(CommandTable& table);   // block_commands.cpp
void register_export_commands(CommandTable& table);  // export_commands.cpp
void register_create_commands(CommandTable& table);  // create_commands.cpp
void register_stats_commands(CommandTable& table);   // stats_commands.cpp
void register_throttle_commands(CommandTable& table);  // throttle_commands.cpp
// The bitmap commands and `transaction` share a management lock: see
// transaction_actions.h (register_bitmap_commands, register_transaction_commands).

// Every command fleece offers.
CommandTable make_default_command_table();

}  // namespace server::control
