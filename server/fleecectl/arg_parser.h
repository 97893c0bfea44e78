// ArgParser: the words after a fleecectl subcommand. Options are taken out first
// (`--name`, `--name VALUE`, `--name=VALUE`; repeatable ones collected in order), then
// positionals in order; finish() rejects anything left over. Everything after a bare
// `--` is positional. The first problem is kept as a one-line usage error.
// Threading: a value used by one subcommand run.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace fleecectl {

class ArgParser {
 public:
  explicit ArgParser(std::vector<std::string> args);

  // Removes `--name` and says whether it was there.
  bool flag(const std::string& name);
  // Removes `--name VALUE` / `--name=VALUE` (the last one wins).
  std::optional<std::string> option(const std::string& name);
  // Every `--name VALUE`, in order.
  std::vector<std::string> option_list(const std::string& name);
  // The next positional; records "missing WHAT" when there is none.
  std::string positional(const std::string& what);
  std::optional<std::string> optional_positional();
  // Unknown options or extra positionals -> error. True when everything was fine.
  bool finish();

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  void fail(const std::string& message);

 private:
  // Index of the first `--` terminator (or size()).
  size_t options_end() const;

  std::vector<std::string> args_;
  std::string error_;
};

// Parses a byte count: digits with an optional binary suffix K, M, G, T (also KiB,
// MB...; case-insensitive). nullopt on anything else or overflow.
std::optional<uint64_t> parse_size(const std::string& text);

}  // namespace fleecectl
