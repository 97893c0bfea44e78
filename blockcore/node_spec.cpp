#include "blockcore/node_spec.h"

namespace blockcore {
namespace {

bool equivalent_child(const std::optional<ChildRef>& a, const std::optional<ChildRef>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  if (a->node_name != b->node_name) return false;
  if ((a->inline_spec == nullptr) != (b->inline_spec == nullptr)) return false;
  return a->inline_spec == nullptr || equivalent(*a->inline_spec, *b->inline_spec);
}

}  // namespace

bool equivalent(const NodeSpec& a, const NodeSpec& b) {
  return a.node_name == b.node_name && a.driver == b.driver && a.read_only == b.read_only &&
         a.file.filename == b.file.filename && a.file.direct == b.file.direct &&
         a.file.locking == b.file.locking && a.raw.offset == b.raw.offset &&
         a.raw.size == b.raw.size && equivalent_child(a.file_child, b.file_child);
}

void collect_references(const NodeSpec& spec, std::vector<std::string>& out) {
  if (!spec.file_child) return;
  if (!spec.file_child->node_name.empty()) out.push_back(spec.file_child->node_name);
  if (spec.file_child->inline_spec) collect_references(*spec.file_child->inline_spec, out);
}

}  // namespace blockcore
