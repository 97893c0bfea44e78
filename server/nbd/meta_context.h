// Metadata contexts (NBD_OPT_LIST/SET_META_CONTEXT, NBD_CMD_BLOCK_STATUS): a registry of
// providers, one per namespace ("base", later "qemu"), that list the contexts an export
// offers, resolve an exact name for SET, and produce extents for BLOCK_STATUS. The
// handshake and the transmission code only talk to this registry, so adding
// qemu:allocation-depth or qemu:dirty-bitmap:NAME is a new provider, nothing more.
//
// Query semantics (proto.md, QEMU-compatible):
//  - a query is "namespace:leaf"; queries in unknown namespaces (or without a colon)
//    are ignored, never an error;
//  - LIST with no queries lists every context of the export; a leaf may be a prefix
//    wildcard as the provider defines ("base:" lists base:allocation);
//  - SET selects only exact names; wildcards select nothing; duplicates select once.
//
// Threading: add() only before the registry is shared (daemon start-up); afterwards every
// const method may be called concurrently. A MetaContext is used by one connection, but
// its extents() may be called concurrently for pipelined requests.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "blockcore/base/result.h"
#include "blockcore/base/task.h"
#include "server/export/export_registry.h"

namespace server::nbd {

// One block-status descriptor: `length` bytes with context-specific `flags`.
struct MetaExtent {
  uint64_t length = 0;
  uint32_t flags = 0;
  bool operator==(const MetaExtent&) const = default;
};

// A context resolved for one export (holds whatever it needs: the export, a bitmap...).
class MetaContext {
 public:
  explicit MetaContext(std::string name) : name_(std::move(name)) {}
  virtual ~MetaContext() = default;
  MetaContext(const MetaContext&) = delete;
  MetaContext& operator=(const MetaContext&) = delete;

  const std::string& name() const { return name_; }

  // Describes [off, off+len) of the export as contiguous extents starting at off.
  // REQUIRES: len > 0, the range lies inside the export, max_extents >= 1.
  // Returns 1..max_extents extents whose lengths sum to at most len (a short answer is
  // allowed; the client asks again), or an error.
  virtual blockcore::Task<blockcore::Result<std::vector<MetaExtent>>> extents(
      uint64_t off, uint64_t len, size_t max_extents) = 0;

 private:
  std::string name_;
};

using MetaContextPtr = std::shared_ptr<MetaContext>;

// Serves contexts of one namespace (all of them, or one family such as
// qemu:allocation-depth; several providers may share a namespace).
class MetaContextProvider {
 public:
  virtual ~MetaContextProvider() = default;

  // The namespace without its colon, e.g. "base".
  virtual std::string_view name_space() const = 0;
  // What the registry replaces by: a provider with the same key replaces an earlier one.
  // The namespace by default (one provider per namespace).
  virtual std::string_view key() const { return name_space(); }
  // LIST: appends the full names of this namespace's contexts of `exp` that `leaf`
  // (the query after "namespace:") matches; an empty leaf matches all of them.
  virtual void list(const Export& exp, std::string_view leaf,
                    std::vector<std::string>& out) const = 0;
  // SET: the context named exactly "namespace:leaf" for `exp`, or nullptr.
  virtual MetaContextPtr resolve(const ExportPtr& exp, std::string_view leaf) const = 0;
};

class MetaContextRegistry {
 public:
  // A registry offering the standard contexts: base:allocation, (on exports that
  // enable it) qemu:allocation-depth, and qemu:dirty-bitmap:NAME for an export's bitmaps.
  MetaContextRegistry();
  // A registry with no providers at all (tests).
  static MetaContextRegistry empty_registry();

  MetaContextRegistry(MetaContextRegistry&&) = default;
  MetaContextRegistry& operator=(MetaContextRegistry&&) = default;

  // Registers a provider; a later provider with the same key() replaces the earlier.
  // Providers of one namespace are asked in registration order.
  // REQUIRES: the registry is not yet used by a server.
  void add(std::unique_ptr<MetaContextProvider> provider);

  // Names for NBD_OPT_LIST_META_CONTEXT (no queries = all contexts of the export).
  std::vector<std::string> list(const Export& exp, std::span<const std::string> queries) const;
  // Contexts selected by NBD_OPT_SET_META_CONTEXT, in query order, without duplicates.
  std::vector<MetaContextPtr> select(const ExportPtr& exp,
                                     std::span<const std::string> queries) const;
  // The context of exactly this full name, or nullptr.
  MetaContextPtr resolve(const ExportPtr& exp, std::string_view name) const;

 private:
  struct EmptyTag {};
  explicit MetaContextRegistry(EmptyTag) {}

  std::vector<std::unique_ptr<MetaContextProvider>> providers_;
};

// Splits "ns:leaf" into its namespace and leaf; false if there is no colon.
bool split_context_name(std::string_view name, std::string_view& ns, std::string_view& leaf);

}  // namespace server::nbd
