// blockdev-create arguments (QEMU's BlockdevCreateOptions, for the drivers fleece can
// create) -> typed specs, and the value checks QEMU's drivers make, with their wording.
//   file:  BlockdevCreateOptionsFile {filename, size, preallocation, nocow,
//          extent-size-hint}
//   qcow2: BlockdevCreateOptionsQcow2 {file, data-file, data-file-raw, extended-l2, size,
//          version, backing-file, backing-fmt, cluster-size, preallocation,
//          lazy-refcounts, refcount-bits, compression-type} plus fleece's own `backing`
//          (an in-graph node whose file name and format go into the header).
// Reading records type errors in the ArgReader (checked by the caller's finish());
// qcow2_create_options() then turns the values into blockcore::qcow2::CreateOptions or
// a failed Status whose message is the QMP desc. Node lookups are the caller's job.
// Threading: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "blockcore/base/result.h"
#include "blockcore/qcow2/image_creator.h"
#include "server/control/arg_reader.h"

namespace server::control {

struct FileCreateSpec {
  std::string filename;
  uint64_t size = 0;
  std::string preallocation = "off";  // off | falloc | full
};

struct Qcow2CreateSpec {
  std::string file;                          // node-name of the `file` node to format
  std::optional<std::string> data_file;      // node-name of the external data file
  bool data_file_raw = false;
  bool extended_l2 = false;
  uint64_t size = 0;
  std::optional<std::string> version;        // "v2" | "v3" (default v3)
  std::optional<std::string> backing_file;   // recorded as given
  std::optional<std::string> backing_fmt;
  std::optional<std::string> backing_node;   // fleece extension: an in-graph node
  std::optional<uint64_t> cluster_size;      // default 64 KiB
  bool lazy_refcounts = false;
  std::optional<uint64_t> refcount_bits;     // default 16
  std::optional<std::string> compression_type;  // "zlib" | "zstd"
};

struct CreateSpec {
  std::string driver;  // "file" or "qcow2"; the member of that name is filled in
  FileCreateSpec file;
  Qcow2CreateSpec qcow2;
};

// Reads the members of the `options` object of blockdev-create.
CreateSpec read_create_options(ArgReader& options);

// The qcow2 image options for `spec`, with backing_file/backing_format/data_file given
// by the caller after resolving nodes (`backing_file`, `backing_format`: from
// backing-file/backing-fmt or the backing node; `data_file_name`: the data-file node's
// file name). Fails with QEMU's messages for values it refuses.
blockcore::Result<blockcore::qcow2::CreateOptions> qcow2_create_options(
    const Qcow2CreateSpec& spec, const std::optional<std::string>& backing_file,
    const std::optional<std::string>& backing_format,
    const std::optional<std::string>& data_file_name);

}  // namespace server::control
