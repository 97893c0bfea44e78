// Logging set-up for fleeced: spdlog to stderr with a level from the config or the
// command line. Under systemd (JOURNAL_STREAM set) each line starts with a
// journald/syslog priority prefix such as "<4>" instead of a timestamp, so the journal
// records the right priority.
// Threading: call setup_logging()/set_log_level() from the main thread; logging itself
// is thread-safe (spdlog's mt sink).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/common.h>

namespace server::daemon {

// "trace|debug|info|warn|error" → level; nullopt for anything else.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view text);

// Installs the default logger. journald: write priority prefixes (auto-detected from
// JOURNAL_STREAM when not given).
void setup_logging(spdlog::level::level_enum level, std::optional<bool> journald = std::nullopt);

void set_log_level(spdlog::level::level_enum level);

// True when stderr is the journal stream systemd handed us (JOURNAL_STREAM=dev:inode).
bool stderr_is_journal();

}  // namespace server::daemon
