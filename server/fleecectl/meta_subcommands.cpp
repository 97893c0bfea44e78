// Subcommands about the daemon and the protocol: version, commands, qmp (passthrough).
#include "server/fleecectl/output.h"
#include "server/fleecectl/subcommand.h"

namespace fleecectl {
namespace {

using nlohmann::json;

int run_version(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto v = ctx.call("query-version");
  if (!v) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *v, false);
    return kExitOk;
  }
  std::string package = cell(*v, "package");
  if (package.empty() && v->contains("qemu")) {
    const json& q = (*v)["qemu"];
    package = "QEMU " + cell(q, "major") + "." + cell(q, "minor") + "." + cell(q, "micro");
  }
  ctx.out() << "daemon: " << package << '\n' << "client: fleecectl " << FLEECE_VERSION << '\n';
  return kExitOk;
}

int run_commands(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  auto list = ctx.call("query-commands");
  if (!list) return ctx.failure();
  if (ctx.json_output()) {
    print_json(ctx.out(), *list, false);
    return kExitOk;
  }
  for (const auto& c : *list) ctx.out() << cell(c, "name") << '\n';
  return kExitOk;
}

// Any QMP command: `qmp EXECUTE [JSON-ARGS]`. People get the return value indented;
// --json gives it on one line.
int run_qmp(CliContext& ctx, ArgParser& args, const Subcommand& self) {
  std::string command = args.positional("EXECUTE (a QMP command name)");
  std::optional<std::string> text = args.optional_positional();
  if (!args.finish()) return ctx.usage_error(args.error(), self.synopsis);
  json arguments = json::object();
  if (text) {
    try {
      arguments = json::parse(*text);
    } catch (const json::parse_error& e) {
      return ctx.usage_error("JSON-ARGS is not valid JSON: " + std::string(e.what()),
                             self.synopsis);
    }
    if (!arguments.is_object()) {
      return ctx.usage_error("JSON-ARGS must be a JSON object", self.synopsis);
    }
  }
  auto r = ctx.call(command, arguments);
  if (!r) return ctx.failure();
  print_json(ctx.out(), *r, !ctx.json_output());
  return kExitOk;
}

}  // namespace

void register_meta_subcommands(SubcommandTable& table) {
  table.add({{"version"}, "version", "the daemon's and fleecectl's versions", run_version});
  table.add({{"commands"}, "commands", "the QMP commands the daemon offers", run_commands});
  table.add({{"qmp"},
             "qmp EXECUTE [JSON-ARGS]",
             "run any QMP command, e.g. qmp query-block-exports or "
             "qmp blockdev-del '{\"node-name\": \"disk1\"}'",
             run_qmp});
}

}  // namespace fleecectl
