#include "server/fleecectl/qmp_connection.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace fleecectl {

using nlohmann::json;

namespace {

// A bound on one server line, far above any reply fleece sends.
constexpr size_t kMaxLineBytes = 64 << 20;

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

QmpConnection::~QmpConnection() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<QmpConnection> QmpConnection::connect(const std::string& path, int timeout_s,
                                                      std::string* error) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    *error = "control socket path '" + path + "' is empty or too long";
    return nullptr;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "socket: " + errno_text(errno);
    return nullptr;
  }
  std::unique_ptr<QmpConnection> c(new QmpConnection(fd));
  if (timeout_s > 0) {
    timeval tv{timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    *error = "cannot connect to the fleeced control socket " + path + ": " + errno_text(err);
    if (err == ENOENT || err == ECONNREFUSED) *error += " (is fleeced running?)";
    return nullptr;
  }
  auto greeting = c->read_message(error);
  if (!greeting) return nullptr;
  if (!greeting->contains("QMP")) {
    *error = path + " does not speak QMP (no greeting)";
    return nullptr;
  }
  c->greeting_ = std::move(*greeting);
  auto reply = c->execute("qmp_capabilities", json::object(), error);
  if (!reply) return nullptr;
  if (!reply->ok) {
    *error = "capabilities negotiation failed: " + reply->desc;
    return nullptr;
  }
  return c;
}

bool QmpConnection::send_all(const std::string& data, std::string* error) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "write to the control socket: " +
               (errno == EAGAIN ? std::string("timed out") : errno_text(errno));
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

std::optional<json> QmpConnection::read_message(std::string* error) {
  while (true) {
    size_t nl = buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        json j = json::parse(line);
        if (j.is_object()) return j;
      } catch (const json::parse_error&) {
      }
      *error = "the daemon sent something that is not a QMP message: " + line.substr(0, 200);
      return std::nullopt;
    }
    if (buf_.size() > kMaxLineBytes) {
      *error = "the daemon sent an overlong line";
      return std::nullopt;
    }
    char tmp[65536];
    ssize_t n = ::read(fd_, tmp, sizeof(tmp));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "read from the control socket: " +
               (errno == EAGAIN ? std::string("timed out waiting for fleeced") : errno_text(errno));
      return std::nullopt;
    }
    if (n == 0) {
      *error = "fleeced closed the control connection";
      return std::nullopt;
    }
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::optional<QmpConnection::Reply> QmpConnection::execute(const std::string& command,
                                                           const json& arguments,
                                                           std::string* error) {
  const std::string id = "fleecectl-" + std::to_string(next_id_++);
  json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null() && !arguments.empty()) request["arguments"] = arguments;
  if (!send_all(request.dump() + "\n", error)) return std::nullopt;
  while (true) {
    auto msg = read_message(error);
    if (!msg) return std::nullopt;
    if (msg->contains("event")) {
      events_.push_back(std::move(*msg));
      continue;
    }
    // Replies to other ids cannot happen on our private connection; QMP says to drop
    // them. An error without id (a parse error) is ours.
    auto it = msg->find("id");
    if (it != msg->end() && *it != id) continue;
    Reply r;
    if (auto ret = msg->find("return"); ret != msg->end()) {
      r.ok = true;
      r.value = *ret;
      return r;
    }
    if (auto err = msg->find("error"); err != msg->end() && err->is_object()) {
      r.error_class = err->value("class", "GenericError");
      r.desc = err->value("desc", "(no description)");
      return r;
    }
    *error = "unexpected reply from fleeced: " + msg->dump();
    return std::nullopt;
  }
}

}  // namespace fleecectl
