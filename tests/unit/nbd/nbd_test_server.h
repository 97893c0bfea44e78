// Test fixture: an NbdServer on its own io_context threads serving MemoryNode exports;
// connect() hands the server one end of a socketpair and returns a TestClient on the
// other. Log lines are captured so tests can assert the per-connection summary.
// Threading: the server runs on `threads` io threads; tests drive clients synchronously.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "nbd_test_client.h"
#include "server/export/export_registry.h"
#include "server/nbd/meta_context.h"
#include "server/nbd/nbd_server.h"
#include "testing/memory_node.h"

namespace nbd_test {

class NbdServerFixture : public ::testing::Test {
 protected:
  static constexpr uint64_t kSize = 1 << 20;

  void SetUp() override {
    log_sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
    old_logger_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", log_sink_);
    if (std::getenv("NBD_TEST_LOG")) {  // NBD_TEST_LOG=1: also show the server log
      logger->sinks().push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    }
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
    node_ = fleece_test::MemoryNode::create(kSize);
    add_export("disk", node_, true, "test disk");
  }

  void TearDown() override {
    stop_server();
    spdlog::set_default_logger(old_logger_);
  }

  void add_export(const std::string& name, blockcore::BlockNodePtr node, bool writable,
                  std::string description = {}) {
    auto e = std::make_shared<server::Export>();
    e->name = name;
    e->description = std::move(description);
    e->root = std::move(node);
    e->writable = writable;
    ASSERT_TRUE(exports_.add(e).is_ok());
  }

  void start_server(server::nbd::NbdServerOptions opts = {}, unsigned threads = 1) {
    server_ = std::make_unique<server::nbd::NbdServer>(exports_, contexts_, opts);
    for (unsigned i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }

  void stop_server() {
    if (!server_) return;
    std::promise<void> done;
    asio::co_spawn(io_, server_->shutdown(std::chrono::milliseconds(2000)),
                   [&](std::exception_ptr) { done.set_value(); });
    done.get_future().wait();
    // A connection still alive after shutdown() is stuck (its work would keep the io
    // threads running forever): fail instead of hanging.
    if (server_->connection_count() != 0) {
      ADD_FAILURE() << server_->connection_count() << " connection(s) outlived shutdown()";
      io_.stop();
    }
    work_.reset();
    for (auto& t : threads_) t.join();
    threads_.clear();
    server_.reset();
  }

  // Connects a new client (starting the server with defaults if needed).
  std::unique_ptr<TestClient> connect(int timeout_ms = 5000) {
    if (!server_) start_server();
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    asio::generic::stream_protocol::socket s(
        io_, asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), sv[0]);
    server_->accept(std::move(s), "peer" + std::to_string(++peers_));
    return std::make_unique<TestClient>(sv[1], timeout_ms);
  }

  // Waits until the server has no connection left (true) or the timeout passes.
  bool wait_no_connections(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (server_->connection_count() > 0) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  std::vector<std::string> log_lines() { return log_sink_->last_formatted(); }
  // The "connection ... closed" line logged for a peer, or "".
  std::string closed_line(const std::string& peer) {
    for (auto& l : log_lines()) {
      if (l.find("connection from " + peer + " closed") != std::string::npos) return l;
    }
    return {};
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::vector<std::thread> threads_;
  server::ExportRegistry exports_;
  server::nbd::MetaContextRegistry contexts_;
  std::unique_ptr<server::nbd::NbdServer> server_;
  std::shared_ptr<fleece_test::MemoryNode> node_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_sink_;
  std::shared_ptr<spdlog::logger> old_logger_;
  int peers_ = 0;
};

}  // namespace nbd_test
