// Subcommands of fleecectl. Each family (meta, node, export, image, bitmap; later
// fleece, backup) lives in its own file and registers its subcommands through one
// register_*_subcommands() function; adding a family is a new file plus one line in
// make_subcommand_table(). CliContext is what a subcommand runs with: the output
// streams, --json, and the QMP connection (opened on first use).
// Threading: single-threaded.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "server/fleecectl/arg_parser.h"
#include "server/fleecectl/qmp_connection.h"

namespace fleecectl {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitCommandFailed = 1;  // the daemon answered with a QMP error
inline constexpr int kExitNoDaemon = 2;       // cannot connect / connection lost
inline constexpr int kExitUsage = 64;         // bad command line (EX_USAGE)

inline constexpr char kDefaultSocket[] = "/run/fleeced/control.sock";

class CliContext {
 public:
  CliContext(std::string socket_path, bool json_output, int timeout_s, std::ostream& out,
             std::ostream& err);

  bool json_output() const { return json_output_; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // Runs one QMP command. On success returns the "return" value; on a QMP error prints
  // its desc to stderr and records kExitCommandFailed; on a connection problem prints
  // it and records kExitNoDaemon. Both give nullopt.
  std::optional<nlohmann::json> call(const std::string& command,
                                     const nlohmann::json& arguments = nlohmann::json::object());
  // The exit code of the failure call() recorded (kExitOk if none).
  int failure() const { return failure_; }

  // A usage error: prints "fleecectl: MESSAGE" and the synopsis; returns kExitUsage.
  int usage_error(const std::string& message, const std::string& synopsis);
  // For mutations: prints `result` with --json (scripts get "{}"), nothing otherwise.
  int done(const nlohmann::json& result);

 private:
  std::string socket_path_;
  bool json_output_;
  int timeout_s_;
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<QmpConnection> qmp_;
  int failure_ = kExitOk;
};

struct Subcommand {
  std::vector<std::string> words;  // {"node", "add", "file"}
  std::string synopsis;            // "node add file NAME FILENAME [--read-only] [--direct]"
  std::string summary;             // one line for --help
  int (*run)(CliContext& ctx, ArgParser& args, const Subcommand& self);
};

class SubcommandTable {
 public:
  void add(Subcommand sub);
  // The subcommand whose words are the longest prefix of `args`; `consumed` gets the
  // number of words it used. nullptr if none matches.
  const Subcommand* match(const std::vector<std::string>& args, size_t* consumed) const;
  // Subcommands starting with `prefix` (all for an empty prefix), in registration order.
  std::vector<const Subcommand*> under(const std::vector<std::string>& prefix) const;

 private:
  std::vector<Subcommand> subs_;
};

void register_meta_subcommands(SubcommandTable& table);    // meta_subcommands.cpp
void register_node_subcommands(SubcommandTable& table);    // node_subcommands.cpp
void register_export_subcommands(SubcommandTable& table);  // export_subcommands.cpp
void register_image_subcommands(SubcommandTable& table);   // image_subcommands.cpp
void register_bitmap_subcommands(SubcommandTable& table);  // bitmap_subcommands.cpp
void register_fleece_subcommands(SubcommandTable& table);  // fleece_subcommands.cpp
void register_backup_subcommands(SubcommandTable& table);  // backup_subcommands.cpp
void register_stats_subcommands(SubcommandTable& table);   // stats_subcommands.cpp

SubcommandTable make_subcommand_table();

// The fleecectl usage text: global options and every subcommand (or those under
// `prefix`).
void print_usage(std::ostream& out, const SubcommandTable& table,
                 const std::vector<std::string>& prefix = {});

}  // namespace fleecectl
