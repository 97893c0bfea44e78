// The internal snapshot table: tables written by `qemu-img snapshot -c` decode to the
// right entries and encode back byte for byte; hostile tables fail with EINVAL.
#include "blockcore/qcow2/snapshot_table.h"

#include <gtest/gtest.h>

#include <vector>

#include "blockcore/base/big_endian.h"
#include "qcow2_test_util.h"
#include "testing/temp_dir.h"

namespace blockcore::qcow2 {
namespace {

using fleece_test::shell;
using fleece_test::sq;

Geometry geometry64k() {
  Header h;
  h.size = 1 << 30;
  return Geometry::from(h);
}

// One entry: fixed part, `extra` bytes of extra data (disk size at 8..15), id, name.
std::vector<std::byte> entry(uint64_t l1_off, uint32_t l1_size, const std::string& id,
                             const std::string& name, uint32_t extra, uint64_t disk_size) {
  std::vector<std::byte> e(40 + extra + id.size() + name.size());
  store_be64(e.data(), l1_off);
  store_be32(e.data() + 8, l1_size);
  store_be16(e.data() + 12, static_cast<uint16_t>(id.size()));
  store_be16(e.data() + 14, static_cast<uint16_t>(name.size()));
  store_be32(e.data() + 36, extra);
  if (extra >= 16) store_be64(e.data() + 48, disk_size);
  std::memcpy(e.data() + 40 + extra, id.data(), id.size());
  std::memcpy(e.data() + 40 + extra + id.size(), name.data(), name.size());
  return e;
}

TEST(Qcow2SnapshotTableTest, ParsesAndSerializes) {
  std::vector<std::byte> table = entry(0x50000, 2, "1", "first", 24, 1 << 30);
  table.resize((table.size() + 7) & ~size_t{7});
  const auto second = entry(0x70000, 3, "22", "second snapshot", 0, 0);
  table.insert(table.end(), second.begin(), second.end());
  table.resize((table.size() + 7) & ~size_t{7});
  table.resize(table.size() + 100, std::byte{0xee});  // read past the table: ignored
  auto r = parse_snapshot_table(table, 2, geometry64k());
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].l1_table_offset, 0x50000u);
  EXPECT_EQ((*r)[0].l1_size, 2u);
  EXPECT_EQ((*r)[0].id, "1");
  EXPECT_EQ((*r)[0].name, "first");
  EXPECT_EQ((*r)[0].disk_size, 1u << 30);
  EXPECT_EQ((*r)[1].id, "22");
  EXPECT_EQ((*r)[1].name, "second snapshot");
  EXPECT_EQ((*r)[1].disk_size, 0u);
  const auto out = serialize_snapshot_table(*r);
  EXPECT_EQ(out.size(), snapshot_table_bytes(*r));
  EXPECT_TRUE(std::equal(out.begin(), out.end(), table.begin()));
  EXPECT_TRUE(parse_snapshot_table({}, 0, geometry64k()).is_ok());
}

TEST(Qcow2SnapshotTableTest, RejectsHostileTables) {
  const Geometry g = geometry64k();
  auto expect_fail = [&](const std::vector<std::byte>& t, uint32_t n, const std::string& what) {
    auto r = parse_snapshot_table(t, n, g);
    ASSERT_FALSE(r.is_ok()) << what;
    EXPECT_EQ(r.status().code(), EINVAL);
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
  };
  const auto good = entry(0x50000, 2, "1", "a", 16, 1);
  expect_fail(good, 2, "entry 1: runs past the end");
  expect_fail(std::vector<std::byte>(good.begin(), good.end() - 1), 1, "run past the end");
  expect_fail(entry(0x50200, 2, "1", "a", 16, 1), 1, "not cluster aligned");
  expect_fail(entry(0, 2, "1", "a", 16, 1), 1, "offset 0");
  expect_fail(entry(0x50000, 0x800000, "1", "a", 16, 1), 1, "too large");
  expect_fail(entry(0x50000, 2, "1", "a", 2000, 1), 1, "extra data of 2000");
  expect_fail(good, 70000, "more than");
  EXPECT_GE(max_snapshot_table_bytes(1), 40u + 1024 + 2 * 65535);
  EXPECT_EQ(max_snapshot_table_bytes(65536), kMaxSnapshotTableBytes);
}

TEST(Qcow2SnapshotTableTest, ReadsQemuSnapshots) {
  if (!fleece_test::have_qemu_tools()) GTEST_SKIP() << "qemu-img not installed";
  fleece_test::TempDir dir;
  const std::string img = dir.file("s.qcow2");
  auto r = shell("qemu-img create -f qcow2 " + sq(img) + " 100M && qemu-io -c 'write 0 1M' " +
                 sq(img) + " && qemu-img snapshot -c before " + sq(img) +
                 " && qemu-img snapshot -c 'second one' " + sq(img));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto file = fleece_test::read_whole_file(img);
  auto h = parse_header(file);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  ASSERT_EQ(h->nb_snapshots, 2u);
  const Geometry g = Geometry::from(*h);
  ASSERT_LT(h->snapshots_offset, file.size());
  const uint64_t len = std::min<uint64_t>(max_snapshot_table_bytes(h->nb_snapshots),
                                          file.size() - h->snapshots_offset);
  const auto table = std::span(file).subspan(h->snapshots_offset, len);
  auto s = parse_snapshot_table(table, h->nb_snapshots, g);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].name, "before");
  EXPECT_EQ((*s)[0].id, "1");
  EXPECT_EQ((*s)[1].name, "second one");
  EXPECT_EQ((*s)[1].id, "2");
  for (const SnapshotEntry& e : *s) {
    EXPECT_EQ(e.disk_size, 100u << 20);
    EXPECT_EQ(e.l1_size, h->l1_size);
    EXPECT_NE(e.l1_table_offset, 0u);
  }
  // QEMU does not pad the last entry (here the file ends right after it).
  const auto out = serialize_snapshot_table(*s);
  const uint64_t unpadded = out.size() - (out.size() - ((*s)[0].raw.size() + 7) / 8 * 8 -
                                          (*s)[1].raw.size());
  ASSERT_LE(unpadded, table.size());
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + static_cast<long>(unpadded), table.begin()));
  for (size_t i = unpadded; i < out.size(); ++i) EXPECT_EQ(out[i], std::byte{0});
}

}  // namespace
}  // namespace blockcore::qcow2
