// fleeced: the fleece NBD server. Parses the command line, loads the configuration (or
// builds one for `serve`), starts the daemon and runs it until SIGTERM/SIGINT.
#include <cstdio>
#include <exception>

#include <spdlog/spdlog.h>

#include "config/tls_files.h"
#include "config/yaml_loader.h"
#include "server/daemon/cli.h"
#include "server/daemon/daemon.h"
#include "server/daemon/logging.h"
#include "server/daemon/serve_config.h"
#include "server/daemon/socket_activation.h"

namespace {

int check_config(const std::string& path) {
  auto loaded = config::load_config_file(path);
  if (!loaded.is_ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().to_string().c_str());
    return 1;
  }
  // The TLS credential files are read and parsed, as start-up would.
  if (const auto& tls = loaded.value().tls) {
    auto problems = config::check_tls_files(*tls);
    for (const auto& e : problems) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    if (!problems.empty()) return 1;
  }
  std::printf("%s: OK\n", path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using server::daemon::CommandLine;
  std::string error;
  auto cl = server::daemon::parse_command_line(argc, argv, &error);
  if (!cl) {
    std::fprintf(stderr, "fleeced: %s\n\n%s", error.c_str(), server::daemon::usage_text());
    return 2;
  }
  switch (cl->mode) {
    case CommandLine::Mode::kHelp: std::printf("%s", server::daemon::usage_text()); return 0;
    case CommandLine::Mode::kVersion: std::printf("fleeced %s\n", FLEECE_VERSION); return 0;
    case CommandLine::Mode::kCheckConfig: return check_config(cl->config_path);
    default: break;
  }

  auto cli_level = cl->log_level ? server::daemon::parse_log_level(*cl->log_level) : std::nullopt;
  if (cl->log_level && !cli_level) {
    std::fprintf(stderr, "fleeced: unknown log level '%s'\n", cl->log_level->c_str());
    return 2;
  }
  server::daemon::setup_logging(cli_level.value_or(spdlog::level::info));

  try {
    auto activated = server::daemon::take_activated_sockets();
    config::Config cfg;
    server::daemon::DaemonOptions options;
    options.log_level_from_cli = cli_level.has_value();
    if (cl->mode == CommandLine::Mode::kServe) {
      auto made = server::daemon::make_serve_config(*cl, !activated.empty());
      if (!made.is_ok()) {
        spdlog::error("{}", made.status().to_string());
        return 2;
      }
      cfg = std::move(made.value());
    } else {
      auto loaded = config::load_config_file(cl->config_path);
      if (!loaded.is_ok()) {
        spdlog::error("configuration errors:\n{}", loaded.status().to_string());
        return 1;
      }
      cfg = std::move(loaded.value());
      options.config_path = cl->config_path;
      if (!cli_level) {
        if (auto level = server::daemon::parse_log_level(cfg.log.level)) {
          server::daemon::set_log_level(*level);
        }
      }
    }
    server::daemon::Daemon daemon(std::move(cfg), options);
    if (auto s = daemon.start(std::move(activated)); !s.is_ok()) {
      spdlog::error("start-up failed: {}", s.to_string());
      return 1;
    }
    return daemon.run();
  } catch (const std::exception& e) {
    spdlog::critical("fatal: {}", e.what());
    return 1;
  }
}
