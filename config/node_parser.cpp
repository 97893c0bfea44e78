#include "config/node_parser.h"

#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <system_error>

#include "blockcore/node_name.h"
#include "config/node_drivers.h"

namespace config {
namespace {

// The key two spellings of one file share ("a/../b.img" and "./b.img"), relative names
// taken against the working directory fleeced opens them from.
std::string normalized_path(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) p = path;
  return p.lexically_normal().string();
}

}  // namespace

std::string NodeParser::label(const std::string& path, const std::string& name) {
  return name.empty() ? path : path + " ('" + name + "')";
}

void NodeParser::parse_nodes(const YAML::Node& list, const SourceLocation& where, Config& out) {
  if (!list.IsSequence()) {
    diag_.error(where, "nodes", "expected a list of nodes, got " + describe_yaml(list));
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = index_path("nodes", i);
    SourceLocation at = diag_.where(list[i]);
    if (at.line == 0) at = where;
    out.nodes.push_back(parse_node(list[i], path, at, nullptr));
    out.node_where.push_back(at);
  }
  check_references();
  check_cycles();
  check_bitmap_files();
}

blockcore::NodeSpec NodeParser::parse_node(const YAML::Node& n, const std::string& path,
                                           const SourceLocation& where,
                                           const blockcore::NodeSpec* parent, bool as_backing) {
  blockcore::NodeSpec spec;
  MapReader m(n, path, diag_, where);
  spec.origin = m.where().to_string();
  if (!m.is_map()) return spec;

  if (auto name = m.string("node-name", /*required=*/parent == nullptr)) {
    if (blockcore::Status s = blockcore::check_node_name(*name); !s.is_ok()) {
      diag_.error(m.where_of("node-name"), m.path_of("node-name"), s.message());
    }
    spec.node_name = *name;
  }
  const NodeDriverSyntax* driver = nullptr;
  if (auto d = m.string("driver", /*required=*/true)) {
    spec.driver = *d;
    driver = find_node_driver_syntax(*d);
    if (!driver) {
      diag_.error(m.where_of("driver"), m.path_of("driver"),
                  "unknown driver '" + *d + "' (known drivers: " + known_node_driver_names() + ")");
    }
  }
  if (auto ro = m.boolean("read-only")) spec.read_only = *ro;
  if (as_backing || (parent && parent->read_only)) {
    // A read-only parent opens its inline child read-only; a backing node is only read.
    spec.read_only = true;
  } else if (parent && spec.read_only) {
    diag_.error(m.where_of("read-only"), m.path_of("read-only"),
                "this inline node is read-only, but its parent is writable and needs to "
                "write it (make the parent read-only too)");
  }

  const bool named = !spec.node_name.empty();
  const std::string my_label = label(path, spec.node_name);
  if (named) {
    auto [it, inserted] = named_.emplace(spec.node_name, Named{path, m.where(), spec.read_only});
    if (!inserted) {
      diag_.error(m.where_of("node-name"), m.path_of("node-name"),
                  "duplicate node name '" + spec.node_name + "' (first defined at " +
                      it->second.where.to_string() + ", " + it->second.path + ")");
    } else if (!owners_.empty()) {
      contains_[owners_.back()].push_back(spec.node_name);
    }
    owners_.push_back(spec.node_name);
  }
  labels_.push_back(my_label);
  if (driver) {
    driver->parse(m, spec, *this);
    if (!m.known_keys().count("bitmap-file") && m.has("bitmap-file")) {
      diag_.error(m.where_of("bitmap-file"), m.path_of("bitmap-file"),
                  "driver '" + spec.driver + "' takes no bitmap-file" +
                      (driver->own_bitmap_store ? " (it keeps persistent bitmaps in its own image)"
                                                : "") +
                      "; bitmap-file is for file and raw nodes");
    }
  } else {
    // Without a (known) driver, accept any driver's keys and still catch the others.
    for (const NodeDriverSyntax& d : node_driver_syntaxes()) {
      for (const std::string& key : node_driver_keys(d)) m.allow(key);
    }
  }
  m.finish();
  labels_.pop_back();
  if (named) owners_.pop_back();
  return spec;
}

std::optional<blockcore::ChildRef> NodeParser::parse_child(MapReader& m, const std::string& key,
                                                           const blockcore::NodeSpec& parent,
                                                           ChildUse use, bool required) {
  YAML::Node v = m.get(key, required);
  if (!v.IsDefined()) return std::nullopt;
  const std::string path = m.path_of(key);
  const SourceLocation where = m.where_of(key);
  const bool backing = use == ChildUse::kBacking;
  const std::string parent_label = labels_.empty() ? path : labels_.back();
  blockcore::ChildRef ref;
  if (v.IsScalar()) {
    ref.node_name = v.Scalar();
    refs_.push_back(Reference{ref.node_name, owners_.empty() ? std::string() : owners_.back(), path,
                              where, parent_label, !parent.read_only && !backing, backing});
    return ref;
  }
  if (v.IsMap()) {
    auto child =
        std::make_shared<blockcore::NodeSpec>(parse_node(v, path, where, &parent, backing));
    if (!child->node_name.empty()) {
      if (backing) {
        backing_users_[child->node_name].push_back(Writer{parent_label, path, diag_.where(v)});
      } else if (!parent.read_only) {
        writers_[child->node_name].push_back(Writer{parent_label, path, diag_.where(v)});
      }
    }
    ref.inline_spec = std::move(child);
    return ref;
  }
  diag_.error(where, path,
              "expected a node name or an inline node (a map), got " + describe_yaml(v));
  return std::nullopt;
}

void NodeParser::parse_backing(MapReader& m, const std::string& key, blockcore::NodeSpec& spec) {
  YAML::Node v = m.get(key);
  if (!v.IsDefined()) {
    spec.backing_mode = blockcore::BackingMode::kFromImage;
    return;
  }
  if (v.IsNull()) {
    spec.backing_mode = blockcore::BackingMode::kNone;
    return;
  }
  spec.backing_child = parse_child(m, key, spec, ChildUse::kBacking);
  if (spec.backing_child) spec.backing_mode = blockcore::BackingMode::kChild;
}

void NodeParser::parse_bitmap_file(MapReader& m, blockcore::NodeSpec& spec) {
  const std::optional<std::string> f = m.string("bitmap-file");
  if (!f) return;
  if (f->empty()) {
    diag_.error(m.where_of("bitmap-file"), m.path_of("bitmap-file"), "the file name is empty");
    return;
  }
  spec.bitmap_file = *f;
  bitmap_files_.emplace(normalized_path(*f),
                        PathUse{*f, labels_.empty() ? m.path() : labels_.back(),
                                m.path_of("bitmap-file"), m.where_of("bitmap-file")});
}

void NodeParser::note_filename(MapReader& m, const std::string& filename) {
  if (filename.empty()) return;
  filenames_.emplace(normalized_path(filename),
                     PathUse{filename, labels_.empty() ? m.path() : labels_.back(),
                             m.path_of("filename"), m.where_of("filename")});
}

void NodeParser::check_bitmap_files() {
  for (auto it = bitmap_files_.begin(); it != bitmap_files_.end();) {
    auto [first, end] = bitmap_files_.equal_range(it->first);
    for (auto dup = std::next(first); dup != end; ++dup) {
      diag_.error(dup->second.where, dup->second.key_path,
                  "bitmap-file '" + dup->second.path + "' is already the bitmap-file of " +
                      first->second.label + " (at " + first->second.where.to_string() +
                      "); every node needs its own container");
    }
    auto image = filenames_.find(first->first);
    if (image != filenames_.end()) {
      diag_.error(first->second.where, first->second.key_path,
                  "bitmap-file '" + first->second.path + "' is the image file of " +
                      image->second.label + " (at " + image->second.where.to_string() +
                      "); the bitmaps container must be a file of its own");
    }
    it = end;
  }
}

void NodeParser::check_references() {
  for (const Reference& r : refs_) {
    auto it = named_.find(r.target);
    if (it == named_.end()) {
      diag_.error(r.where, r.path, "unknown node '" + r.target + "' (no node has this node-name)");
      continue;
    }
    if (r.backing) {
      backing_users_[r.target].push_back(Writer{r.parent_label, r.path, r.where});
      continue;
    }
    if (r.parent_writable && it->second.read_only) {
      diag_.error(r.where, r.path,
                  "node '" + r.target + "' is read-only, but " + r.parent_label +
                      " is writable and needs to write it (make " + r.parent_label +
                      " read-only, or '" + r.target + "' writable)");
      continue;
    }
    if (r.parent_writable) writers_[r.target].push_back(Writer{r.parent_label, r.path, r.where});
  }
  for (const auto& [name, writers] : writers_) {
    for (size_t i = 1; i < writers.size(); ++i) {
      diag_.error(writers[i].where, writers[i].path,
                  "node '" + name + "' would have two writable parents: " + writers[0].label +
                      " and " + writers[i].label + " (make one of them read-only)");
    }
  }
  // A backing node must stay unchanged: no parent may write it.
  for (const auto& [name, users] : backing_users_) {
    auto w = writers_.find(name);
    if (w == writers_.end() || w->second.empty()) continue;
    const Writer& writer = w->second.front();
    for (const Writer& b : users) {
      diag_.error(b.where, b.path,
                  "node '" + name + "' is the backing node of " + b.label + ", but " +
                      writer.label + " writes it (at " + writer.where.to_string() +
                      "); a backing node must stay unchanged (make " + writer.label +
                      " read-only)");
    }
  }
}

void NodeParser::check_cycles() {
  // Edges between named nodes: a reference from the nearest named node that contains it,
  // and containment of a named inline child.
  std::map<std::string, std::vector<const Reference*>> out_refs;
  for (const Reference& r : refs_) {
    if (!r.owner.empty() && named_.count(r.target)) out_refs[r.owner].push_back(&r);
  }
  enum class Mark { kNone, kActive, kDone };
  std::map<std::string, Mark> mark;
  std::set<const Reference*> reported;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    mark[name] = Mark::kActive;
    for (const std::string& inner : contains_[name]) {
      if (mark[inner] == Mark::kNone) visit(inner);
    }
    for (const Reference* r : out_refs[name]) {
      if (mark[r->target] == Mark::kActive) {
        if (reported.insert(r).second) {
          diag_.error(r->where, r->path,
                      r->target == name ? "node '" + name + "' cannot use itself as a child"
                                        : "reference to node '" + r->target + "' makes a cycle: '" +
                                              r->target + "' already uses '" + name + "'");
        }
      } else if (mark[r->target] == Mark::kNone) {
        visit(r->target);
      }
    }
    mark[name] = Mark::kDone;
  };
  for (const auto& [name, n] : named_) {
    if (mark[name] == Mark::kNone) visit(name);
  }
}

}  // namespace config
