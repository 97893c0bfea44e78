#include "server/control/qmp_dispatcher.h"

#include <spdlog/spdlog.h>

#include <exception>

#include "server/control/qmp_error.h"
#include "server/control/version.h"

namespace server::control {

using blockcore::Result;
using nlohmann::json;

namespace {

constexpr std::string_view kCapabilities = "qmp_capabilities";

// nlohmann's what() starts with "[json.exception.parse_error.101] "; keep the rest.
std::string parse_error_text(const std::exception& e) {
  std::string_view what = e.what();
  if (!what.empty() && what.front() == '[') {
    size_t end = what.find("] ");
    if (end != std::string_view::npos) what.remove_prefix(end + 2);
  }
  return "JSON parse error, " + std::string(what);
}

// Queries and negotiation change nothing; they are logged at debug level only.
bool is_query(const std::string& command) {
  return command.rfind("query-", 0) == 0 || command == kCapabilities;
}

}  // namespace

QmpDispatcher::QmpDispatcher(const CommandTable& table, CommandContext& ctx)
    : table_(table), ctx_(ctx) {
  if (ctx_.commands == nullptr) ctx_.commands = &table_;
}

json QmpDispatcher::greeting() {
  return {{"QMP", {{"version", version_info()}, {"capabilities", json::array()}}}};
}

json QmpDispatcher::parse_error_reply(std::string_view desc) {
  return make_error_reply(ErrorClass::kGenericError, desc, nullptr);
}

std::string QmpDispatcher::encode(const json& message) {
  std::string line = message.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  line += "\r\n";
  return line;
}

asio::awaitable<json> QmpDispatcher::handle(std::string_view text) {
  json request;
  try {
    request = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for 1e400
    co_return parse_error_reply(parse_error_text(e));
  }
  if (!request.is_object()) {
    co_return parse_error_reply("QMP input must be a JSON object");
  }

  const json* id = nullptr;
  if (auto it = request.find("id"); it != request.end()) id = &*it;

  std::string command;
  const json* args = nullptr;
  for (auto it = request.begin(); it != request.end(); ++it) {
    const std::string& key = it.key();
    if (key == "execute") {
      if (!it->is_string()) {
        co_return make_error_reply(ErrorClass::kGenericError,
                                   "QMP input member 'execute' must be a string", id);
      }
      command = it->get<std::string>();
    } else if (key == "arguments") {
      if (!it->is_object()) {
        co_return make_error_reply(ErrorClass::kGenericError,
                                   "QMP input member 'arguments' must be an object", id);
      }
      args = &*it;
    } else if (key != "id") {
      co_return make_error_reply(ErrorClass::kGenericError,
                                 "QMP input member '" + key + "' is unexpected", id);
    }
  }
  if (!request.contains("execute")) {
    co_return make_error_reply(ErrorClass::kGenericError, "QMP input lacks member 'execute'", id);
  }

  if (!negotiated_ && command != kCapabilities) {
    co_return make_error_reply(ErrorClass::kCommandNotFound,
                               "Expecting capabilities negotiation with 'qmp_capabilities'", id);
  }
  if (negotiated_ && command == kCapabilities) {
    co_return make_error_reply(ErrorClass::kCommandNotFound,
                               "Capabilities negotiation is already complete, command ignored", id);
  }
  static const json kNoArguments = json::object();
  json reply = co_await execute(command, args != nullptr ? *args : kNoArguments, id);
  if (command == kCapabilities && reply.contains("return")) negotiated_ = true;
  co_return reply;
}

asio::awaitable<json> QmpDispatcher::execute(const std::string& command, const json& args,
                                             const json* id) {
  const CommandHandler* handler = table_.find(command);
  if (handler == nullptr) {
    co_return make_error_reply(ErrorClass::kCommandNotFound,
                               "The command " + command + " has not been found", id);
  }
  std::string failure;
  try {
    Result<json> r = co_await (*handler)(args, ctx_);
    if (r.is_ok()) {
      if (is_query(command)) {
        spdlog::debug("control: {} ok", command);
      } else {
        spdlog::info("control: {} {} ok", command,
                     args.dump(-1, ' ', false, json::error_handler_t::replace));
      }
      co_return make_return_reply(std::move(r).value(), id);
    }
    spdlog::info("control: {} failed: {}", command, error_desc_of(r.status()));
    co_return make_error_reply(r.status(), id);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  // A handler bug must not take the connection or the daemon down.
  spdlog::error("control: {} threw: {}", command, failure);
  co_return make_error_reply(ErrorClass::kGenericError, "internal error: " + failure, id);
}

}  // namespace server::control
