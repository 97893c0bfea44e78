#include "blockcore/base/status.h"

#include <cstring>

namespace blockcore {

Status Status::from_errno(int err, std::string_view context) {
  if (err == 0) err = EIO;
  std::string m(context);
  m += ": ";
  m += std::strerror(err);
  return Status(err, std::move(m));
}

std::string Status::to_string() const {
  if (is_ok()) return "OK";
  if (!message_.empty()) return message_;
  return std::strerror(code_);
}

Status Status::with_context(std::string_view prefix) const {
  if (is_ok()) return *this;
  std::string m(prefix);
  m += ": ";
  m += message_.empty() ? std::string(std::strerror(code_)) : message_;
  return Status(code_, std::move(m));
}

}  // namespace blockcore
