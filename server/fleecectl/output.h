// Output formatting for fleecectl: aligned tables for people, JSON for scripts, and
// human-readable sizes.
// Threading: stateless functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace fleecectl {

// Columns left-aligned and separated by two spaces; the last column is not padded.
void print_table(std::ostream& out, const std::vector<std::string>& headers,
                 const std::vector<std::vector<std::string>>& rows);

// `value` as JSON: one compact line (for --json) or indented (for people).
void print_json(std::ostream& out, const nlohmann::json& value, bool pretty);

// "512 B", "64 MiB", "1.5 GiB" (one decimal unless exact).
std::string format_size(uint64_t bytes);

// A JSON member as text for a table cell ("" when absent; strings unquoted).
std::string cell(const nlohmann::json& object, const std::string& key);

}  // namespace fleecectl
