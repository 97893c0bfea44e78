// ExportCounters: what NBD clients did with one export, counted by the NBD layer
// (server/nbd/request_handler.cpp): connections that reached transmission, requests
// executed per NBD command, error replies (including requests the NBD layer refused
// before any node saw them), and the bytes of successful reads and writes. Node-level
// statistics (blockcore/stats/io_stats.h) count what reached the graph instead.
// Counters live as long as the Export: a replaced export (SIGHUP) starts from zero.
// Threading: lock-free (relaxed atomics); any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace server {

struct ExportCountersSnapshot {
  static constexpr size_t kCommands = 8;  // NBD_CMD_READ (0) .. NBD_CMD_BLOCK_STATUS (7)
  uint64_t connections = 0;               // total since the export was defined
  std::array<uint64_t, kCommands> requests{};
  std::array<uint64_t, kCommands> errors{};
  uint64_t bytes_read = 0;
  uint64_t bytes_read_zero_copy = 0;  // of bytes_read: spliced, not copied
  uint64_t bytes_written = 0;
  uint64_t bytes_written_zero_copy = 0;  // of bytes_written: spliced in through a pipe
};

class ExportCounters {
 public:
  static constexpr size_t kCommands = ExportCountersSnapshot::kCommands;

  void connection() { connections_.fetch_add(1, std::memory_order_relaxed); }
  void request(uint16_t command) {
    if (command < kCommands) requests_[command].fetch_add(1, std::memory_order_relaxed);
  }
  void error(uint16_t command) {
    if (command < kCommands) errors_[command].fetch_add(1, std::memory_order_relaxed);
  }
  void read(uint64_t bytes) { bytes_read_.fetch_add(bytes, std::memory_order_relaxed); }
  // Of the bytes read, those spliced from the page cache to the socket (zero-copy).
  void read_zero_copy(uint64_t bytes) {
    bytes_read_zero_copy_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void written(uint64_t bytes) { bytes_written_.fetch_add(bytes, std::memory_order_relaxed); }
  // Of the bytes written, those spliced from the socket through a pipe.
  void written_zero_copy(uint64_t bytes) {
    bytes_written_zero_copy_.fetch_add(bytes, std::memory_order_relaxed);
  }

  ExportCountersSnapshot snapshot() const {
    ExportCountersSnapshot s;
    s.connections = connections_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < kCommands; ++i) {
      s.requests[i] = requests_[i].load(std::memory_order_relaxed);
      s.errors[i] = errors_[i].load(std::memory_order_relaxed);
    }
    s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
    s.bytes_read_zero_copy = bytes_read_zero_copy_.load(std::memory_order_relaxed);
    s.bytes_written = bytes_written_.load(std::memory_order_relaxed);
    s.bytes_written_zero_copy = bytes_written_zero_copy_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::atomic<uint64_t> connections_{0};
  std::array<std::atomic<uint64_t>, kCommands> requests_{};
  std::array<std::atomic<uint64_t>, kCommands> errors_{};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_read_zero_copy_{0};
  std::atomic<uint64_t> bytes_written_zero_copy_{0};
  std::atomic<uint64_t> bytes_written_{0};
};

}  // namespace server
