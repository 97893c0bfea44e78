// QMP protocol-level commands: qmp_capabilities, query-version, query-commands.
#include <asio/awaitable.hpp>

#include "server/control/arg_reader.h"
#include "server/control/command_table.h"
#include "server/control/qmp_error.h"
#include "server/control/version.h"

namespace server::control {
namespace {

using blockcore::Result;
using nlohmann::json;

// Negotiation itself is the dispatcher's job; this validates the arguments. fleece
// offers no optional capabilities, so any `enable` entry is refused the way QEMU
// refuses one it does not offer.
asio::awaitable<Result<json>> qmp_capabilities(const json& args, CommandContext&) {
  ArgReader r(args);
  auto enable = r.optional_string_list("enable");
  if (auto s = r.finish(); !s.is_ok()) co_return s;
  if (enable && !enable->empty()) {
    co_return generic_error("Capability '" + enable->front() + "' not available");
  }
  co_return json::object();
}

asio::awaitable<Result<json>> query_version(const json& args, CommandContext&) {
  ArgReader r(args);
  if (auto s = r.finish(); !s.is_ok()) co_return s;
  co_return version_info();
}

asio::awaitable<Result<json>> query_commands(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  if (auto s = r.finish(); !s.is_ok()) co_return s;
  json list = json::array();
  if (ctx.commands != nullptr) {
    for (const auto& name : ctx.commands->names()) list.push_back({{"name", name}});
  }
  co_return list;
}

}  // namespace

void register_meta_commands(CommandTable& table) {
  table.add("qmp_capabilities", qmp_capabilities);
  table.add("query-version", query_version);
  table.add("query-commands", query_commands);
}

}  // namespace server::control
