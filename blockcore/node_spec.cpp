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

void collect_child(const std::optional<ChildRef>& child, std::vector<std::string>& out) {
  if (!child) return;
  if (!child->node_name.empty()) out.push_back(child->node_name);
  if (child->inline_spec) collect_references(*child->inline_spec, out);
}

}  // namespace

bool equivalent(const NodeSpec& a, const NodeSpec& b) {
  return a.node_name == b.node_name && a.driver == b.driver && a.read_only == b.read_only &&
         a.file.filename == b.file.filename && a.file.direct == b.file.direct &&
         a.file.locking == b.file.locking && a.raw.offset == b.raw.offset &&
         a.raw.size == b.raw.size && a.throttle == b.throttle &&
         equivalent_child(a.file_child, b.file_child) &&
         a.backing_mode == b.backing_mode && equivalent_child(a.backing_child, b.backing_child) &&
         equivalent_child(a.data_file_child, b.data_file_child) && a.bitmap_file == b.bitmap_file;
}

void collect_references(const NodeSpec& spec, std::vector<std::string>& out) {
  collect_child(spec.file_child, out);
  collect_child(spec.backing_child, out);
  collect_child(spec.data_file_child, out);
}

}  // namespace blockcore
