#include "blockcore/graph.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "blockcore/node_name.h"
#include "blockcore/qcow2/qcow2_bitmap_store.h"

namespace blockcore {
namespace {

std::string node_user(const std::string& name) { return "node '" + name + "'"; }

// One key for every spelling of a container path (relative names against the working
// directory, which is where open(2) resolves them too).
std::string container_key(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) p = path;
  return p.lexically_normal().string();
}

}  // namespace

Graph::Graph(io::BlockingPool& pool) : Graph(pool, NodeFactory::with_builtin_drivers()) {}

Graph::Graph(io::BlockingPool& pool, NodeFactory factory)
    : pool_(pool), factory_(std::move(factory)) {}

// Nodes keep their children alive, so the registry may be destroyed in any order.
Graph::~Graph() = default;

Result<BlockNodePtr> Graph::add(const NodeSpec& spec) {
  std::lock_guard lock(mu_);
  if (spec.node_name.empty()) {
    return Status::invalid("a node added to the graph needs a node-name");
  }
  std::vector<std::string> added;
  Result<BlockNodePtr> r = open_locked(spec, /*inline_parent=*/"", added, ChainContext{});
  if (!r.is_ok()) {
    // All-or-nothing: unregister what this call opened, parents before children, so
    // the nodes close as their last references go.
    for (auto it = added.rbegin(); it != added.rend(); ++it) nodes_.erase(*it);
  }
  return r;
}

Result<BlockNodePtr> Graph::open_locked(const NodeSpec& spec, const std::string& inline_parent,
                                        std::vector<std::string>& added,
                                        const ChainContext& chain) {
  NodeSpec s = spec;
  if (s.node_name.empty()) {
    do {
      s.node_name = generated_node_name(++next_auto_id_);
    } while (nodes_.count(s.node_name));
  } else {
    FLEECE_RETURN_IF_ERROR(check_node_name(s.node_name));
    if (nodes_.count(s.node_name)) {
      return Status::error(EEXIST, "node name '" + s.node_name + "' is already in use");
    }
  }
  const std::string label = node_user(s.node_name);
  const DriverEntry* driver = factory_.find(s.driver);
  if (!driver) {
    return Status::invalid(label + ": unknown driver '" + s.driver +
                           "' (known drivers: " + factory_.names() + ")");
  }
  if (!driver->takes_backing && (s.backing_mode != BackingMode::kFromImage || s.backing_child)) {
    return Status::invalid(label + ": driver '" + s.driver + "' takes no 'backing' option");
  }
  if (!driver->takes_data_file && s.data_file_child) {
    return Status::invalid(label + ": driver '" + s.driver + "' takes no 'data-file' child");
  }
  if (s.backing_mode == BackingMode::kChild && !s.backing_child) {
    return Status::invalid(label + ": 'backing' names no node");
  }
  if (s.backing_mode != BackingMode::kChild && s.backing_child) {
    return Status::invalid(label + ": a 'backing' child is given, but the backing mode is not "
                                   "'child'");
  }
  FLEECE_RETURN_IF_ERROR(check_bitmap_file_locked(s, *driver));

  std::vector<PendingUse> pending;
  BlockNodePtr file_child;
  if (driver->takes_file_child) {
    if (!s.file_child) {
      return Status::invalid(label + ": driver '" + s.driver + "' needs a 'file' child");
    }
    Result<BlockNodePtr> child =
        resolve_child(*s.file_child, ChildRole::kFile, s, *driver, added, pending);
    if (!child.is_ok()) return child.status();
    file_child = std::move(child.value());
  } else if (s.file_child) {
    return Status::invalid(label + ": driver '" + s.driver + "' takes no 'file' child");
  }
  BlockNodePtr backing_child;
  if (s.backing_mode == BackingMode::kChild) {
    Result<BlockNodePtr> child =
        resolve_child(*s.backing_child, ChildRole::kBacking, s, *driver, added, pending);
    if (!child.is_ok()) return child.status();
    backing_child = std::move(child.value());
  }
  BlockNodePtr data_file_child;
  if (s.data_file_child) {
    Result<BlockNodePtr> child =
        resolve_child(*s.data_file_child, ChildRole::kDataFile, s, *driver, added, pending);
    if (!child.is_ok()) return child.status();
    data_file_child = std::move(child.value());
  }

  OpenRequest req{s, pool_, file_child};
  req.backing_child = std::move(backing_child);
  req.data_file_child = std::move(data_file_child);
  req.chain = chain;
  req.on_corruption = on_corruption_;
  req.open_implicit_child = implicit_opener(s.node_name, chain, added);
  Result<BlockNodePtr> node = driver->open(req);
  if (!node.is_ok()) {
    const Status& e = node.status();
    // Drivers usually name the node already; add the name where they do not. A chain
    // loop or depth error already names where it happened.
    if (e.code() == ELOOP || e.message().find("'" + s.node_name + "'") != std::string::npos) {
      return e;
    }
    return e.with_context(label);
  }
  // A child named inside this call (an inline node-name) may have taken our name.
  if (nodes_.count(s.node_name)) {
    return Status::error(EEXIST, "node name '" + s.node_name + "' is already in use");
  }
  // On error the node, the only reference to it, closes as it goes out of scope.
  if (s.bitmap_file) {
    FLEECE_RETURN_IF_ERROR(attach_bitmap_file_locked(*node.value(), *s.bitmap_file));
  }
  nodes_.emplace(s.node_name, Entry{node.value(), inline_parent, driver->stable_file_reads,
                                    s.bitmap_file ? container_key(*s.bitmap_file) : ""});
  added.push_back(s.node_name);
  return node;
}

Status Graph::check_bitmap_file_locked(const NodeSpec& spec, const DriverEntry& driver) const {
  if (!spec.bitmap_file) return Status::ok();
  const std::string label = node_user(spec.node_name);
  if (!driver.takes_bitmap_file) {
    return Status::invalid(label + ": driver '" + spec.driver +
                           "' takes no 'bitmap-file' (it is for drivers without a bitmap store "
                           "of their own, such as file and raw; qcow2 keeps its bitmaps in its "
                           "image)");
  }
  if (spec.bitmap_file->empty()) return Status::invalid(label + ": 'bitmap-file' is empty");
  return Status::ok();
}

Status Graph::attach_bitmap_file_locked(BlockNode& node, const std::string& path) {
  // Checked here, after the node's children registered: an inline child may name it too.
  const std::string key = container_key(path);
  for (const auto& [name, entry] : nodes_) {
    if (entry.bitmap_file == key) {
      return Status::error(EBUSY, node_user(node.name()) + ": bitmap-file '" + path +
                                      "' is already the bitmap-file of node '" + name +
                                      "' (every node needs its own container)");
    }
  }
  std::vector<DirtyBitmapPtr> loaded;
  const bool read_only = node.read_only();
  Result<qcow2::Qcow2BitmapStorePtr> store = qcow2::open_bitmap_container(
      path, node.size(), read_only, /*create=*/!read_only, pool_, loaded);
  if (!store.is_ok()) {
    // The store's messages name the container ("bitmap file 'PATH' ..."); add the node.
    const Status& e = store.status();
    const std::string node_label = node_user(node.name());
    if (e.message().find(path) != std::string::npos) return e.with_context(node_label);
    return e.with_context(node_label + ": bitmap file '" + path + "'");
  }
  node.bitmaps().attach_store(std::move(store.value()), std::move(loaded));
  return Status::ok();
}

ImplicitChildOpener Graph::implicit_opener(const std::string& parent, const ChainContext& chain,
                                           std::vector<std::string>& added) {
  // Called synchronously from the parent driver's open(), on this thread, with mu_ held.
  return [this, parent, parent_depth = chain.depth, &added](
             const NodeSpec& spec, const ChainContext& child_chain) -> Result<BlockNodePtr> {
    ChainContext c = child_chain;
    c.depth = std::max(c.depth, parent_depth + 1);  // a chain always gets deeper
    if (c.depth > kMaxImplicitChainDepth) {
      return Status::error(ELOOP, node_user(parent) + ": backing chain deeper than " +
                                      std::to_string(kMaxImplicitChainDepth) +
                                      " images (do the image headers form a loop?)");
    }
    NodeSpec child = spec;
    child.node_name.clear();  // implicit nodes always get generated names
    if (child.origin.empty()) child.origin = "backing of " + node_user(parent);
    return open_locked(child, parent, added, c);
  };
}

Result<BlockNodePtr> Graph::resolve_child(const ChildRef& ref, ChildRole role,
                                          const NodeSpec& parent, const DriverEntry& parent_driver,
                                          std::vector<std::string>& added,
                                          std::vector<PendingUse>& pending) {
  const std::string parent_label = node_user(parent.node_name);
  const std::string key = std::string("'") + child_role_name(role) + "'";
  const NodeUse use = child_use(parent_label, !parent.read_only, role,
                                parent_driver.stable_file_reads);
  BlockNodePtr child;
  if (ref.inline_spec) {
    NodeSpec spec = *ref.inline_spec;
    if (parent.read_only || role == ChildRole::kBacking) {
      // A read-only parent opens its inline child read-only; a backing node is only read.
      spec.read_only = true;
    } else if (spec.read_only) {
      return Status::invalid(parent_label + " is writable, but its inline " + key +
                             " child is read-only (make the parent read-only too)");
    }
    Result<BlockNodePtr> opened = open_locked(spec, parent.node_name, added, ChainContext{});
    if (!opened.is_ok()) return opened;
    child = std::move(opened.value());
  } else {
    if (ref.node_name.empty()) return Status::invalid(parent_label + ": empty " + key + " reference");
    auto it = nodes_.find(ref.node_name);
    if (it == nodes_.end()) {
      return Status::error(ENOENT, parent_label + ": " + key + " refers to node '" +
                                       ref.node_name + "', which does not exist");
    }
    child = it->second.node;
  }
  // An inline child is new, but the parent's other children may share it (by reference).
  std::vector<NodeUse> uses = uses_locked(child.get());
  for (const PendingUse& p : pending) {
    if (p.node == child.get()) uses.push_back(p.use);
  }
  FLEECE_RETURN_IF_ERROR(check_new_use(*child, uses, use));
  pending.push_back(PendingUse{child.get(), use});
  return child;
}

std::vector<NodeUse> Graph::uses_locked(const BlockNode* node) const {
  std::vector<NodeUse> uses;
  for (const auto& [name, entry] : nodes_) {
    for (const ChildEdge& e : entry.node->children()) {
      if (e.node.get() != node) continue;
      uses.push_back(
          child_use(node_user(name), !entry.node->read_only(), e.role, entry.stable_file_reads));
    }
  }
  auto u = users_.find(node->name());
  if (u != users_.end()) uses.insert(uses.end(), u->second.begin(), u->second.end());
  return uses;
}

std::vector<std::string> Graph::parents_locked(const BlockNode* node) const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : nodes_) {
    const auto& children = entry.node->children();
    if (std::any_of(children.begin(), children.end(),
                    [&](const ChildEdge& e) { return e.node.get() == node; })) {
      out.push_back(name);
    }
  }
  return out;
}

std::string Graph::in_use_reason_locked(const std::string& name, const BlockNodePtr& node) const {
  std::vector<std::string> who;
  for (const std::string& p : parents_locked(node.get())) who.push_back(node_user(p));
  auto u = users_.find(name);
  if (u != users_.end()) {
    for (const NodeUse& use : u->second) who.push_back(use.user);
  }
  if (who.empty()) {
    // With no parents, the registry's is the graph's only reference; any other holder
    // is an export, a connection or a job that did not declare itself.
    const long others = node.use_count() - 1;
    if (others <= 0) return {};
    return std::to_string(others) + " other reference" + (others == 1 ? "" : "s") +
           " (an export, an open connection or a job)";
  }
  std::string text;
  for (const std::string& w : who) text += (text.empty() ? "" : ", ") + w;
  return text;
}

Status Graph::remove(const std::string& node_name) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(node_name);
  if (it == nodes_.end()) return Status::error(ENOENT, "no node named '" + node_name + "'");
  const std::string reason = in_use_reason_locked(node_name, it->second.node);
  if (!reason.empty()) {
    return Status::error(EBUSY, "node '" + node_name + "' is in use by " + reason);
  }
  erase_locked(node_name);
  return Status::ok();
}

void Graph::erase_locked(const std::string& name) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) return;
  BlockNodePtr node = std::move(it->second.node);
  nodes_.erase(it);
  users_.erase(name);
  std::vector<std::string> inline_children;
  for (const ChildEdge& e : node->children()) {
    auto c = nodes_.find(e.node->name());
    if (c != nodes_.end() && c->second.inline_parent == name) inline_children.push_back(c->first);
  }
  node.reset();  // the last reference: the node closes and drops its children
  for (const std::string& child : inline_children) {
    auto c = nodes_.find(child);
    if (c == nodes_.end()) continue;
    if (in_use_reason_locked(child, c->second.node).empty()) {
      erase_locked(child);
    } else {
      c->second.inline_parent.clear();  // another node uses it: it now stands on its own
    }
  }
}

BlockNodePtr Graph::find(const std::string& node_name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(node_name);
  return it == nodes_.end() ? nullptr : it->second.node;
}

std::vector<BlockNodePtr> Graph::nodes() const {
  std::lock_guard lock(mu_);
  std::vector<BlockNodePtr> out;
  out.reserve(nodes_.size());
  for (const auto& [name, entry] : nodes_) out.push_back(entry.node);
  return out;
}

std::vector<std::string> Graph::parents_of(const BlockNode* node) const {
  std::lock_guard lock(mu_);
  return parents_locked(node);
}

bool Graph::is_inline(const std::string& node_name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(node_name);
  return it != nodes_.end() && !it->second.inline_parent.empty();
}

Status Graph::add_user(const std::string& node_name, const std::string& user, bool write) {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(node_name);
  if (it == nodes_.end()) return Status::error(ENOENT, "no node named '" + node_name + "'");
  auto existing = users_.find(node_name);
  if (existing != users_.end()) {
    for (const NodeUse& u : existing->second) {
      if (u.user == user) {
        return Status::error(EEXIST, user + " already uses node '" + node_name + "'");
      }
    }
  }
  const NodeUse use = external_use(user, write);
  FLEECE_RETURN_IF_ERROR(check_new_use(*it->second.node, uses_locked(it->second.node.get()), use));
  users_[node_name].push_back(use);
  return Status::ok();
}

Status Graph::remove_user(const std::string& node_name, const std::string& user) {
  std::lock_guard lock(mu_);
  auto it = users_.find(node_name);
  if (it != users_.end()) {
    auto& v = it->second;
    auto u = std::find_if(v.begin(), v.end(), [&](const NodeUse& x) { return x.user == user; });
    if (u != v.end()) {
      v.erase(u);
      if (v.empty()) users_.erase(it);
      return Status::ok();
    }
  }
  return Status::error(ENOENT, user + " does not use node '" + node_name + "'");
}

std::vector<NodeUse> Graph::uses_of(const std::string& node_name) const {
  std::lock_guard lock(mu_);
  auto it = nodes_.find(node_name);
  if (it == nodes_.end()) return {};
  return uses_locked(it->second.node.get());
}

}  // namespace blockcore
