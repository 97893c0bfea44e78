#include "blockcore/node_factory.h"

#include <utility>

#include "blockcore/drivers/file_node.h"
#include "blockcore/drivers/raw_node.h"
#include "blockcore/filters/throttle_node.h"
#include "blockcore/qcow2/qcow2_node.h"

namespace blockcore {
namespace {

Result<BlockNodePtr> open_file(const OpenRequest& r) {
  auto node = FileNode::open(r.spec, r.pool);
  if (!node.is_ok()) return node.status();
  return BlockNodePtr(std::move(node.value()));
}

Result<BlockNodePtr> open_raw(const OpenRequest& r) {
  auto node = RawNode::open(r.spec, r.file_child);
  if (!node.is_ok()) return node.status();
  return BlockNodePtr(std::move(node.value()));
}

Result<BlockNodePtr> open_throttle(const OpenRequest& r) {
  auto node = ThrottleNode::open(r.spec, r.file_child);
  if (!node.is_ok()) return node.status();
  return BlockNodePtr(std::move(node.value()));
}

}  // namespace

NodeFactory NodeFactory::with_builtin_drivers() {
  NodeFactory f;
  DriverEntry file{"file", /*takes_file_child=*/false, /*stable_file_reads=*/false, &open_file};
  file.takes_bitmap_file = true;
  f.add(std::move(file));
  DriverEntry raw{"raw", /*takes_file_child=*/true, /*stable_file_reads=*/false, &open_raw};
  raw.takes_bitmap_file = true;
  f.add(std::move(raw));
  f.add(DriverEntry{"qcow2", /*takes_file_child=*/true, /*stable_file_reads=*/true,
                    &qcow2::open_qcow2_node, /*takes_backing=*/true, /*takes_data_file=*/true});
  f.add(DriverEntry{"throttle", /*takes_file_child=*/true, /*stable_file_reads=*/false,
                    &open_throttle});
  return f;
}

void NodeFactory::add(DriverEntry entry) {
  for (DriverEntry& d : drivers_) {
    if (d.name == entry.name) {
      d = std::move(entry);
      return;
    }
  }
  drivers_.push_back(std::move(entry));
}

const DriverEntry* NodeFactory::find(std::string_view name) const {
  for (const DriverEntry& d : drivers_) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

std::string NodeFactory::names() const {
  std::string out;
  for (const DriverEntry& d : drivers_) out += (out.empty() ? "" : ", ") + d.name;
  return out;
}

}  // namespace blockcore
