// QmpConnection: fleecectl's blocking QMP client over a Unix socket (plain POSIX
// sockets). connect() reads the greeting and negotiates capabilities; execute() sends
// one command with an id and returns its reply, skipping asynchronous events.
// Threading: single-threaded; one connection per fleecectl run.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace fleecectl {

class QmpConnection {
 public:
  struct Reply {
    bool ok = false;
    nlohmann::json value;     // "return" when ok
    std::string error_class;  // when !ok
    std::string desc;
  };

  ~QmpConnection();
  QmpConnection(const QmpConnection&) = delete;
  QmpConnection& operator=(const QmpConnection&) = delete;

  // Connects, reads the greeting and runs qmp_capabilities. `timeout_s` bounds every
  // wait (0 = none). nullptr with `error` set on failure.
  static std::unique_ptr<QmpConnection> connect(const std::string& path, int timeout_s,
                                                std::string* error);

  // Runs one command. nullopt with `error` set when the connection fails (the daemon
  // went away, a timeout, a reply that is not QMP).
  std::optional<Reply> execute(const std::string& command, const nlohmann::json& arguments,
                               std::string* error);

  const nlohmann::json& greeting() const { return greeting_; }
  // Events that arrived while waiting for replies.
  const std::vector<nlohmann::json>& events() const { return events_; }

 private:
  explicit QmpConnection(int fd) : fd_(fd) {}
  bool send_all(const std::string& data, std::string* error);
  // The next JSON object from the server, or nullopt with `error` set.
  std::optional<nlohmann::json> read_message(std::string* error);

  int fd_;
  std::string buf_;
  nlohmann::json greeting_;
  std::vector<nlohmann::json> events_;
  unsigned next_id_ = 1;
};

}  // namespace fleecectl
