// NodeParser: reads the `nodes:` section into blockcore::NodeSpecs — the common keys
// (node-name, driver, read-only), each driver's options through the node_drivers table,
// and child references (`file: NAME`) or inline children (`file: {...}`). After the whole
// list is read it checks the references together, so nodes may be listed in any order:
// unknown names, cycles (through file, backing and data-file), a writable parent over a
// read-only node, two writable parents of one node, and a node that is both written by a
// parent and used as a backing node are errors at the line of the offending reference.
// A `backing` child is only read: an inline backing node is read-only even under a
// writable parent, and a backing reference may name a read-only node.
// `bitmap-file` (file and raw nodes): a path kept as written (relative paths resolve
// against fleeced's working directory, like `filename`); two nodes may not name the same
// container, a container may not be some file node's `filename`, and a driver that does
// not read the key (qcow2 keeps bitmaps in its image) gets an error saying so.
// Threading: single-threaded; one parser per load.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "blockcore/node_spec.h"
#include "config/config.h"
#include "config/yaml_reader.h"

namespace config {

class NodeParser {
 public:
  explicit NodeParser(Diagnostics& diag) : diag_(diag) {}

  // Parses the `nodes:` list (at `where`) into out.nodes and out.node_where, then
  // checks the references between them.
  void parse_nodes(const YAML::Node& list, const SourceLocation& where, Config& out);

  // How a parent uses a child: kWritten children (`file`, `data-file`) are written by a
  // writable parent; a kBacking child is only read and must stay unchanged.
  enum class ChildUse { kWritten, kBacking };

  // Reads the child at `key` of the node `m` is reading (drivers call this): a string
  // names another node, a map describes an inline node. A missing key is an error when
  // `required` (else nullopt without an error).
  std::optional<blockcore::ChildRef> parse_child(MapReader& m, const std::string& key,
                                                 const blockcore::NodeSpec& parent,
                                                 ChildUse use = ChildUse::kWritten,
                                                 bool required = true);
  // Reads QEMU's `backing` option into spec.backing_mode / spec.backing_child: absent =
  // from the image header, null = none, a string or a map = that node.
  void parse_backing(MapReader& m, const std::string& key, blockcore::NodeSpec& spec);
  // Reads `bitmap-file` (drivers without a bitmap store of their own call this) into
  // spec.bitmap_file and remembers it for the checks after the whole list is read.
  void parse_bitmap_file(MapReader& m, blockcore::NodeSpec& spec);
  // Remembers a file node's `filename` (a bitmap-file must not name a data file).
  void note_filename(MapReader& m, const std::string& filename);

 private:
  // A node that has a name, wherever it was defined.
  struct Named {
    std::string path;
    SourceLocation where;
    bool read_only = false;
  };
  // A parent writing a named node (as its file child).
  struct Writer {
    std::string label;  // "nodes[1] ('raw0')"
    std::string path;   // of the reference or inline child
    SourceLocation where;
  };
  // A `file: NAME` (or backing, data-file) reference, resolved after the whole list is read.
  struct Reference {
    std::string target;
    std::string owner;  // the nearest named node containing the reference
    std::string path;
    SourceLocation where;
    std::string parent_label;
    bool parent_writable = false;  // the parent writes the target (a writable parent's file)
    bool backing = false;          // the target is the parent's backing node
  };

  // Parses one node map; `parent` is null for a top-level entry. `as_backing`: an inline
  // backing node, opened read-only whatever its parent.
  blockcore::NodeSpec parse_node(const YAML::Node& n, const std::string& path,
                                 const SourceLocation& where, const blockcore::NodeSpec* parent,
                                 bool as_backing = false);
  void check_references();
  void check_cycles();
  void check_bitmap_files();
  static std::string label(const std::string& path, const std::string& name);

  Diagnostics& diag_;
  std::map<std::string, Named> named_;
  std::map<std::string, std::vector<Writer>> writers_;
  std::map<std::string, std::vector<Writer>> backing_users_;  // named node -> its parents
  std::vector<Reference> refs_;
  // Named node -> named nodes it contains inline (for cycle detection with refs_).
  std::map<std::string, std::vector<std::string>> contains_;
  std::vector<std::string> owners_;  // stack of the named nodes being parsed
  std::vector<std::string> labels_;  // stack of labels of the nodes being parsed
  // A `bitmap-file` or a file node's `filename`, for the container checks.
  struct PathUse {
    std::string path;   // as written
    std::string label;  // of the node
    std::string key_path;
    SourceLocation where;
  };
  std::multimap<std::string, PathUse> bitmap_files_;  // normalized path -> use
  std::multimap<std::string, PathUse> filenames_;     // normalized path -> use
};

}  // namespace config
