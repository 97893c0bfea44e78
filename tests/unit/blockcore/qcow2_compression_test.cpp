// Compressed clusters: round trips through both codecs, clusters written by
// `qemu-img convert -c` (deflate and zstd) decompressed and compared with qemu-img's own
// raw conversion, and corrupt input failing with EIO.
#include "blockcore/qcow2/compression.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <random>
#include <string>
#include <vector>

#include "blockcore/base/big_endian.h"
#include "blockcore/qcow2/cluster_entry.h"
#include "blockcore/qcow2/geometry.h"
#include "qcow2_test_util.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

using fleece_test::read_whole_file;
using fleece_test::shell;
using fleece_test::sq;

// Compressible data with some variety: text lines, runs, a little noise.
std::vector<std::byte> text_data(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out;
  out.reserve(n);
  while (out.size() < n) {
    std::string line = "block " + std::to_string(rng() % 1000) + " says hello " +
                       std::string(rng() % 40, static_cast<char>('a' + rng() % 26)) + "\n";
    for (char c : line) out.push_back(static_cast<std::byte>(c));
  }
  out.resize(n);
  return out;
}

std::vector<std::byte> random_data(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

class Qcow2CompressionTest : public ::testing::TestWithParam<CompressionType> {};

TEST_P(Qcow2CompressionTest, RoundTrip) {
  for (size_t cs : {512u, 4096u, 65536u, 2u << 20}) {
    const auto in = text_data(cs, cs);
    std::vector<std::byte> comp(cs - 1);
    auto n = compress_cluster(GetParam(), in, comp);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    ASSERT_LT(*n, cs);
    std::vector<std::byte> out(cs);
    // Followed by garbage, as when read in whole sectors.
    std::vector<std::byte> sectors(comp.begin(), comp.begin() + static_cast<long>(*n));
    sectors.resize(sectors.size() + 300, std::byte{0x5c});
    Status st = decompress_cluster(GetParam(), sectors, out);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    EXPECT_EQ(out, in);
  }
}

TEST_P(Qcow2CompressionTest, IncompressibleIsEnospc) {
  const auto in = random_data(65536, 3);
  std::vector<std::byte> comp(65535);
  auto n = compress_cluster(GetParam(), in, comp);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), ENOSPC);
  std::vector<std::byte> tiny(10);
  n = compress_cluster(GetParam(), text_data(65536, 1), tiny);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), ENOSPC);
}

TEST_P(Qcow2CompressionTest, CorruptInputIsEio) {
  const auto in = text_data(65536, 9);
  std::vector<std::byte> comp(65535);
  auto n = compress_cluster(GetParam(), in, comp);
  ASSERT_TRUE(n.is_ok());
  comp.resize(*n);
  std::vector<std::byte> out(65536);
  // Truncated: the stream ends before the cluster is full.
  Status st = decompress_cluster(GetParam(), std::span(comp).first(comp.size() / 2), out);
  EXPECT_EQ(st.code(), EIO) << st.to_string();
  EXPECT_FALSE(st.message().empty());
  // Empty input and pure garbage.
  EXPECT_EQ(decompress_cluster(GetParam(), {}, out).code(), EIO);
  EXPECT_EQ(decompress_cluster(GetParam(), random_data(4096, 5), out).code(), EIO);
  // Output larger than what the stream holds.
  std::vector<std::byte> big(131072);
  EXPECT_EQ(decompress_cluster(GetParam(), comp, big).code(), EIO);
  // Random byte flips never crash; most fail, none overruns (ASan).
  std::mt19937_64 rng(11);
  int failed = 0;
  for (int i = 0; i < 300; ++i) {
    auto bad = comp;
    for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = static_cast<std::byte>(rng());
    Status s = decompress_cluster(GetParam(), bad, out);
    if (!s.is_ok()) {
      EXPECT_EQ(s.code(), EIO);
      ++failed;
    }
  }
  EXPECT_GT(failed, 0);
}

INSTANTIATE_TEST_SUITE_P(Codecs, Qcow2CompressionTest,
                         ::testing::Values(CompressionType::kDeflate, CompressionType::kZstd),
                         [](const auto& p) {
                           return p.param == CompressionType::kZstd ? "Zstd" : "Deflate";
                         });

TEST(Qcow2CompressionZstdTest, SeveralFramesWithoutContentSize) {
  const auto in = text_data(65536, 21);
  std::vector<std::byte> stream;
  for (size_t half = 0; half < 2; ++half) {
    std::vector<std::byte> frame(65536);
    // Frames from the streaming API carry no content size unless pledged; build one
    // frame per half.
    auto n = compress_cluster(CompressionType::kZstd,
                              std::span(in).subspan(half * 32768, 32768), frame);
    ASSERT_TRUE(n.is_ok()) << n.status().to_string();
    stream.insert(stream.end(), frame.begin(), frame.begin() + static_cast<long>(*n));
  }
  std::vector<std::byte> out(65536);
  Status st = decompress_cluster(CompressionType::kZstd, stream, out);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(out, in);
}

// A frame that declares a 128 MiB window (streamed without a size) is refused with EIO
// instead of making the decoder allocate the window.
TEST(Qcow2CompressionZstdTest, HugeWindowIsRefused) {
  const auto in = text_data(65536, 5);
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ASSERT_NE(c, nullptr);
  ASSERT_FALSE(ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 27)));
  std::vector<std::byte> frame(ZSTD_compressBound(in.size()));
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  ZSTD_outBuffer output{frame.data(), frame.size(), 0};
  ASSERT_FALSE(ZSTD_isError(ZSTD_compressStream2(c, &output, &input, ZSTD_e_continue)));
  size_t left;
  do {
    left = ZSTD_compressStream2(c, &output, &input, ZSTD_e_end);
    ASSERT_FALSE(ZSTD_isError(left));
  } while (left != 0);
  ZSTD_freeCCtx(c);
  frame.resize(output.pos);
  std::vector<std::byte> out(65536);
  Status st = decompress_cluster(CompressionType::kZstd, frame, out);
  EXPECT_EQ(st.code(), EIO) << st.to_string();
}

// ---- clusters written by qemu-img convert -c ----

struct QemuCase {
  const char* options;
  uint32_t cluster_size;
  CompressionType type;
};

class Qcow2CompressionQemuTest : public ::testing::TestWithParam<QemuCase> {};

TEST_P(Qcow2CompressionQemuTest, DecompressesQemuClusters) {
  if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  const QemuCase c = GetParam();
  fleece_test::TempDir dir;
  const std::string src = dir.file("src.raw");
  const std::string img = dir.file("c.qcow2");
  const std::string back = dir.file("back.raw");
  // 4 MiB: compressible clusters, a few random (stored uncompressed) and zero ones.
  const size_t total = 4u << 20;
  std::vector<std::byte> data(total);
  for (size_t off = 0; off < total; off += 65536) {
    const size_t kind = (off / 65536) % 8;
    std::vector<std::byte> chunk = kind == 3   ? random_data(65536, off)
                                   : kind == 5 ? std::vector<std::byte>(65536)
                                               : text_data(65536, off);
    std::copy(chunk.begin(), chunk.end(), data.begin() + static_cast<long>(off));
  }
  {
    std::FILE* f = std::fopen(src.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
    std::fclose(f);
  }
  auto r = shell("qemu-img convert -c -f raw -O qcow2 -o " + std::string(c.options) + " " +
                 sq(src) + " " + sq(img) + " && qemu-img convert -O raw " + sq(img) + " " +
                 sq(back));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto file = read_whole_file(img);
  const auto raw = read_whole_file(back);
  ASSERT_EQ(raw, data);

  auto h = parse_header(file);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  EXPECT_EQ(h->compression_type, c.type);
  const Geometry g = Geometry::from(*h);
  ASSERT_EQ(g.cluster_size, c.cluster_size);
  int compressed = 0;
  std::vector<std::byte> out(g.cluster_size);
  for (uint64_t i = 0; i < h->l1_size; ++i) {
    const uint64_t l2_off = load_be64(file.data() + h->l1_table_offset + i * 8) & kOffsetMask;
    if (l2_off == 0) continue;
    ASSERT_LE(l2_off + g.cluster_size, file.size());
    for (uint64_t j = 0; j < g.l2_entries; ++j) {
      const std::byte* e = file.data() + l2_off + j * g.l2_entry_bytes;
      L2Entry entry{load_be64(e), g.extended_l2 ? load_be64(e + 8) : 0};
      if (!entry.compressed()) continue;
      ASSERT_EQ(entry.type(g, 0), SubclusterType::kCompressed);
      const uint64_t guest = (i * g.l2_entries + j) * g.cluster_size;
      const uint64_t off = entry.compressed_offset(g);
      ASSERT_LT(off, file.size());
      const uint64_t len = std::min(entry.compressed_length(g), file.size() - off);
      Status st = decompress_cluster(h->compression_type, std::span(file).subspan(off, len), out);
      ASSERT_TRUE(st.is_ok()) << "guest offset " << guest << ": " << st.to_string();
      ASSERT_TRUE(std::equal(out.begin(), out.end(), raw.begin() + static_cast<long>(guest)))
          << "guest offset " << guest;
      ++compressed;
      // Damaged data fails with EIO.
      auto bad = std::vector<std::byte>(file.begin() + static_cast<long>(off),
                                        file.begin() + static_cast<long>(off + len));
      for (size_t k = 0; k < bad.size(); k += 7) bad[k] = ~bad[k];
      Status bst = decompress_cluster(h->compression_type, bad, out);
      EXPECT_EQ(bst.code(), EIO) << bst.to_string();
    }
  }
  EXPECT_GE(compressed, static_cast<int>(total / g.cluster_size / 2));
}

INSTANTIATE_TEST_SUITE_P(
    Images, Qcow2CompressionQemuTest,
    ::testing::Values(QemuCase{"cluster_size=64k", 65536, CompressionType::kDeflate},
                      QemuCase{"cluster_size=4k", 4096, CompressionType::kDeflate},
                      QemuCase{"cluster_size=2M", 2u << 20, CompressionType::kDeflate},
                      QemuCase{"compression_type=zstd", 65536, CompressionType::kZstd},
                      QemuCase{"compression_type=zstd,cluster_size=4k", 4096,
                               CompressionType::kZstd},
                      QemuCase{"compression_type=zstd,extended_l2=on", 65536,
                               CompressionType::kZstd}));

}  // namespace
}  // namespace blockcore::qcow2
