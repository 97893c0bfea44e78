// ControlServer over a real Unix socket in a temp dir: greeting, negotiation, pipelined
// input without newlines, errors keep the connection, events to negotiated clients
// only, several clients, socket file mode, stale/live socket handling, stop().
#include "server/control/control_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "control_test_env.h"
#include "server/control/json_stream_splitter.h"
#include "server/control/version.h"

namespace server::control {
namespace {

using nlohmann::json;

// A blocking QMP client with a receive timeout.
class TestClient {
 public:
  explicit TestClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~TestClient() { ::close(fd_); }

  bool connected() const { return connected_; }

  void send(const std::string& data) {
    ASSERT_EQ(::write(fd_, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }

  // One line without its CRLF; "" on EOF or timeout (eof() tells which).
  std::string read_line() {
    while (true) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      char tmp[4096];
      ssize_t n = ::read(fd_, tmp, sizeof(tmp));
      if (n <= 0) {
        eof_ = n == 0;
        return "";
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  json read_json() {
    std::string line = read_line();
    if (line.empty()) return json();
    return json::parse(line);
  }
  bool eof() const { return eof_; }

  json cmd(const std::string& execute, const json& args = json::object()) {
    send(json({{"execute", execute}, {"arguments", args}}).dump() + "\n");
    return read_json();
  }
  // Reads the greeting and negotiates.
  void handshake() {
    json g = read_json();
    ASSERT_TRUE(g.contains("QMP")) << g;
    ASSERT_EQ(cmd("qmp_capabilities"), json({{"return", json::object()}}));
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
};

class ControlServerTest : public ControlTestEnv {
 protected:
  ControlServerTest() : work_(asio::make_work_guard(io_)), path_(dir_.file("control.sock")) {
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ControlServerTest() override {
    server_.reset();
    work_.reset();
    io_.stop();
    thread_.join();
    for (auto& t : extra_threads_) t.join();
  }

  // Runs the io_context on one more thread (the server's strand must keep it safe).
  void add_io_thread() {
    extra_threads_.emplace_back([this] { io_.run(); });
  }

  ControlServer& start() {
    server_ = std::make_unique<ControlServer>(io_, path_, table_, ctx_);
    blockcore::Status s = server_->start();
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return *server_;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::string path_;
  std::thread thread_;
  std::vector<std::thread> extra_threads_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, SocketIsOwnerOnly) {
  start();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ControlServerTest, GreetingNegotiationAndCommands) {
  start();
  TestClient c(path_);
  ASSERT_TRUE(c.connected());
  json g = c.read_json();
  EXPECT_EQ(g, QmpDispatcher::greeting());
  EXPECT_EQ(c.cmd("query-version")["error"]["class"], "CommandNotFound");
  EXPECT_EQ(c.cmd("qmp_capabilities"), json({{"return", json::object()}}));
  EXPECT_EQ(c.cmd("query-version")["return"]["package"], version_package());
}

TEST_F(ControlServerTest, PipelinedMessagesWithoutNewlinesAnswerInOrder) {
  start();
  TestClient c(path_);
  c.read_json();
  // Python's qemu.qmp sends no newline; one write may carry several messages.
  c.send(R"({"execute":"qmp_capabilities","id":1}{"execute":"query-version","id":2})"
         R"({"execute":"nope","id":3} {"execute":"query-block-exports","id":4})");
  EXPECT_EQ(c.read_json()["id"], 1);
  EXPECT_EQ(c.read_json()["id"], 2);
  json third = c.read_json();
  EXPECT_EQ(third["id"], 3);
  EXPECT_EQ(third["error"]["class"], "CommandNotFound");
  EXPECT_EQ(c.read_json(), json({{"return", json::array()}, {"id", 4}}));
}

TEST_F(ControlServerTest, BadInputKeepsTheConnection) {
  start();
  TestClient c(path_);
  c.handshake();
  c.send("{\"execute\": }\n");
  EXPECT_EQ(c.read_json()["error"]["class"], "GenericError");
  c.send("[]\n");
  EXPECT_EQ(c.read_json()["error"]["desc"], "QMP input must be a JSON object");
  c.send("{\"arguments\": {}}\n");
  EXPECT_EQ(c.read_json()["error"]["desc"], "QMP input lacks member 'execute'");
  // A partial message is dropped by a control character (QEMU's reset).
  c.send("{\"execute\": \"query-vers\x01");
  EXPECT_EQ(c.read_json()["error"]["desc"], "JSON parse error, stray '\\x01'");
  // An oversized message is refused, then the next one works.
  std::string huge = "{\"execute\": \"query-version\", \"id\": \"" +
                     std::string(JsonStreamSplitter::kDefaultMaxMessageBytes + 10, 'x') + "\"}";
  c.send(huge);
  EXPECT_EQ(c.read_json()["error"]["class"], "GenericError");
  EXPECT_TRUE(c.cmd("query-version").contains("return"));
}

TEST_F(ControlServerTest, EventsReachNegotiatedClientsOnly) {
  ControlServer& server = start();
  TestClient negotiated(path_);
  negotiated.handshake();
  TestClient fresh(path_);
  fresh.read_json();  // greeting only
  // Make sure both sessions exist before the event goes out.
  negotiated.cmd("query-version");
  server.broadcast_event("FLEECE_BROKEN", {{"id", "f1"}});
  json ev = negotiated.read_json();
  EXPECT_EQ(ev["event"], "FLEECE_BROKEN");
  EXPECT_EQ(ev["data"], json({{"id", "f1"}}));
  EXPECT_GT(ev["timestamp"]["seconds"].get<int64_t>(), 1600000000);
  EXPECT_TRUE(ev["timestamp"]["microseconds"].is_number_integer());
  // Events from command handlers go out the same way.
  add_file_node("f0", image("a.img"));
  negotiated.cmd("block-export-add", {{"type", "nbd"}, {"id", "e0"}, {"node-name", "f0"}});
  EXPECT_EQ(negotiated.cmd("block-export-del", {{"id", "e0"}}), json({{"return", json::object()}}));
  ev = negotiated.read_json();
  EXPECT_EQ(ev["event"], "BLOCK_EXPORT_DELETED");
  EXPECT_EQ(ev["data"], json({{"id", "e0"}}));
  // The un-negotiated client got nothing: its next line is the reply to its command.
  fresh.send("{\"execute\": \"qmp_capabilities\", \"id\": \"neg\"}");
  EXPECT_EQ(fresh.read_json(), json({{"return", json::object()}, {"id", "neg"}}));
}

TEST_F(ControlServerTest, SeveralClientsAtOnce) {
  ControlServer& server = start();
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(std::make_unique<TestClient>(path_));
    clients.back()->handshake();
  }
  EXPECT_EQ(server.client_count(), 5u);
  add_file_node("f0", image("a.img"));
  EXPECT_TRUE(clients[0]
                  ->cmd("block-export-add", {{"type", "nbd"}, {"id", "e0"}, {"node-name", "f0"}})
                  .contains("return"));
  for (auto& c : clients) EXPECT_EQ(c->cmd("query-block-exports")["return"].size(), 1u);
  clients.clear();
  for (int i = 0; i < 100 && server.client_count() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server.client_count(), 0u);
}

TEST_F(ControlServerTest, SeveralIoThreadsWithConcurrentClientsAndEvents) {
  add_io_thread();
  add_io_thread();
  ControlServer& server = start();
  add_file_node("f0", image("a.img"));
  constexpr int kClients = 4;
  constexpr int kRounds = 20;
  std::vector<std::thread> workers;
  std::atomic<int> failures{0};
  for (int i = 0; i < kClients; ++i) {
    workers.emplace_back([&, i] {
      TestClient c(path_);
      json g = c.read_json();
      if (!g.contains("QMP")) ++failures;
      c.send(R"({"execute": "qmp_capabilities"})");
      if (!c.read_json().contains("return")) ++failures;
      for (int r = 0; r < kRounds; ++r) {
        std::string id = "e" + std::to_string(i) + "-" + std::to_string(r);
        json add = {{"execute", "block-export-add"},
                    {"arguments", {{"type", "nbd"}, {"id", id}, {"node-name", "f0"}}},
                    {"id", id}};
        json del = {{"execute", "block-export-del"}, {"arguments", {{"id", id}}}, {"id", id}};
        c.send(add.dump() + del.dump());
        // Replies in order; events from everyone's deletions interleave.
        int replies = 0;
        while (replies < 2) {
          json m = c.read_json();
          if (m.is_null()) {
            ++failures;
            return;
          }
          if (m.contains("event")) continue;
          if (m.value("id", "") != id || !m.contains("return")) ++failures;
          ++replies;
        }
      }
    });
  }
  for (int i = 0; i < 50; ++i) server.broadcast_event("TICK", {{"n", i}});
  for (auto& w : workers) w.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(exports_.list().empty());
}

TEST_F(ControlServerTest, TooManyClientsAreTurnedAwayWithAnError) {
  ControlServer& server = start();
  std::vector<std::unique_ptr<TestClient>> clients;
  for (size_t i = 0; i < ControlServer::kMaxClients; ++i) {
    clients.push_back(std::make_unique<TestClient>(path_));
    ASSERT_TRUE(clients.back()->read_json().contains("QMP"));
  }
  EXPECT_EQ(server.client_count(), ControlServer::kMaxClients);
  TestClient extra(path_);
  EXPECT_EQ(extra.read_json()["error"]["class"], "GenericError");
  EXPECT_EQ(extra.read_line(), "");
  EXPECT_TRUE(extra.eof());
}

TEST_F(ControlServerTest, StaleSocketFileIsReplaced) {
  // A socket file nobody listens on, as a killed daemon leaves it.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  start();
  TestClient c(path_);
  c.handshake();
}

TEST_F(ControlServerTest, LiveSocketIsRefusedAndLeftAlone) {
  start();
  ControlServer second(io_, path_, table_, ctx_);
  blockcore::Status s = second.start();
  EXPECT_EQ(s.code(), EADDRINUSE) << s.to_string();
  second.stop();
  // The first server still serves.
  TestClient c(path_);
  c.handshake();
}

TEST_F(ControlServerTest, NonSocketFileIsNeverReplaced) {
  fleece_test::make_file(path_, 10);
  ControlServer server(io_, path_, table_, ctx_);
  EXPECT_EQ(server.start().code(), EEXIST);
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(ControlServerTest, StopClosesClientsAndRemovesTheSocket) {
  ControlServer& server = start();
  TestClient c(path_);
  c.handshake();
  server.stop();
  EXPECT_EQ(c.read_line(), "");
  EXPECT_TRUE(c.eof());
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
  TestClient late(path_);
  EXPECT_FALSE(late.connected());
  // Events after stop go nowhere and do not crash.
  server.broadcast_event("LATE", json::object());
}

}  // namespace
}  // namespace server::control
