// fleecectl: the command-line client of fleeced's QMP control socket.
//   fleecectl [--socket PATH] [--json] [--timeout SECONDS] COMMAND ...
// Global options may appear anywhere before a bare `--`. See print_usage().
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "server/fleecectl/subcommand.h"

namespace {

struct GlobalOptions {
  std::string socket;
  bool json = false;
  bool help = false;
  int timeout_s = 60;
  std::string error;
};

// Takes the global options out of `args` (up to a `--`).
GlobalOptions take_global_options(std::vector<std::string>& args) {
  GlobalOptions g;
  const char* env = std::getenv("FLEECE_CONTROL_SOCKET");
  g.socket = env != nullptr && *env != '\0' ? env : fleecectl::kDefaultSocket;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      rest.insert(rest.end(), args.begin() + static_cast<long>(i), args.end());
      break;
    }
    auto value = [&](const std::string& name, std::string* out) {
      if (a == name) {
        if (i + 1 >= args.size()) {
          g.error = "option " + name + " needs a value";
          return true;
        }
        *out = args[++i];
        return true;
      }
      if (a.rfind(name + "=", 0) == 0) {
        *out = a.substr(name.size() + 1);
        return true;
      }
      return false;
    };
    std::string timeout;
    if (a == "--json") {
      g.json = true;
    } else if (a == "--help" || a == "-h") {
      g.help = true;
    } else if (value("--socket", &g.socket)) {
    } else if (value("--timeout", &timeout)) {
      char* end = nullptr;
      long t = std::strtol(timeout.c_str(), &end, 10);
      if (timeout.empty() || *end != '\0' || t < 0 || t > 86400) {
        g.error = "bad --timeout " + timeout;
      } else {
        g.timeout_s = static_cast<int>(t);
      }
    } else {
      rest.push_back(a);
    }
  }
  args = std::move(rest);
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace fleecectl;
  std::vector<std::string> args(argv + 1, argv + argc);
  GlobalOptions g = take_global_options(args);
  SubcommandTable table = make_subcommand_table();
  if (!g.error.empty()) {
    std::cerr << "fleecectl: " << g.error << "\n";
    return kExitUsage;
  }
  if (!args.empty() && args[0] == "help") {
    args.erase(args.begin());
    g.help = true;
  }
  size_t consumed = 0;
  const Subcommand* sub = table.match(args, &consumed);
  if (g.help) {
    std::vector<std::string> prefix = args;
    if (sub != nullptr) prefix.assign(sub->words.begin(), sub->words.end());
    if (table.under(prefix).empty()) prefix.clear();
    print_usage(std::cout, table, prefix);
    return kExitOk;
  }
  if (args.empty()) {
    print_usage(std::cerr, table);
    return kExitUsage;
  }
  if (sub == nullptr) {
    std::string words;
    for (const auto& a : args) words += (words.empty() ? "" : " ") + a;
    if (table.under(args).empty()) {
      std::cerr << "fleecectl: unknown command '" << words << "'\n\n";
    } else {
      std::cerr << "fleecectl: '" << words << "' needs more words\n\n";
    }
    // Show what exists under the words that did match (e.g. "node ...").
    std::vector<std::string> prefix;
    for (const auto& a : args) {
      prefix.push_back(a);
      if (table.under(prefix).empty()) {
        prefix.pop_back();
        break;
      }
    }
    print_usage(std::cerr, table, prefix);
    return kExitUsage;
  }
  CliContext ctx(g.socket, g.json, g.timeout_s, std::cout, std::cerr);
  ArgParser rest(std::vector<std::string>(args.begin() + static_cast<long>(consumed), args.end()));
  return sub->run(ctx, rest, *sub);
}
