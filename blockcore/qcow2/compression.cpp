// zlib (raw deflate) and zstd back ends of compression.h.
#include "blockcore/qcow2/compression.h"

#include <zlib.h>
#include <zstd.h>

#include <memory>
#include <string>

namespace blockcore::qcow2 {
namespace {

constexpr int kDeflateWindowBits = -12;  // raw deflate, 4 KiB window (QEMU's choice)
// Largest zstd window we accept (8 MiB). QEMU compresses one cluster (<= 2 MiB) per frame
// at the default level, which never needs more; level 19 streams need exactly this.
constexpr int kZstdWindowLogMax = 23;

Status deflate_error(const char* what, int ret, const z_stream& s) {
  std::string m = std::string("compressed cluster: ") + what + " (zlib " + std::to_string(ret);
  if (s.msg != nullptr) m += std::string(": ") + s.msg;
  return Status::io_error(m + ")");
}

Status inflate_cluster(std::span<const std::byte> in, std::span<std::byte> out) {
  z_stream s{};
  int ret = inflateInit2(&s, kDeflateWindowBits);
  if (ret != Z_OK) return Status::no_memory("compressed cluster: inflateInit2 failed");
  s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  ret = inflate(&s, Z_FINISH);
  Status st;
  // Z_BUF_ERROR with a full output: the stream goes on past one cluster or the input
  // (a whole number of sectors) ends mid-stream after the cluster is complete.
  if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && s.avail_out == 0) {
    st = Status::ok();
  } else if (ret == Z_STREAM_END || ret == Z_BUF_ERROR) {
    st = Status::io_error("compressed cluster: deflate data ends after " +
                          std::to_string(out.size() - s.avail_out) + " of " +
                          std::to_string(out.size()) + " bytes");
  } else {
    st = deflate_error("corrupt deflate data", ret, s);
  }
  inflateEnd(&s);
  return st;
}

Result<size_t> deflate_cluster(std::span<const std::byte> in, std::span<std::byte> out) {
  z_stream s{};
  int ret = deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kDeflateWindowBits, 9,
                         Z_DEFAULT_STRATEGY);
  if (ret != Z_OK) return Status::no_memory("compress cluster: deflateInit2 failed");
  s.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  ret = deflate(&s, Z_FINISH);
  const size_t produced = out.size() - s.avail_out;
  deflateEnd(&s);
  if (ret == Z_STREAM_END) return produced;
  if (ret == Z_OK || ret == Z_BUF_ERROR) {
    return Status::no_space("compress cluster: data does not shrink");
  }
  return Status::io_error("compress cluster: deflate failed (zlib " + std::to_string(ret) + ")");
}

struct DctxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};
struct CctxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// One or more frames, possibly without a content size; stops once out is full.
Status zstd_decompress(std::span<const std::byte> in, std::span<std::byte> out) {
  std::unique_ptr<ZSTD_DCtx, DctxFree> ctx(ZSTD_createDCtx());
  if (!ctx) return Status::no_memory("compressed cluster: ZSTD_createDCtx failed");
  // A hostile frame header must not make us allocate zstd's default 128 MiB window.
  (void)ZSTD_DCtx_setParameter(ctx.get(), ZSTD_d_windowLogMax, kZstdWindowLogMax);
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  while (output.pos < output.size) {
    const size_t in_before = input.pos;
    const size_t out_before = output.pos;
    const size_t ret = ZSTD_decompressStream(ctx.get(), &output, &input);
    if (ZSTD_isError(ret)) {
      return Status::io_error(std::string("compressed cluster: corrupt zstd data (") +
                              ZSTD_getErrorName(ret) + ")");
    }
    if (output.pos == output.size) break;
    if (input.pos == input.size || (input.pos == in_before && output.pos == out_before)) {
      return Status::io_error("compressed cluster: zstd data ends after " +
                              std::to_string(output.pos) + " of " +
                              std::to_string(out.size()) + " bytes");
    }
  }
  return Status::ok();
}

Result<size_t> zstd_compress(std::span<const std::byte> in, std::span<std::byte> out) {
  std::unique_ptr<ZSTD_CCtx, CctxFree> ctx(ZSTD_createCCtx());
  if (!ctx) return Status::no_memory("compress cluster: ZSTD_createCCtx failed");
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  // Streaming like QEMU; loop while zstd still has bytes to flush into the room left.
  for (;;) {
    const size_t ret = ZSTD_compressStream2(ctx.get(), &output, &input, ZSTD_e_end);
    if (ZSTD_isError(ret)) {
      return Status::io_error(std::string("compress cluster: zstd failed (") +
                              ZSTD_getErrorName(ret) + ")");
    }
    if (ret == 0) break;
    if (output.pos == output.size) {
      return Status::no_space("compress cluster: data does not shrink");
    }
  }
  return output.pos;
}

}  // namespace

Status decompress_cluster(CompressionType type, std::span<const std::byte> in,
                          std::span<std::byte> out) {
  if (in.size() > UINT32_MAX || out.size() > UINT32_MAX) {
    return Status::invalid("compressed cluster: buffer larger than 4 GiB");
  }
  switch (type) {
    case CompressionType::kDeflate: return inflate_cluster(in, out);
    case CompressionType::kZstd: return zstd_decompress(in, out);
  }
  return Status::not_supported("compressed cluster: unknown compression type " +
                               std::to_string(static_cast<int>(type)));
}

Result<size_t> compress_cluster(CompressionType type, std::span<const std::byte> in,
                                std::span<std::byte> out) {
  if (in.size() > UINT32_MAX || out.size() > UINT32_MAX) {
    return Status::invalid("compress cluster: buffer larger than 4 GiB");
  }
  Result<size_t> r = Status::invalid("compress cluster: unknown compression type " +
                                     std::to_string(static_cast<int>(type)));
  switch (type) {
    case CompressionType::kDeflate: r = deflate_cluster(in, out); break;
    case CompressionType::kZstd: r = zstd_compress(in, out); break;
  }
  if (r && *r >= in.size()) return Status::no_space("compress cluster: data does not shrink");
  return r;
}

}  // namespace blockcore::qcow2
