// JsonStreamSplitter: cuts a QMP input byte stream into single JSON texts without
// parsing them, the way QEMU's JSON streamer does — messages need no newline between
// them (Python's qemu.qmp sends none) and may span lines. It tracks strings, escapes
// and bracket depth; bounds the size and nesting of one message (the excess is
// reported once and skipped to the end of that message); and, as QEMU documents, an
// ASCII control character other than \t \r \n (or a 0xFF byte) is a lexical error that
// drops any partial message, so a client can always get the parser back to a clean
// state. Pure code, no I/O.
// Threading: one splitter per connection, not thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace server::control {

class JsonStreamSplitter {
 public:
  static constexpr size_t kDefaultMaxMessageBytes = 1 << 20;
  static constexpr unsigned kDefaultMaxDepth = 64;

  struct Item {
    bool is_error = false;
    std::string text;  // a complete JSON text, or the error description
  };

  explicit JsonStreamSplitter(size_t max_message_bytes = kDefaultMaxMessageBytes,
                              unsigned max_depth = kDefaultMaxDepth);

  // Consumes `data`, appending each completed message or error to `out` in order.
  void feed(std::string_view data, std::vector<Item>& out);
  // Bytes held for an incomplete message (bounded by max_message_bytes).
  size_t buffered() const { return buf_.size(); }

 private:
  enum class State { kIdle, kContainer, kString, kScalar };

  void reset();
  void emit(std::vector<Item>& out);
  // Reports `desc` and skips the rest of the current message.
  void overflow(std::string desc, std::vector<Item>& out);
  void append(char c, std::vector<Item>& out);

  size_t max_message_bytes_;
  unsigned max_depth_;
  State state_ = State::kIdle;
  unsigned depth_ = 0;       // open brackets in the current message
  bool escape_ = false;      // the previous string byte was a backslash
  bool discarding_ = false;  // an oversized message is being skipped
  std::string buf_;
};

}  // namespace server::control
