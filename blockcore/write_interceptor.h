// WriteInterceptor: a hook every write-like request of a node (write, write-zeroes,
// discard) awaits after validation and dirty-bitmap marking and before the driver runs.
// Copy-before-write is one: it is attached to the live node itself, so the writes of
// every connection and export of that node pass through it, including connections that
// were open before a fleece started.
// Threading: before_write() is called concurrently from any executor.
#pragma once

#include <cstdint>

#include "blockcore/base/status.h"
#include "blockcore/base/task.h"

namespace blockcore {

class WriteInterceptor {
 public:
  virtual ~WriteInterceptor() = default;
  // An error fails the request (the driver never sees it).
  virtual Task<Status> before_write(uint64_t off, uint64_t len) = 0;
};

}  // namespace blockcore
