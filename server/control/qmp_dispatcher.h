// QmpDispatcher: the QMP protocol of one client, without the socket — parses one JSON
// text, checks the request shape exactly as QEMU does ("QMP input must be a JSON
// object", "QMP input lacks member 'execute'", ...), enforces capabilities negotiation
// (only qmp_capabilities until it succeeds; CommandNotFound otherwise), runs the
// command from the table and builds the reply, echoing "id". A handler that throws
// (a bug) becomes a GenericError reply; the connection and the daemon stay up.
// Threading: one dispatcher per client; handle() calls are sequential (QMP executes
// in-band commands in order) on the control server's executor.
#pragma once

#include <asio/awaitable.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "server/control/command_table.h"

namespace server::control {

class QmpDispatcher {
 public:
  QmpDispatcher(const CommandTable& table, CommandContext& ctx);

  // True once qmp_capabilities succeeded (command mode: events are delivered).
  bool negotiated() const { return negotiated_; }

  // Handles one complete JSON text and returns the reply object.
  asio::awaitable<nlohmann::json> handle(std::string_view text);

  // {"QMP": {"version": ..., "capabilities": []}}
  static nlohmann::json greeting();
  // The reply to input that is not JSON at all (no id can be known).
  static nlohmann::json parse_error_reply(std::string_view desc);
  // One wire line: compact ASCII JSON (non-ASCII escaped) followed by CRLF.
  static std::string encode(const nlohmann::json& message);

 private:
  asio::awaitable<nlohmann::json> execute(const std::string& command, const nlohmann::json& args,
                                          const nlohmann::json* id);

  const CommandTable& table_;
  CommandContext& ctx_;
  bool negotiated_ = false;
};

}  // namespace server::control
