// Status: the error value of the I/O path — an errno-like code plus a human context
// message. OK carries no allocation. Errors travel as values (never exceptions) from
// drivers up to the NBD layer, which maps the code to an NBD error.
// Threading: a Status is a plain value; const methods may be called concurrently.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>

namespace blockcore {

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status ok() { return Status(); }
  // Named factories for the codes the block layer uses.
  static Status error(int code, std::string message) { return Status(code, std::move(message)); }
  static Status io_error(std::string m) { return Status(EIO, std::move(m)); }
  static Status invalid(std::string m) { return Status(EINVAL, std::move(m)); }
  static Status not_supported(std::string m) { return Status(ENOTSUP, std::move(m)); }
  static Status no_space(std::string m) { return Status(ENOSPC, std::move(m)); }
  static Status read_only(std::string m) { return Status(EROFS, std::move(m)); }
  static Status permission(std::string m) { return Status(EPERM, std::move(m)); }
  static Status no_memory(std::string m) { return Status(ENOMEM, std::move(m)); }
  // From the current errno (or an explicit one) of a failed syscall, with context.
  static Status from_errno(int err, std::string_view context);

  bool is_ok() const { return code_ == 0; }
  explicit operator bool() const { return is_ok(); }
  int code() const { return code_; }
  const std::string& message() const { return message_; }
  // "context: strerror(code)" style rendering for logs and error replies.
  std::string to_string() const;

  // Returns a copy with `prefix: ` prepended to the message (keeps the code).
  Status with_context(std::string_view prefix) const;

 private:
  Status(int code, std::string message) : code_(code), message_(std::move(message)) {}

  int code_ = 0;
  std::string message_;
};

}  // namespace blockcore

// Propagates a failed Status out of a coroutine returning Task<Status>.
#define FLEECE_CO_RETURN_IF_ERROR(expr)        \
  do {                                         \
    ::blockcore::Status fleece_s_ = (expr);    \
    if (!fleece_s_.is_ok()) co_return fleece_s_; \
  } while (0)

#define FLEECE_RETURN_IF_ERROR(expr)           \
  do {                                         \
    ::blockcore::Status fleece_s_ = (expr);    \
    if (!fleece_s_.is_ok()) return fleece_s_;  \
  } while (0)
