#include "server/daemon/cli.h"

#include <string_view>

#include "config/config.h"

namespace server::daemon {

const char* usage_text() {
  return R"(Usage:
  fleeced --config FILE [--log-level LEVEL]      run until SIGTERM/SIGINT (SIGHUP reloads)
  fleeced --check-config --config FILE           validate FILE, print problems, exit 0/1
  fleeced serve IMAGE [options]                  serve one image without a config file
  fleeced --version | --help

serve options:
  --name NAME            export name (default: the empty default export name)
  --listen ADDR          unix:PATH or tcp:HOST:PORT (tcp:[::1]:10809 for IPv6); repeatable;
                         default tcp:127.0.0.1:10809, or the sockets passed by systemd
  --read-only, -r        export read-only
  --format raw|qcow2    image format; without it the format is probed from the image
                         (qcow2 magic or raw) and a warning is logged
  --description TEXT     export description sent to clients
  --direct               open the image with O_DIRECT
  --bitmap NAME          ensure a persistent dirty bitmap NAME on the image (created when
                         missing) and offer it as qemu:dirty-bitmap:NAME; repeatable
  --bitmap-file PATH     raw images: the qcow2 container that keeps their persistent
                         bitmaps (created when missing); qcow2 images keep their own
  --control PATH         also open a QMP control socket at PATH
  --tls-creds-dir DIR    NBD over TLS with the x509 files of DIR (server-cert.pem,
                         server-key.pem, ca-cert.pem: QEMU's layout)
  --tls-psk-file FILE    NBD over TLS with the identity:hexkey keys of FILE
  --tls-verify-peer      demand a client certificate signed by DIR/ca-cert.pem
  --tls required|optional  refuse clients that skip STARTTLS (default with credentials:
                         optional)
  --zero-copy MODE       auto|always|never: move large reads and writes between the
                         socket and the page cache through a pipe (server.zero-copy)

common options:
  --log-level LEVEL      trace|debug|info|warn|error (overrides the config file)
)";
}

std::optional<CommandLine> parse_command_line(int argc, char** argv, std::string* error) {
  CommandLine cl;
  cl.mode = CommandLine::Mode::kRun;
  bool have_mode_flag = false;
  int i = 1;
  if (argc > 1 && std::string_view(argv[1]) == "serve") {
    cl.mode = CommandLine::Mode::kServe;
    i = 2;
  }
  auto need_value = [&](std::string_view opt) -> const char* {
    if (i + 1 >= argc) {
      *error = "option " + std::string(opt) + " needs a value";
      return nullptr;
    }
    return argv[++i];
  };
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* v = nullptr;
    if (a == "--help" || a == "-h") {
      cl.mode = CommandLine::Mode::kHelp;
      return cl;
    } else if (a == "--version" || a == "-V") {
      cl.mode = CommandLine::Mode::kVersion;
      return cl;
    } else if (a == "--log-level") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.log_level = v;
    } else if (cl.mode != CommandLine::Mode::kServe && (a == "--config" || a == "-c")) {
      if (!(v = need_value(a))) return std::nullopt;
      cl.config_path = v;
    } else if (cl.mode != CommandLine::Mode::kServe && a == "--check-config") {
      cl.mode = CommandLine::Mode::kCheckConfig;
      have_mode_flag = true;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--name") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.export_name = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--listen") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.listen.emplace_back(v);
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--control") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.control = v;
    } else if (cl.mode == CommandLine::Mode::kServe && (a == "--read-only" || a == "-r")) {
      cl.read_only = true;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--format") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.format = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--description") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.description = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--direct") {
      cl.direct = true;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--bitmap") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.bitmaps.emplace_back(v);
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--bitmap-file") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.bitmap_file = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--tls-creds-dir") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.tls_creds_dir = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--tls-psk-file") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.tls_psk_file = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--tls-verify-peer") {
      cl.tls_verify_peer = true;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--tls") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.tls = v;
    } else if (cl.mode == CommandLine::Mode::kServe && a == "--zero-copy") {
      if (!(v = need_value(a))) return std::nullopt;
      cl.zero_copy = v;
    } else if (cl.mode == CommandLine::Mode::kServe && !a.empty() && a[0] != '-' &&
               cl.image.empty()) {
      cl.image = a;
    } else {
      *error = "unknown or misplaced argument '" + std::string(a) + "'";
      return std::nullopt;
    }
  }
  if (cl.mode == CommandLine::Mode::kServe) {
    if (cl.image.empty()) {
      *error = "serve needs an IMAGE";
      return std::nullopt;
    }
    if (!cl.tls.empty() && cl.tls != "required" && cl.tls != "optional") {
      *error = "unsupported --tls '" + cl.tls + "' (supported: required, optional)";
      return std::nullopt;
    }
    if ((!cl.tls.empty() || cl.tls_verify_peer) && cl.tls_creds_dir.empty() &&
        cl.tls_psk_file.empty()) {
      *error = "--tls and --tls-verify-peer need --tls-creds-dir DIR or --tls-psk-file FILE";
      return std::nullopt;
    }
    if (!cl.zero_copy.empty() && !config::parse_zero_copy(cl.zero_copy)) {
      *error = "unsupported --zero-copy '" + cl.zero_copy +
               "' (supported: auto, always, never)";
      return std::nullopt;
    }
    if (!cl.format.empty() && cl.format != "raw" && cl.format != "qcow2") {
      *error = "unsupported --format '" + cl.format + "' (supported: raw, qcow2)";
      return std::nullopt;
    }
    return cl;
  }
  if (cl.config_path.empty()) {
    *error = have_mode_flag ? "--check-config needs --config FILE" : "--config FILE is required";
    return std::nullopt;
  }
  return cl;
}

}  // namespace server::daemon
