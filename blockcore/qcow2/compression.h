// Compressed qcow2 clusters: decompress one cluster read from the image (deflate as a
// raw stream without zlib header, or zstd frames), and compress one for writing.
// Input comes from disk and may be hostile: corrupt data fails with EIO, never reads or
// writes outside the given spans.
// Threading: pure functions; each call uses its own zlib/zstd context.
#pragma once

#include <cstddef>
#include <span>

#include "blockcore/base/result.h"
#include "blockcore/qcow2/qcow2_format.h"

namespace blockcore::qcow2 {

// Fills exactly out.size() bytes (one cluster) from the compressed data in `in`. `in` is
// what the L2 entry's sector range holds, so bytes after the end of the stream are
// ignored. EIO when the data is corrupt or ends before out is full (or a zstd frame
// asks for a window over 8 MiB); ENOTSUP for an unknown type.
Status decompress_cluster(CompressionType type, std::span<const std::byte> in,
                          std::span<std::byte> out);

// Compresses `in` (one cluster) into `out`; returns the compressed size. ENOSPC when the
// result does not fit in out or is not smaller than the input (store it uncompressed).
// The deflate stream is raw with a 4 KiB window (windowBits -12), as QEMU writes it.
Result<size_t> compress_cluster(CompressionType type, std::span<const std::byte> in,
                                std::span<std::byte> out);

}  // namespace blockcore::qcow2
