#include "server/fleecectl/backup_client/nbd_reader.h"

#include <libnbd.h>

#include <algorithm>

namespace fleecectl::backup {

namespace {

std::string last_error(const std::string& what) {
  const char* e = nbd_get_error();
  return what + ": " + (e != nullptr ? e : "unknown NBD error");
}

struct StatusCollector {
  const std::string* context;
  std::vector<StatusRun>* runs;
  uint64_t covered = 0;
};

int collect_extents(void* user, const char* metacontext, uint64_t /*offset*/, uint32_t* entries,
                    size_t nr_entries, int* /*error*/) {
  auto* c = static_cast<StatusCollector*>(user);
  if (*c->context != metacontext) return 0;
  for (size_t i = 0; i + 1 < nr_entries; i += 2) {
    c->runs->push_back({entries[i], entries[i + 1]});
    c->covered += entries[i];
  }
  return 0;
}

}  // namespace

NbdReader::~NbdReader() {
  if (h_ != nullptr) {
    if (pending_.empty()) (void)nbd_shutdown(h_, 0);
    nbd_close(h_);
  }
}

std::unique_ptr<NbdReader> NbdReader::connect(const std::string& uri,
                                              const std::vector<std::string>& contexts,
                                              std::string* error) {
  nbd_handle* h = nbd_create();
  if (h == nullptr) {
    *error = last_error("cannot create an NBD handle");
    return nullptr;
  }
  std::unique_ptr<NbdReader> r(new NbdReader(h));
  for (const std::string& c : contexts) {
    if (nbd_add_meta_context(h, c.c_str()) == -1) {
      *error = last_error("cannot ask for " + c);
      return nullptr;
    }
  }
  if (nbd_connect_uri(h, uri.c_str()) == -1) {
    *error = last_error("cannot connect to " + uri);
    return nullptr;
  }
  int64_t size = nbd_get_size(h);
  if (size < 0) {
    *error = last_error("no export size from " + uri);
    return nullptr;
  }
  r->size_ = static_cast<uint64_t>(size);
  return r;
}

bool NbdReader::has_context(const std::string& context) const {
  return nbd_can_meta_context(h_, context.c_str()) == 1;
}

uint64_t NbdReader::block_status(const std::string& context, uint64_t off, uint64_t len,
                                 std::vector<StatusRun>* runs, std::string* error) {
  StatusCollector c{&context, runs};
  // One request covers at most what a 32-bit length can say.
  const uint64_t count = std::min<uint64_t>(len, 1u << 30);
  nbd_extent_callback cb{.callback = collect_extents, .user_data = &c, .free = nullptr};
  if (nbd_block_status(h_, count, off, cb, 0) == -1) {
    *error = last_error("block status of " + context);
    return 0;
  }
  if (c.covered == 0) *error = "the server described nothing of " + context + " at " +
                                std::to_string(off);
  return c.covered;
}

bool NbdReader::start_read(const ByteRange& range, std::string* error) {
  Pending& p = pending_.emplace_back();
  p.range = range;
  p.data.resize(range.length);
  // No completion callback (NBD_NULL_COMPLETION is a C compound literal).
  const nbd_completion_callback none{.callback = nullptr, .user_data = nullptr, .free = nullptr};
  p.cookie = nbd_aio_pread(h_, p.data.data(), p.data.size(), range.offset, none, 0);
  if (p.cookie == -1) {
    *error = last_error("cannot send a read at " + std::to_string(range.offset));
    pending_.pop_back();
    return false;
  }
  return true;
}

bool NbdReader::poll(int timeout_ms, std::vector<Completed>* done, std::string* error) {
  if (nbd_poll(h_, timeout_ms) == -1) {
    *error = last_error("NBD connection");
    return false;
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    int r = nbd_aio_command_completed(h_, it->cookie);
    if (r == 0) {
      ++it;
      continue;
    }
    if (r == -1) {
      *error = last_error("read of " + std::to_string(it->range.length) + " bytes at " +
                          std::to_string(it->range.offset) + " failed");
      pending_.erase(it);
      return false;
    }
    done->push_back({it->range, std::move(it->data)});
    it = pending_.erase(it);
  }
  return true;
}

}  // namespace fleecectl::backup
