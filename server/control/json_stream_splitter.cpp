#include "server/control/json_stream_splitter.h"

#include <cstdio>

namespace server::control {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

bool ends_scalar(char c) {
  return is_space(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == '"' || c == ',' ||
         c == ':';
}

}  // namespace

JsonStreamSplitter::JsonStreamSplitter(size_t max_message_bytes, unsigned max_depth)
    : max_message_bytes_(max_message_bytes), max_depth_(max_depth) {}

void JsonStreamSplitter::reset() {
  state_ = State::kIdle;
  depth_ = 0;
  escape_ = false;
  discarding_ = false;
  buf_.clear();
}

void JsonStreamSplitter::emit(std::vector<Item>& out) {
  if (!discarding_) out.push_back(Item{false, std::move(buf_)});
  reset();
}

void JsonStreamSplitter::overflow(std::string desc, std::vector<Item>& out) {
  if (discarding_) return;
  out.push_back(Item{true, std::move(desc)});
  discarding_ = true;
  buf_.clear();
  buf_.shrink_to_fit();
}

void JsonStreamSplitter::append(char c, std::vector<Item>& out) {
  if (discarding_) return;
  if (buf_.size() >= max_message_bytes_) {
    overflow(
        "JSON parse error, message longer than " + std::to_string(max_message_bytes_) + " bytes",
        out);
    return;
  }
  buf_.push_back(c);
}

void JsonStreamSplitter::feed(std::string_view data, std::vector<Item>& out) {
  size_t i = 0;
  while (i < data.size()) {
    const char c = data[i];
    const auto u = static_cast<unsigned char>(c);
    // Lexical errors: control characters (any inside a string, all but whitespace
    // outside) and 0xFF, which never occurs in UTF-8. They drop the partial message.
    bool control = u == 0xFF || (u < 0x20 && (state_ == State::kString || !is_space(c)));
    if (control) {
      if (!discarding_) {
        char desc[64];
        std::snprintf(desc, sizeof(desc), "JSON parse error, stray '\\x%02x'", u);
        out.push_back(Item{true, desc});
      }
      reset();
      ++i;
      continue;
    }
    switch (state_) {
      case State::kIdle:
        if (is_space(c)) break;
        if (c == '{' || c == '[') {
          state_ = State::kContainer;
          depth_ = 1;
        } else if (c == '"') {
          state_ = State::kString;
          depth_ = 0;
        } else {
          state_ = State::kScalar;
        }
        append(c, out);
        break;
      case State::kScalar:
        if (ends_scalar(c)) {
          emit(out);
          continue;  // the terminator starts over in kIdle
        }
        append(c, out);
        break;
      case State::kContainer:
        append(c, out);
        if (c == '"') {
          state_ = State::kString;
        } else if (c == '{' || c == '[') {
          if (++depth_ > max_depth_) {
            overflow(
                "JSON parse error, nesting deeper than " + std::to_string(max_depth_) + " levels",
                out);
          }
        } else if (c == '}' || c == ']') {
          if (--depth_ == 0) emit(out);
        }
        break;
      case State::kString:
        append(c, out);
        if (escape_) {
          escape_ = false;
        } else if (c == '\\') {
          escape_ = true;
        } else if (c == '"') {
          if (depth_ == 0) {
            emit(out);
          } else {
            state_ = State::kContainer;
          }
        }
        break;
    }
    ++i;
  }
}

}  // namespace server::control
