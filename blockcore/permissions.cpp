#include "blockcore/permissions.h"

namespace blockcore {

NodeUse child_use(const std::string& parent_user, bool parent_writable, ChildRole role,
                  bool stable_reads) {
  NodeUse use;
  use.user = parent_user + " (as its " + child_role_name(role) + " child)";
  switch (role) {
    case ChildRole::kFile:
    case ChildRole::kDataFile:
      use.write = parent_writable;
      use.shares_write = !parent_writable && !stable_reads;
      break;
    case ChildRole::kBacking:
      use.write = false;
      use.shares_write = false;
      break;
    case ChildRole::kTarget:
      use.write = true;
      use.shares_write = false;
      break;
  }
  return use;
}

NodeUse external_use(const std::string& user, bool write) {
  return NodeUse{user, write, /*shares_write=*/true};
}

Status check_new_use(const BlockNode& node, const std::vector<NodeUse>& existing,
                     const NodeUse& added) {
  const std::string target = "node '" + node.name() + "'";
  if (added.write && node.read_only()) {
    return Status::invalid(added.user + " needs to write " + target +
                           ", but it is read-only (make the user read-only, or open " + target +
                           " writable)");
  }
  for (const NodeUse& e : existing) {
    if (added.write && e.write && (!added.shares_write || !e.shares_write)) {
      return Status::error(EBUSY,
                           target + " would have two writers: " + e.user + " and " + added.user);
    }
    if (added.write && !e.shares_write) {
      return Status::error(
          EBUSY, added.user + " cannot write " + target + ": " + e.user + " needs it unchanged");
    }
    if (e.write && !added.shares_write) {
      return Status::error(
          EBUSY, added.user + " needs " + target + " unchanged, but " + e.user + " writes it");
    }
  }
  return Status::ok();
}

}  // namespace blockcore
