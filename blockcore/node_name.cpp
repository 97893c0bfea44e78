#include "blockcore/node_name.h"

namespace blockcore {
namespace {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

Status check_node_name(std::string_view name) {
  if (name.empty()) return Status::invalid("a node name must not be empty");
  const std::string quoted = "node name '" + std::string(name) + "'";
  if (name.size() > kMaxNodeNameLength) {
    return Status::invalid(quoted + " is too long (at most " + std::to_string(kMaxNodeNameLength) +
                           " bytes)");
  }
  if (!is_alpha(name.front())) {
    return Status::invalid(quoted + " must start with a letter");
  }
  for (char c : name) {
    if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_')) {
      return Status::invalid(quoted + " may contain only letters, digits, '-', '.' and '_'");
    }
  }
  return Status::ok();
}

std::string generated_node_name(unsigned id) {
  return std::string(kGeneratedNamePrefix) + std::to_string(id);
}

bool is_generated_node_name(std::string_view name) { return !name.empty() && name[0] == '#'; }

}  // namespace blockcore
