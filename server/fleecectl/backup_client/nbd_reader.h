// NbdReader: fleecectl backup's NBD client (libnbd) for one fleece view — block status of
// a meta context (base:allocation, qemu:dirty-bitmap:B) and reads with several requests
// in flight, collected as they complete.
// Threading: one thread; the handle is not shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "server/fleecectl/backup_client/extent_plan.h"

struct nbd_handle;

namespace fleecectl::backup {

class NbdReader {
 public:
  struct Completed {
    ByteRange range;
    std::vector<std::byte> data;
  };

  ~NbdReader();
  NbdReader(const NbdReader&) = delete;
  NbdReader& operator=(const NbdReader&) = delete;

  // Connects to `uri` (an NBD URI that names the export) asking for `contexts`.
  // nullptr with `error` set on failure.
  static std::unique_ptr<NbdReader> connect(const std::string& uri,
                                            const std::vector<std::string>& contexts,
                                            std::string* error);

  uint64_t size() const { return size_; }
  // Whether the server agreed to `context`.
  bool has_context(const std::string& context) const;

  // The runs `context` reports for [off, off+len), appended to `runs` (covering at
  // least one byte); returns the bytes covered, 0 with `error` set on failure.
  uint64_t block_status(const std::string& context, uint64_t off, uint64_t len,
                        std::vector<StatusRun>* runs, std::string* error);

  // Sends a read of `range`; false with `error` set when it cannot be sent.
  bool start_read(const ByteRange& range, std::string* error);
  size_t in_flight() const { return pending_.size(); }
  // Waits up to `timeout_ms` for the connection to make progress and moves every read
  // that completed into `done`. False with `error` set when a read failed (the server's
  // error, e.g. EIO from a broken snapshot) or the connection broke.
  bool poll(int timeout_ms, std::vector<Completed>* done, std::string* error);

 private:
  struct Pending {
    int64_t cookie = 0;
    ByteRange range;
    std::vector<std::byte> data;
  };
  explicit NbdReader(nbd_handle* h) : h_(h) {}

  nbd_handle* h_;
  uint64_t size_ = 0;
  std::list<Pending> pending_;  // a list: buffers stay put while libnbd fills them
};

}  // namespace fleecectl::backup
