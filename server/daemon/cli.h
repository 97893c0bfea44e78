// Command line of fleeced (DESIGN.md "fleeced command line"): run from a config file,
// check a config file, or serve one image ad hoc like qemu-nbd.
// Threading: pure parsing, main thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace server::daemon {

struct CommandLine {
  enum class Mode { kRun, kCheckConfig, kServe, kVersion, kHelp };
  Mode mode = Mode::kHelp;
  std::string config_path;
  std::optional<std::string> log_level;
  // serve mode
  std::string image;
  std::string export_name;             // default "" (the default export)
  std::vector<std::string> listen;     // unix:PATH | tcp:HOST:PORT
  std::string control;                 // optional control socket path
  bool read_only = false;
  std::string format;  // "raw", "qcow2", or "" (not given: probed from the image, like qemu-nbd)
  std::string description;
  bool direct = false;
  std::vector<std::string> bitmaps;  // --bitmap NAME: ensured persistent and offered
  std::string bitmap_file;           // --bitmap-file PATH: a raw image's bitmap container
  std::string tls_creds_dir;         // --tls-creds-dir DIR: x509 files (QEMU's layout)
  std::string tls_psk_file;          // --tls-psk-file FILE: identity:hexkey lines
  bool tls_verify_peer = false;      // --tls-verify-peer
  std::string tls;                   // --tls required|optional ("" = optional)
  std::string zero_copy;             // --zero-copy auto|always|never ("" = auto)
};

// Parses argv. On a usage error returns nullopt and sets `error`.
std::optional<CommandLine> parse_command_line(int argc, char** argv, std::string* error);

const char* usage_text();

}  // namespace server::daemon
