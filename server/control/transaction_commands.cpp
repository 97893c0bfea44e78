// The `transaction` command (QEMU's qmp_transaction): {"actions": [{"type": T, "data":
// {...}}, ...], "properties": {"completion-mode": "individual"}}. Every action's
// arguments are checked before anything happens; then the actions run all-or-nothing
// (backup::Transaction). Types are those of the TransactionActionTable.
#include <asio/awaitable.hpp>
#include <stdexcept>

#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/control/transaction_actions.h"

namespace server::control {

using blockcore::Result;
using blockcore::Status;
using nlohmann::json;

void TransactionActionTable::add(std::string type, ActionParser parser) {
  if (parsers_.count(type)) {
    throw std::logic_error("transaction action '" + type + "' registered twice");
  }
  parsers_.emplace(std::move(type), std::move(parser));
}

const ActionParser* TransactionActionTable::find(std::string_view type) const {
  auto it = parsers_.find(type);
  return it == parsers_.end() ? nullptr : &it->second;
}

std::vector<std::string> TransactionActionTable::types() const {
  std::vector<std::string> out;
  for (const auto& [type, parser] : parsers_) out.push_back(type);
  return out;
}

TransactionActionTable make_default_action_table() {
  TransactionActionTable table;
  register_bitmap_actions(table);
  register_fleece_actions(table);
  return table;
}

asio::awaitable<Result<json>> run_transaction(backup::Transaction& t, ManagementLock& lock) {
  blockcore::AsyncMutex::Guard held = co_await lock.lock();
  Status s = co_await t.run();
  if (!s.is_ok()) co_return generic_error(error_desc_of(s));
  co_return json::object();
}

namespace {

// An error of an ArgReader over an action's data names its parameters relative to the
// data ("Parameter 'node' is missing"); in a transaction QEMU names the full path
// ("Parameter 'actions[0].data.node' is missing"). Every such message names the
// parameter in its first quotes.
Status with_parameter_prefix(const Status& s, const std::string& prefix) {
  std::string desc = error_desc_of(s);
  if (size_t quote = desc.find('\''); quote != std::string::npos) {
    desc.insert(quote + 1, prefix);
  }
  return generic_error(std::move(desc));
}

// One element of "actions": its type's parser builds the action from "data".
Result<backup::TransactionActionPtr> read_action(const json& item, size_t index,
                                                 const TransactionActionTable& types,
                                                 CommandContext& ctx, std::string* type_out) {
  const std::string at = "actions[" + std::to_string(index) + "]";
  if (!item.is_object()) return generic_error(invalid_parameter_type(at, "object"));
  for (auto it = item.begin(); it != item.end(); ++it) {
    if (it.key() != "type" && it.key() != "data") {
      return generic_error(unexpected_parameter(at + "." + it.key()));
    }
  }
  auto type = item.find("type");
  if (type == item.end()) return generic_error(missing_parameter(at + ".type"));
  if (!type->is_string()) return generic_error(invalid_parameter_type(at + ".type", "string"));
  const ActionParser* parser = types.find(type->get<std::string>());
  if (parser == nullptr) {
    return generic_error(invalid_parameter_value(at + ".type", type->get<std::string>()));
  }
  auto data = item.find("data");
  if (data == item.end()) return generic_error(missing_parameter(at + ".data"));
  if (!data->is_object()) return generic_error(invalid_parameter_type(at + ".data", "object"));
  ArgReader r(*data);
  backup::TransactionActionPtr action = (*parser)(r, ctx);
  if (Status s = r.finish(); !s.is_ok()) return with_parameter_prefix(s, at + ".data.");
  *type_out = type->get<std::string>();
  return action;
}

asio::awaitable<Result<json>> transaction(const json& args, CommandContext& ctx,
                                          const TransactionActionTable& types,
                                          ManagementLock& lock) {
  ArgReader r(args);
  const json* actions = r.optional_value("actions");
  if (actions == nullptr && r.ok()) r.fail(generic_error(missing_parameter("actions")));
  if (actions != nullptr && !actions->is_array()) r.fail_type("actions", "array");
  std::string mode = "individual";
  if (auto properties = r.optional_object("properties")) {
    mode = properties->optional_enum("completion-mode", {"individual", "grouped"})
               .value_or("individual");
  }
  if (Status s = r.finish(); !s.is_ok()) co_return s;

  std::vector<backup::TransactionActionPtr> list;
  for (size_t i = 0; i < actions->size(); ++i) {
    std::string type;
    Result<backup::TransactionActionPtr> action = read_action((*actions)[i], i, types, ctx, &type);
    if (!action.is_ok()) co_return action.status();
    // QEMU supports "grouped" only for backup jobs, which fleece does not have.
    if (mode != "individual") {
      co_return generic_error("Action '" + type +
                              "' does not support transaction property completion-mode = " + mode);
    }
    list.push_back(std::move(*action));
  }
  backup::Transaction t(std::move(list));
  co_return co_await run_transaction(t, lock);
}

}  // namespace

void register_transaction_commands(CommandTable& table,
                                   const std::shared_ptr<ManagementLock>& lock) {
  auto types = std::make_shared<const TransactionActionTable>(make_default_action_table());
  table.add("transaction", [types, lock](const json& args, CommandContext& ctx) {
    return transaction(args, ctx, *types, *lock);
  });
}

}  // namespace server::control
