// ArgReader: typed access to a QMP command's "arguments" object that fails the way
// QEMU's QAPI input visitor does — "Parameter 'node-name' is missing", "Invalid
// parameter type for 'writable', expected: boolean", "Parameter 'x' is unexpected" —
// with nested members named by their full path ("cache.direct"). The first error wins;
// later reads return defaults, so a handler reads everything and checks finish() once,
// before it has any side effect.
// Threading: a value used by one handler invocation; `args` must outlive the reader.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "blockcore/base/status.h"

namespace server::control {

class ArgReader {
 public:
  // `args` is the arguments object (a null value is read as an empty object).
  explicit ArgReader(const nlohmann::json& args);

  std::string required_string(std::string_view key);
  std::optional<std::string> optional_string(std::string_view key);
  std::optional<bool> optional_bool(std::string_view key);
  bool optional_bool(std::string_view key, bool default_value);
  // JSON integers 0..2^64-1; negative -> "Parameter 'x' expects uint64".
  std::optional<uint64_t> optional_uint64(std::string_view key);
  // A string that must be one of `values` ("Parameter 'x' does not accept value 'v'").
  std::string required_enum(std::string_view key, std::initializer_list<std::string_view> values);
  std::optional<std::string> optional_enum(std::string_view key,
                                           std::initializer_list<std::string_view> values);
  std::optional<std::vector<std::string>> optional_string_list(std::string_view key);
  // A nested object: a reader for its members, sharing this reader's error and its check
  // for unexpected members (finish() on either covers both).
  std::optional<ArgReader> optional_object(std::string_view key);
  // The raw member for alternates (string-or-object); nullptr when absent. The caller
  // reports a wrong type with fail_type(key, "<type name>").
  const nlohmann::json* optional_value(std::string_view key);

  // "prefix.key" as used in messages.
  std::string full_name(std::string_view key) const;
  // Records an error unless one is already recorded.
  void fail(blockcore::Status s);
  void fail_type(std::string_view key, std::string_view expected);

  bool ok() const { return state_->error.is_ok(); }
  // Rejects members nobody read, then returns the first error (OK if none).
  blockcore::Status finish();

 private:
  struct State {
    blockcore::Status error;
    std::set<std::string, std::less<>> used;                             // full names read
    std::vector<std::pair<const nlohmann::json*, std::string>> objects;  // object, prefix
  };
  ArgReader(const nlohmann::json* obj, std::string prefix, std::shared_ptr<State> state);

  // The member if present (and marks it read); nullptr when absent or after an error.
  const nlohmann::json* member(std::string_view key);
  std::optional<std::string> string_member(std::string_view key);

  const nlohmann::json* obj_;  // nullptr = empty
  std::string prefix_;         // "" or "cache."
  std::shared_ptr<State> state_;
};

}  // namespace server::control
