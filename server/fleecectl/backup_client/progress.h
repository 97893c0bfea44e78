// Progress of a fleecectl backup or restore: a one-line bar on stderr when it is a
// terminal (bytes done / total, percent, rate), or with --json one JSON object per line
// on stdout — "start", "progress" at most once a second, then "done" or "failed" — for
// scripts. Otherwise silent.
// Threading: one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

namespace fleecectl::backup {

class Progress {
 public:
  enum class Mode { kSilent, kBar, kJson };

  Progress(Mode mode, std::ostream& out, std::ostream& err);

  // The mode for a run: kJson with --json, kBar when stderr is a terminal, else kSilent.
  static Mode mode_for(bool json_output);

  // Starts the clock; `info` is added to the "start" line (JSON mode).
  void start(uint64_t total_bytes, const nlohmann::json& info);
  // Work done so far (bytes of `total`); prints when it is time.
  void update(uint64_t done_bytes);
  // The final line: "done" with `summary` (JSON) or clears the bar.
  void finish(const nlohmann::json& summary);
  // The final line after a failure.
  void fail(const std::string& error);

  double elapsed_seconds() const;
  // Bytes per second since start().
  uint64_t rate() const;

 private:
  void print_bar();
  void clear_bar();

  Mode mode_;
  std::ostream& out_;
  std::ostream& err_;
  uint64_t total_ = 0;
  uint64_t done_ = 0;
  std::chrono::steady_clock::time_point start_{};
  std::chrono::steady_clock::time_point last_print_{};
  bool bar_shown_ = false;
};

}  // namespace fleecectl::backup
