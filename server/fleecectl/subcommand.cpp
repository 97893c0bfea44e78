#include "server/fleecectl/subcommand.h"

#include "server/fleecectl/output.h"

namespace fleecectl {

using nlohmann::json;

CliContext::CliContext(std::string socket_path, bool json_output, int timeout_s, std::ostream& out,
                       std::ostream& err)
    : socket_path_(std::move(socket_path)),
      json_output_(json_output),
      timeout_s_(timeout_s),
      out_(out),
      err_(err) {}

std::optional<json> CliContext::call(const std::string& command, const json& arguments) {
  std::string error;
  if (!qmp_) {
    qmp_ = QmpConnection::connect(socket_path_, timeout_s_, &error);
    if (!qmp_) {
      err_ << "fleecectl: " << error << '\n';
      failure_ = kExitNoDaemon;
      return std::nullopt;
    }
  }
  auto reply = qmp_->execute(command, arguments, &error);
  if (!reply) {
    err_ << "fleecectl: " << error << '\n';
    failure_ = kExitNoDaemon;
    qmp_.reset();
    return std::nullopt;
  }
  if (!reply->ok) {
    err_ << "fleecectl: " << reply->desc << '\n';
    failure_ = kExitCommandFailed;
    return std::nullopt;
  }
  return std::move(reply->value);
}

int CliContext::usage_error(const std::string& message, const std::string& synopsis) {
  err_ << "fleecectl: " << message << '\n';
  if (!synopsis.empty()) err_ << "usage: fleecectl " << synopsis << '\n';
  return kExitUsage;
}

int CliContext::done(const json& result) {
  if (json_output_) print_json(out_, result, false);
  return kExitOk;
}

void SubcommandTable::add(Subcommand sub) { subs_.push_back(std::move(sub)); }

const Subcommand* SubcommandTable::match(const std::vector<std::string>& args,
                                         size_t* consumed) const {
  const Subcommand* best = nullptr;
  for (const auto& s : subs_) {
    if (s.words.size() > args.size()) continue;
    bool prefix = true;
    for (size_t i = 0; i < s.words.size(); ++i) prefix = prefix && s.words[i] == args[i];
    if (prefix && (best == nullptr || s.words.size() > best->words.size())) best = &s;
  }
  if (best != nullptr) *consumed = best->words.size();
  return best;
}

std::vector<const Subcommand*> SubcommandTable::under(
    const std::vector<std::string>& prefix) const {
  std::vector<const Subcommand*> out;
  for (const auto& s : subs_) {
    bool match = prefix.size() <= s.words.size();
    for (size_t i = 0; match && i < prefix.size(); ++i) match = s.words[i] == prefix[i];
    if (match) out.push_back(&s);
  }
  return out;
}

SubcommandTable make_subcommand_table() {
  SubcommandTable table;
  register_meta_subcommands(table);
  register_node_subcommands(table);
  register_export_subcommands(table);
  register_image_subcommands(table);
  register_bitmap_subcommands(table);
  register_fleece_subcommands(table);
  register_backup_subcommands(table);
  register_stats_subcommands(table);
  return table;
}

void print_usage(std::ostream& out, const SubcommandTable& table,
                 const std::vector<std::string>& prefix) {
  out << "usage: fleecectl [--socket PATH] [--json] [--timeout SECONDS] COMMAND ...\n"
         "\n"
         "Talks to fleeced over its QMP control socket.\n"
         "\n"
         "options:\n"
         "  --socket PATH      control socket (default $FLEECE_CONTROL_SOCKET, else "
      << kDefaultSocket
      << ")\n"
         "  --json             print the raw QMP return value as JSON (for scripts)\n"
         "  --timeout SECONDS  give up waiting for fleeced after this long (default 60, 0 = "
         "never)\n"
         "  --help             this text (also: fleecectl COMMAND --help)\n"
         "\n"
         "commands:\n";
  for (const Subcommand* s : table.under(prefix)) {
    out << "  " << s->synopsis << "\n      " << s->summary << '\n';
  }
  out << "\nexit status: 0 ok, 1 the daemon refused the command (its reason on stderr),\n"
         "2 cannot reach the daemon, 64 bad command line.\n";
}

}  // namespace fleecectl
