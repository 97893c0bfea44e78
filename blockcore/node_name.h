// Node names: the rule every user-given node name follows (QEMU's: a letter, then
// letters, digits, '-', '.', '_'; at most 31 bytes) and the form of the names the graph
// generates for unnamed inline children ("#block1", "#block2", ...).
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "blockcore/base/status.h"

namespace blockcore {

inline constexpr size_t kMaxNodeNameLength = 31;
inline constexpr char kGeneratedNamePrefix[] = "#block";

// OK, or EINVAL with a message saying what is wrong with `name`.
Status check_node_name(std::string_view name);
// The generated name number `id` ("#block<id>").
std::string generated_node_name(unsigned id);
// True for names the graph generated (they start with '#', which users cannot write).
bool is_generated_node_name(std::string_view name);

}  // namespace blockcore
