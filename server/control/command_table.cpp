#include "server/control/command_table.h"

#include <memory>
#include <stdexcept>

#include "server/control/transaction_actions.h"

namespace server::control {

void CommandTable::add(std::string name, CommandHandler handler) {
  if (commands_.count(name)) {
    throw std::logic_error("QMP command '" + name + "' registered twice");
  }
  commands_.emplace(std::move(name), std::move(handler));
}

const CommandHandler* CommandTable::find(std::string_view name) const {
  auto it = commands_.find(name);
  return it == commands_.end() ? nullptr : &it->second;
}

std::vector<std::string> CommandTable::names() const {
  std::vector<std::string> out;
  out.reserve(commands_.size());
  for (const auto& [name, handler] : commands_) out.push_back(name);
  return out;
}

CommandTable make_default_command_table() {
  CommandTable table;
  register_meta_commands(table);
  register_block_commands(table);
  register_export_commands(table);
  register_create_commands(table);
  register_stats_commands(table);
  register_throttle_commands(table);
  // One lock for every bitmap management command (not global: owned by the handlers).
  auto bitmap_lock = std::make_shared<ManagementLock>();
  register_bitmap_commands(table, bitmap_lock);
  register_transaction_commands(table, bitmap_lock);
  register_fleece_commands(table, bitmap_lock);
  return table;
}

}  // namespace server::control
