// Image creation: blockdev-create (QEMU's argument shape; driver `file` creates an empty
// file, driver `qcow2` formats a `file` node of the graph). QEMU runs blockdev-create as
// a background job and reports it with JOB_STATUS_CHANGE events; fleece runs the job
// within the command: the reply comes when the image is complete (and durable), so
// there is nothing to wait for, dismiss or query afterwards. `job-id` is still required
// and checked, so QEMU tooling keeps working.
// Threading: the handler runs on the control server's executor (a strand: the node
// checks and the job's claim on the node happen without a suspension in between);
// creating a file blocks and runs on the graph's pool; qcow2 writes go through the
// node's own asynchronous I/O.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <asio/awaitable.hpp>
#include <cerrno>
#include <system_error>
#include <vector>

#include "blockcore/drivers/raw_node.h"
#include "blockcore/qcow2/image_creator.h"
#include "server/control/arg_reader.h"
#include "server/control/blockdev_options.h"
#include "server/control/command_table.h"
#include "server/control/create_options.h"
#include "server/control/qmp_error.h"

namespace server::control {
namespace {

using blockcore::BlockNode;
using blockcore::BlockNodePtr;
using blockcore::Result;
using blockcore::Status;
using nlohmann::json;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// ---- driver file ----------------------------------------------------------------------

// Writes `len` zero bytes from offset 0 (preallocation=full).
Status write_zeroes_fd(int fd, uint64_t len) {
  std::vector<char> zeroes(1 << 20);
  for (uint64_t off = 0; off < len;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(zeroes.size(), len - off));
    const ssize_t w = ::pwrite(fd, zeroes.data(), n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::error(w < 0 ? errno : EIO, "");
    off += static_cast<uint64_t>(w);
  }
  return Status::ok();
}

// Creates f.filename (which must not exist) with f.size bytes, durably; removes it again
// on failure. Blocking: runs on the graph's pool.
Status create_file(const FileCreateSpec& f) {
  const int fd = ::open(f.filename.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    return Status::error(err, "Could not create '" + f.filename + "': " + errno_text(err));
  }
  auto fail = [&f](int err, const char* what) {
    return Status::error(err, "Could not " + std::string(what) + " '" + f.filename +
                                  "': " + errno_text(err));
  };
  Status st;
  if (::ftruncate(fd, static_cast<off_t>(f.size)) != 0) st = fail(errno, "resize");
  if (st.is_ok() && f.preallocation == "falloc" && f.size > 0) {
    if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(f.size)); err != 0) {
      st = fail(err, "preallocate");
    }
  }
  if (st.is_ok() && f.preallocation == "full") {
    if (Status w = write_zeroes_fd(fd, f.size); !w.is_ok()) st = fail(w.code(), "preallocate");
  }
  if (st.is_ok() && ::fsync(fd) != 0) st = fail(errno, "sync");
  if (::close(fd) != 0 && st.is_ok()) st = fail(errno, "close");
  if (!st.is_ok()) ::unlink(f.filename.c_str());
  return st;
}

// ---- driver qcow2 ---------------------------------------------------------------------

// The job's claim on a node (a declared writing user of the graph) while it writes it:
// nothing can open a writing parent over it or delete it meanwhile.
class NodeHold {
 public:
  NodeHold(blockcore::Graph& graph, std::string node, std::string user)
      : graph_(graph), node_(std::move(node)), user_(std::move(user)) {}
  ~NodeHold() {
    if (held_) (void)graph_.remove_user(node_, user_);
  }
  NodeHold(const NodeHold&) = delete;
  NodeHold& operator=(const NodeHold&) = delete;

  Status take() {
    Status s = graph_.add_user(node_, user_, /*write=*/true);
    if (!s.is_ok()) return generic_error("Node '" + node_ + "' is in use: " + s.message());
    held_ = true;
    return s;
  }

 private:
  blockcore::Graph& graph_;
  std::string node_;
  std::string user_;
  bool held_ = false;
};

std::string not_found(const std::string& name) {
  return "Cannot find device='" + name + "' nor node-name='" + name + "'";
}

// The node blockdev-create writes (`what` names its role in messages): a writable node
// of driver `file` that no parent, export or job uses.
Result<BlockNodePtr> writable_file_node(const std::string& name, const char* what,
                                        CommandContext& ctx) {
  BlockNodePtr node = ctx.graph.find(name);
  if (!node) return generic_error(not_found(name));
  if (node->driver() != "file") {
    return generic_error("The " + std::string(what) + " node '" + name + "' has driver '" +
                         node->driver() + "'; blockdev-create needs a node of driver 'file'");
  }
  if (node->read_only()) return generic_error("Node '" + name + "' is read-only");
  if (auto exports = ctx.exports.using_node(node.get()); !exports.empty()) {
    return generic_error("Node '" + name + "' is in use by export '" +
                         ctx.export_ids->id_of(exports.front()) + "'");
  }
  if (auto parents = ctx.graph.parents_of(node.get()); !parents.empty()) {
    return generic_error("Node '" + name + "' is in use by node '" + parents.front() + "'");
  }
  if (auto uses = ctx.graph.uses_of(name); !uses.empty()) {
    return generic_error("Node '" + name + "' is in use by " + uses.front().user);
  }
  return node;
}

// fleece's `backing` extension: the file name and format a new image's header records
// for an in-graph backing node (raw over a whole file, or qcow2).
Status backing_of_node(const std::string& name, CommandContext& ctx,
                       std::optional<std::string>& file, std::optional<std::string>& format) {
  BlockNodePtr node = ctx.graph.find(name);
  if (!node) return generic_error(not_found(name));
  if (node->driver() != "raw" && node->driver() != "qcow2") {
    return generic_error("Backing node '" + name + "' has driver '" + node->driver() +
                         "'; an image header can name a raw or qcow2 backing node");
  }
  const BlockNode& leaf = protocol_node(*node);
  if (const auto* raw = dynamic_cast<const blockcore::RawNode*>(node.get())) {
    if (raw->offset() != 0 || raw->size() != leaf.size()) {
      return generic_error("Backing node '" + name +
                           "' is a window (offset/size) into its file, which an image header "
                           "cannot name");
    }
  }
  file = leaf.describe();
  format = node->driver();
  return Status::ok();
}

// OK if `node` reads as zeroes everywhere (every extent has the zero flag).
blockcore::Task<Status> check_reads_as_zeroes(BlockNode& node, const std::string& name) {
  for (uint64_t off = 0; off < node.size();) {
    Result<blockcore::ExtentList> extents = co_await node.block_status(off, node.size() - off);
    if (!extents.is_ok()) co_return generic_error(error_desc_of(extents.status()));
    for (const blockcore::Extent& e : *extents) {
      if ((e.flags & blockcore::kExtentZero) == 0) {
        co_return generic_error(
            "The data file node '" + name +
            "' holds data: data-file-raw over existing data needs metadata preallocation, "
            "which fleece does not do (use qemu-img create)");
      }
      off += e.length;
    }
  }
  co_return Status::ok();
}

// Resizes `node` to `size` when it can (a regular file); a device must be large enough.
blockcore::Task<Status> fit_size(BlockNode& node, const std::string& name, uint64_t size) {
  if (node.size() == size) co_return Status::ok();
  if (node.info().can_truncate) {
    Status s = co_await node.truncate(size);
    if (!s.is_ok()) co_return generic_error("Could not resize node '" + name + "': " +
                                            error_desc_of(s));
    co_return Status::ok();
  }
  if (node.size() < size) {
    co_return generic_error("Node '" + name + "' is too small: " + std::to_string(size) +
                            " bytes are needed");
  }
  co_return Status::ok();
}

// Writes the image layout through the node (truncated to the layout's end first, so
// nothing of an older image survives past it) and flushes.
blockcore::Task<Status> write_layout(BlockNode& node, const std::string& name,
                                     const std::vector<blockcore::qcow2::ImageWrite>& layout) {
  const auto& last = layout.back();
  FLEECE_CO_RETURN_IF_ERROR(co_await fit_size(node, name, last.offset + last.bytes.size()));
  const size_t chunk = std::max<size_t>(node.info().max_transfer, 1);
  for (const auto& w : layout) {
    for (size_t done = 0; done < w.bytes.size();) {
      const size_t n = std::min(chunk, w.bytes.size() - done);
      Status s = co_await node.write(w.offset + done,
                                     std::span<const std::byte>(w.bytes.data() + done, n),
                                     blockcore::IoFlags::kNone);
      if (!s.is_ok()) co_return generic_error("Could not write the image to node '" + name +
                                              "': " + error_desc_of(s));
      done += n;
    }
  }
  Status s = co_await node.flush();
  if (!s.is_ok()) co_return generic_error("Could not flush node '" + name + "': " +
                                          error_desc_of(s));
  co_return Status::ok();
}

asio::awaitable<Status> create_qcow2(const Qcow2CreateSpec& q, const std::string& job_id,
                                     CommandContext& ctx) {
  // Every check before the first write.
  Result<BlockNodePtr> file = writable_file_node(q.file, "file", ctx);
  if (!file.is_ok()) co_return file.status();
  std::optional<std::string> backing_file = q.backing_file, backing_format = q.backing_fmt;
  if (q.backing_node) {
    FLEECE_CO_RETURN_IF_ERROR(backing_of_node(*q.backing_node, ctx, backing_file, backing_format));
  }
  BlockNodePtr data;
  std::optional<std::string> data_name;
  if (q.data_file) {
    if (*q.data_file == q.file) {
      co_return generic_error("The data file node cannot be the image's file node");
    }
    Result<BlockNodePtr> d = writable_file_node(*q.data_file, "data-file", ctx);
    if (!d.is_ok()) co_return d.status();
    data = *d;
    data_name = data->describe();
  }
  Result<blockcore::qcow2::CreateOptions> opts =
      qcow2_create_options(q, backing_file, backing_format, data_name);
  if (!opts.is_ok()) co_return opts.status();
  auto layout = blockcore::qcow2::layout_new_image(*opts);
  if (!layout.is_ok()) co_return generic_error(error_desc_of(layout.status()));

  const std::string user = "blockdev-create job '" + job_id + "'";
  NodeHold file_hold(ctx.graph, q.file, user);
  FLEECE_CO_RETURN_IF_ERROR(file_hold.take());
  std::optional<NodeHold> data_hold;
  if (data) {
    FLEECE_CO_RETURN_IF_ERROR(data_hold.emplace(ctx.graph, *q.data_file, user).take());
    if (q.data_file_raw) {
      // The raw data file is the guest disk: it must not hold data the (unpreallocated)
      // L2 tables would hide, and it covers the whole disk, like QEMU makes it.
      FLEECE_CO_RETURN_IF_ERROR(co_await check_reads_as_zeroes(*data, *q.data_file));
      if (data->size() < q.size) {
        FLEECE_CO_RETURN_IF_ERROR(co_await fit_size(*data, *q.data_file, q.size));
      }
    }
  }
  co_return co_await write_layout(**file, q.file, *layout);
}

asio::awaitable<Result<json>> blockdev_create(const json& args, CommandContext& ctx) {
  ArgReader r(args);
  std::string job_id = r.required_string("job-id");
  CreateSpec spec;
  if (auto options = r.optional_object("options")) {
    spec = read_create_options(*options);
  } else if (r.ok()) {
    r.fail(generic_error(missing_parameter("options")));
  }
  if (Status s = r.finish(); !s.is_ok()) co_return s;
  if (!id_wellformed(job_id)) co_return generic_error("Invalid job ID '" + job_id + "'");

  Status s;
  if (spec.driver == "file") {
    const FileCreateSpec& f = spec.file;
    s = co_await ctx.graph.pool().run([&f] { return create_file(f); });
  } else {
    s = co_await create_qcow2(spec.qcow2, job_id, ctx);
  }
  if (!s.is_ok()) co_return generic_error(error_desc_of(s));
  co_return json::object();
}

}  // namespace

void register_create_commands(CommandTable& table) {
  table.add("blockdev-create", blockdev_create);
}

}  // namespace server::control
