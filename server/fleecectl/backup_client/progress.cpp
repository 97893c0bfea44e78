#include "server/fleecectl/backup_client/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace fleecectl::backup {

using nlohmann::json;

namespace {

// "12.3 MiB": the bar's sizes, one unit for all so the line does not jump.
std::string mib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

}  // namespace

Progress::Progress(Mode mode, std::ostream& out, std::ostream& err)
    : mode_(mode), out_(out), err_(err) {}

Progress::Mode Progress::mode_for(bool json_output) {
  if (json_output) return Mode::kJson;
  return ::isatty(STDERR_FILENO) == 1 ? Mode::kBar : Mode::kSilent;
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

uint64_t Progress::rate() const {
  const double s = elapsed_seconds();
  return s > 0 ? static_cast<uint64_t>(static_cast<double>(done_) / s) : 0;
}

void Progress::start(uint64_t total_bytes, const json& info) {
  total_ = total_bytes;
  done_ = 0;
  start_ = last_print_ = std::chrono::steady_clock::now();
  if (mode_ == Mode::kJson) {
    json line = info;
    line["event"] = "start";
    line["total-bytes"] = total_;
    out_ << line.dump() << std::endl;
  } else if (mode_ == Mode::kBar) {
    print_bar();
  }
}

void Progress::update(uint64_t done_bytes) {
  done_ = done_bytes;
  const auto now = std::chrono::steady_clock::now();
  const auto period = mode_ == Mode::kJson ? std::chrono::milliseconds(1000)
                                           : std::chrono::milliseconds(200);
  if (mode_ == Mode::kSilent || now - last_print_ < period) return;
  last_print_ = now;
  if (mode_ == Mode::kJson) {
    json line = {{"event", "progress"},
                 {"done-bytes", done_},
                 {"total-bytes", total_},
                 {"bytes-per-second", rate()},
                 {"elapsed-seconds", elapsed_seconds()}};
    out_ << line.dump() << std::endl;
  } else {
    print_bar();
  }
}

void Progress::print_bar() {
  constexpr int kWidth = 30;
  const double fraction =
      total_ == 0 ? 1.0 : std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  char pct[16];
  std::snprintf(pct, sizeof(pct), "%5.1f%%", fraction * 100.0);
  err_ << "\r[" << bar << "] " << pct << "  " << mib(done_) << " / "
       << mib(total_) << "  " << mib(rate()) << "/s\033[K" << std::flush;
  bar_shown_ = true;
}

void Progress::clear_bar() {
  if (bar_shown_) err_ << "\r\033[K" << std::flush;
  bar_shown_ = false;
}

void Progress::finish(const json& summary) {
  done_ = std::max(done_, total_);
  if (mode_ == Mode::kJson) {
    json line = summary;
    line["event"] = "done";
    line["elapsed-seconds"] = elapsed_seconds();
    out_ << line.dump() << std::endl;
  } else if (mode_ == Mode::kBar) {
    print_bar();
    err_ << '\n' << std::flush;
    bar_shown_ = false;
  }
}

void Progress::fail(const std::string& error) {
  if (mode_ == Mode::kJson) {
    out_ << json{{"event", "failed"}, {"error", error}}.dump() << std::endl;
  } else {
    clear_bar();
  }
}

}  // namespace fleecectl::backup
