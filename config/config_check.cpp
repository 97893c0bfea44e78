#include "config/config_check.h"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "config/allow_rule.h"
#include "config/node_drivers.h"

namespace config {
namespace {

// What the export and bitmap checks need to know about each named node.
struct NodeFacts {
  bool read_only = false;
  std::string writer;      // label of a writable parent node that writes it, if any
  std::string backing_of;  // label of a node that uses it as its backing node, if any
  std::string driver;
  bool can_store_bitmaps = true;  // its driver has a store, or it names a bitmap-file
};

std::string node_label(const std::string& path, const std::string& name) {
  return name.empty() ? path : path + " ('" + name + "')";
}

// Who writes (a writable parent's file or data-file) and who reads as backing each node.
struct ChildUses {
  std::map<std::string, std::string> written_by;
  std::map<std::string, std::string> backing_of;
};

void collect_nodes(const blockcore::NodeSpec& spec, const std::string& path,
                   std::map<std::string, NodeFacts>& facts, ChildUses& uses);

void collect_child(const blockcore::NodeSpec& parent, const std::string& parent_path,
                   const std::optional<blockcore::ChildRef>& ref, const char* key, bool backing,
                   std::map<std::string, NodeFacts>& facts, ChildUses& uses) {
  if (!ref) return;
  std::string child_name = ref->node_name;
  if (ref->inline_spec) {
    collect_nodes(*ref->inline_spec, parent_path + "." + key, facts, uses);
    child_name = ref->inline_spec->node_name;
  }
  if (child_name.empty()) return;
  const std::string label = node_label(parent_path, parent.node_name);
  if (backing) {
    uses.backing_of.emplace(child_name, label);
  } else if (!parent.read_only) {
    uses.written_by.emplace(child_name, label);
  }
}

// Records every named node of `spec` (and of its inline children).
void collect_nodes(const blockcore::NodeSpec& spec, const std::string& path,
                   std::map<std::string, NodeFacts>& facts, ChildUses& uses) {
  if (!spec.node_name.empty()) {
    facts.emplace(spec.node_name,
                  NodeFacts{spec.read_only, {}, {}, spec.driver, can_store_bitmaps(spec)});
  }
  collect_child(spec, path, spec.file_child, "file", false, facts, uses);
  collect_child(spec, path, spec.backing_child, "backing", true, facts, uses);
  collect_child(spec, path, spec.data_file_child, "data-file", false, facts, uses);
}

void add(std::vector<ConfigError>& errors, const SourceLocation& where, std::string path,
         std::string message) {
  errors.push_back(ConfigError{where, std::move(path), std::move(message)});
}

void check_listen(const Config& c, std::vector<ConfigError>& errors) {
  std::map<std::string, SourceLocation> seen;
  for (size_t i = 0; i < c.listen.size(); ++i) {
    const ListenAddress& a = c.listen[i];
    auto [it, inserted] = seen.emplace(a.to_string(), a.where);
    if (!inserted) {
      add(errors, a.where, "listen[" + std::to_string(i) + "]",
          a.to_string() + " is listed twice (first at " + it->second.to_string() + ")");
    }
  }
  if (!c.control.unix_path.empty() && seen.count("unix:" + c.control.unix_path)) {
    add(errors, c.control.where, "control.unix",
        "the control socket cannot be the same path as an NBD listen socket");
  }
}

void check_exports(const Config& c, const std::map<std::string, NodeFacts>& facts,
                   std::vector<ConfigError>& errors) {
  std::map<std::string, SourceLocation> names;
  for (size_t i = 0; i < c.exports.size(); ++i) {
    const ExportConfig& e = c.exports[i];
    const std::string path = "exports[" + std::to_string(i) + "]";
    if (!e.name.empty()) {
      auto [it, inserted] = names.emplace(e.name, e.where);
      if (!inserted) {
        add(errors, e.where, path + ".name",
            "duplicate export name '" + e.name + "' (first at " + it->second.to_string() + ")");
      }
    }
    std::set<std::string> bitmaps;
    for (size_t b = 0; b < e.bitmaps.size(); ++b) {
      if (!bitmaps.insert(e.bitmaps[b]).second) {
        add(errors, e.where, path + ".bitmaps[" + std::to_string(b) + "]",
            "bitmap '" + e.bitmaps[b] + "' is listed twice");
      }
    }
    if (e.node.empty()) continue;
    auto node = facts.find(e.node);
    if (node == facts.end()) {
      add(errors, e.node_where, path + ".node",
          "unknown node '" + e.node + "' (no node has this node-name)");
      continue;
    }
    if (e.writable && node->second.read_only) {
      add(errors, e.node_where, path + ".node",
          "export '" + e.name + "' is writable, but node '" + e.node +
              "' is read-only (set writable: false, or drop read-only from the node)");
    } else if (e.writable && !node->second.writer.empty()) {
      add(errors, e.node_where, path + ".node",
          "export '" + e.name + "' is writable, but node '" + e.node +
              "' is already written by its parent " + node->second.writer +
              "; two writers would corrupt it (export the parent instead)");
    } else if (e.writable && !node->second.backing_of.empty()) {
      add(errors, e.node_where, path + ".node",
          "export '" + e.name + "' is writable, but node '" + e.node +
              "' is the backing node of " + node->second.backing_of +
              ", which needs it unchanged (set writable: false)");
    }
  }
}

void check_bitmaps(const Config& c, const std::map<std::string, NodeFacts>& facts,
                   std::vector<ConfigError>& errors) {
  std::map<std::pair<std::string, std::string>, SourceLocation> seen;
  for (size_t i = 0; i < c.bitmaps.size(); ++i) {
    const BitmapConfig& b = c.bitmaps[i];
    const std::string path = "bitmaps[" + std::to_string(i) + "]";
    if (b.node.empty()) continue;
    auto node = facts.find(b.node);
    if (node == facts.end()) {
      add(errors, b.node_where, path + ".node",
          "unknown node '" + b.node + "' (no node has this node-name)");
    } else if (b.persistent && !node->second.can_store_bitmaps) {
      add(errors, b.where, path,
          "bitmap '" + b.name + "' is persistent, but node '" + b.node + "' (driver " +
              node->second.driver +
              ") has nowhere to store it: give the node a bitmap-file (a qcow2 container for "
              "its bitmaps), or set persistent: false");
    }
    if (b.name.empty()) continue;
    auto [it, inserted] = seen.emplace(std::make_pair(b.node, b.name), b.where);
    if (!inserted) {
      add(errors, b.where, path,
          "bitmap '" + b.name + "' of node '" + b.node + "' is defined twice (first at " +
              it->second.to_string() + ")");
    }
  }
}

void check_tls(const Config& c, std::vector<ConfigError>& errors) {
  if (!c.tls) return;
  const TlsConfig& t = *c.tls;
  if (t.x509_dir.empty() && t.psk_file.empty()) {
    add(errors, t.where, "tls", "needs x509-dir or psk-file (or both)");
  }
  if (t.verify_peer && t.x509_dir.empty()) {
    add(errors, t.where, "tls.verify-peer",
        "verifying client certificates needs x509-dir (with ca-cert.pem)");
  }
}

// Rules that can never match: TLS identities without the TLS setup that yields them.
void check_allow(const Config& c, std::vector<ConfigError>& errors) {
  for (size_t i = 0; i < c.exports.size(); ++i) {
    const ExportConfig& e = c.exports[i];
    const std::string path = "exports[" + std::to_string(i) + "].allow";
    for (const std::string& text : e.allow) {
      std::string error;
      auto rule = parse_allow_rule(text, error);
      if (!rule) continue;  // reported by the parser
      if (rule->kind == AllowRule::Kind::kTlsDn && !(c.tls && c.tls->verify_peer)) {
        add(errors, e.where, path,
            "tls-dn '" + rule->value + "' needs tls.verify-peer: true (client certificates)");
      }
      if (rule->kind == AllowRule::Kind::kPskIdentity && !(c.tls && !c.tls->psk_file.empty())) {
        add(errors, e.where, path, "psk-identity '" + rule->value + "' needs tls.psk-file");
      }
    }
  }
}

}  // namespace

std::vector<ConfigError> check_config(const Config& config) {
  std::vector<ConfigError> errors;
  std::map<std::string, NodeFacts> facts;
  ChildUses uses;
  for (size_t i = 0; i < config.nodes.size(); ++i) {
    collect_nodes(config.nodes[i], "nodes[" + std::to_string(i) + "]", facts, uses);
  }
  for (const auto& [name, writer] : uses.written_by) {
    auto it = facts.find(name);
    if (it != facts.end()) it->second.writer = writer;
  }
  for (const auto& [name, reader] : uses.backing_of) {
    auto it = facts.find(name);
    if (it != facts.end()) it->second.backing_of = reader;
  }
  check_listen(config, errors);
  check_exports(config, facts, errors);
  check_bitmaps(config, facts, errors);
  check_tls(config, errors);
  check_allow(config, errors);
  return errors;
}

}  // namespace config
