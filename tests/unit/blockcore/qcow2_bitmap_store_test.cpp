// Persistent bitmaps in qcow2 images, checked the way a user meets them: bitmaps made
// and recorded by qemu-img/qemu-io load with their exact content and flags; bitmaps
// fleeced creates and records through Qcow2Node writes read back identically with
// qemu-img info, qemu-img bitmap --merge and qemu-nbd -B + nbdinfo; removal, clearing,
// read-only opens, v2 images and concurrent writers; qemu-img check clean throughout.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include "blockcore/qcow2/bitmap_directory.h"
#include "blockcore/qcow2/qcow2_bitmap_store.h"
#include "qcow2_bitmap_test_util.h"

namespace blockcore::qcow2::bitmap_test {
namespace {

using node_test::create_image;
using node_test::expect_check_clean;
using node_test::Fixture;

constexpr uint64_t kMiB = 1ull << 20;

class BitmapStoreTest : public QemuBitmapTest {
 protected:
  Fixture f;
};

TEST_F(BitmapStoreTest, QemuBitmapsLoadWithExactContentAndFlags) {
  const std::string img = f.path("q.qcow2");
  create_image(img, 64 * kMiB);
  run("qemu-img bitmap --add " + sq(img) + " b0");
  run("qemu-img bitmap --add -g 512 " + sq(img) + " fine");
  run("qemu-img bitmap --add --disable " + sq(img) + " off");
  // qemu-io records its writes into the enabled persistent bitmaps.
  run("qemu-io -f qcow2 -c 'write 0 64k' -c 'write 1M 4k' -c 'write 10485760 1k' "
      "-c 'write 66584576 512k' " + sq(img));
  // What QEMU serves (while fleeced has the image read-write, QEMU may not open it).
  const Ranges qemu_b0 = qemu_dirty_ranges(img, "b0");
  const Ranges qemu_fine = qemu_dirty_ranges(img, "fine");
  for (bool read_only : {true, false}) {
    SCOPED_TRACE(read_only ? "read-only" : "read-write");
    BlockNodePtr n = f.open(img, read_only);
    ASSERT_TRUE(n);
    auto list = n->bitmaps().list();
    ASSERT_EQ(list.size(), 3u);
    for (const DirtyBitmapPtr& b : list) {
      SCOPED_TRACE(b->name());
      EXPECT_TRUE(b->persistent());
      EXPECT_FALSE(b->inconsistent());
      EXPECT_EQ(b->read_only(), read_only);
      EXPECT_EQ(b->durable(), !read_only);
    }
    auto b0 = n->bitmaps().find("b0");
    auto fine = n->bitmaps().find("fine");
    auto off = n->bitmaps().find("off");
    EXPECT_TRUE(b0->enabled());
    EXPECT_TRUE(fine->enabled());
    EXPECT_FALSE(off->enabled());
    EXPECT_EQ(b0->granularity(), 65536u);
    EXPECT_EQ(fine->granularity(), 512u);
    EXPECT_EQ(dirty_ranges(*b0), qemu_b0);
    EXPECT_EQ(dirty_ranges(*fine), qemu_fine);
    EXPECT_EQ(dirty_ranges(*b0), granules_of({{0, 65536}, {kMiB, 4096}, {10 * kMiB, 1024},
                                              {64 * kMiB - 512 * 1024, 512 * 1024}},
                                             65536, 64 * kMiB));
    EXPECT_EQ(dirty_ranges(*fine), granules_of({{0, 65536}, {kMiB, 4096}, {10 * kMiB, 1024},
                                                {64 * kMiB - 512 * 1024, 512 * 1024}},
                                               512, 64 * kMiB));
    EXPECT_TRUE(dirty_ranges(*off).empty());
    if (!read_only) {
      // While fleeced has the image, QEMU sees every bitmap in use.
      for (const QemuBitmapInfo& i : qemu_bitmaps(img, /*force_share=*/true)) {
        EXPECT_TRUE(i.has("in-use")) << i.name;
      }
    }
    n.reset();
    auto infos = qemu_bitmaps(img);
    ASSERT_EQ(infos.size(), 3u);
    EXPECT_EQ(find_info(infos, "b0")->flags, std::vector<std::string>{"auto"});
    EXPECT_EQ(find_info(infos, "fine")->granularity, 512u);
    EXPECT_TRUE(find_info(infos, "off")->flags.empty());
    EXPECT_EQ(qemu_dirty_ranges(img, "fine"), granules_of({{0, 65536}, {kMiB, 4096}, {10 * kMiB, 1024},
                                                           {64 * kMiB - 512 * 1024, 512 * 1024}},
                                                          512, 64 * kMiB));
    expect_check_clean(img);
  }
}

TEST_F(BitmapStoreTest, AllOnesTableEntryLoadsAsAllDirty) {
  const std::string img = f.path("ones.qcow2");
  create_image(img, 64 * kMiB, "cluster_size=4096");
  run("qemu-img bitmap --add -g 512 " + sq(img) + " b");
  // 64 MiB at 512 B = 131072 bits = 16 KiB of data: 4 table entries; the second says
  // "all ones" (bits 32768..65535: bytes 16 MiB..32 MiB of the disk).
  auto h = parse_header(fleece_test::read_file(img, 0, 4096));
  ASSERT_TRUE(h.is_ok() && h->bitmaps);
  const uint64_t table = node_test::read_be64_at(img, h->bitmaps->directory_offset);
  node_test::write_be64_at(img, table + 8, kBitmapTableAllOnes);
  BlockNodePtr n = f.open(img, true);
  ASSERT_TRUE(n);
  EXPECT_EQ(dirty_ranges(*n->bitmaps().find("b")), (Ranges{{16 * kMiB, 16 * kMiB}}));
  EXPECT_EQ(qemu_dirty_ranges(img, "b"), (Ranges{{16 * kMiB, 16 * kMiB}}));
}

TEST_F(BitmapStoreTest, FleecedBitmapsReadIdenticallyByQemu) {
  const std::string img = f.path("f.qcow2");
  const uint64_t size = 100 * kMiB + 4096;  // a partial last granule
  create_image(img, size);
  std::vector<std::pair<uint64_t, uint64_t>> writes = {
      {0, 4096}, {65536 * 3 + 100, 70000}, {50 * kMiB, kMiB}, {size - 512, 512}};
  {
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(n);
    auto nightly = add_bitmap(*n, "nightly");
    auto fine = add_bitmap(*n, "fine", 512);
    auto off = add_bitmap(*n, "off", 1u << 20, true, /*disabled=*/true);
    auto mem = add_bitmap(*n, "mem", 65536, /*persistent=*/false);
    ASSERT_TRUE(nightly && fine && off && mem);
    EXPECT_TRUE(nightly->durable());
    EXPECT_TRUE(off->durable());  // consistent and stored: durable, just not recording
    EXPECT_FALSE(mem->durable());
    for (const auto& [o, l] : writes) {
      auto data = node_test::pattern(l, static_cast<uint32_t>(o));
      ASSERT_TRUE(node_test::write(*n, o, data).is_ok());
    }
    ASSERT_TRUE(node_test::zero(*n, 70 * kMiB, 3 * 65536).is_ok());
    ASSERT_TRUE(node_test::discard(*n, 80 * kMiB, 2 * kMiB).is_ok());
    writes.push_back({70 * kMiB, 3 * 65536});
    writes.push_back({80 * kMiB, 2 * kMiB});
    EXPECT_EQ(dirty_ranges(*nightly), granules_of(writes, 65536, size));
    EXPECT_EQ(dirty_ranges(*fine), granules_of(writes, 512, size));
    EXPECT_TRUE(dirty_ranges(*off).empty());
    // QEMU never trusts the copies while fleeced writes.
    for (const QemuBitmapInfo& i : qemu_bitmaps(img, true)) EXPECT_TRUE(i.has("in-use")) << i.name;
  }
  auto infos = qemu_bitmaps(img);
  ASSERT_EQ(infos.size(), 3u);  // "mem" was never persistent
  EXPECT_EQ(find_info(infos, "nightly")->flags, std::vector<std::string>{"auto"});
  EXPECT_EQ(find_info(infos, "nightly")->granularity, 65536u);
  EXPECT_EQ(find_info(infos, "fine")->granularity, 512u);
  EXPECT_TRUE(find_info(infos, "off")->flags.empty());
  EXPECT_EQ(find_info(infos, "off")->granularity, 1u << 20);
  EXPECT_EQ(qemu_dirty_ranges(img, "nightly"), granules_of(writes, 65536, size));
  EXPECT_EQ(qemu_dirty_ranges(img, "fine"), granules_of(writes, 512, size));
  EXPECT_TRUE(qemu_dirty_ranges(img, "off").empty());
  expect_check_clean(img);
  // qemu-img bitmap --merge reads fleece's bitmap as QEMU's own.
  run("qemu-img bitmap --add --merge nightly " + sq(img) + " merged");
  EXPECT_EQ(qemu_dirty_ranges(img, "merged"), granules_of(writes, 65536, size));
  expect_check_clean(img);
  // The header is clean: no dirty bit, no fleece record or bit.
  auto h = parse_header(fleece_test::read_file(img, 0, 65536));
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(h->incompatible_features & kIncompatDirty, 0u);
  EXPECT_EQ(h->autoclear_features, kAutoclearBitmaps);
  EXPECT_FALSE(h->fleece_bitmaps);
}

TEST_F(BitmapStoreTest, ReopenKeepsContentAndKeepsRecording) {
  const std::string img = f.path("r.qcow2");
  create_image(img, 32 * kMiB);
  {
    BlockNodePtr n = f.open(img);
    add_bitmap(*n, "b");
    ASSERT_TRUE(node_test::write(*n, kMiB, node_test::pattern(4096, 1)).is_ok());
  }
  {
    BlockNodePtr n = f.open(img);
    auto b = n->bitmaps().find("b");
    ASSERT_TRUE(b);
    EXPECT_FALSE(b->inconsistent());
    EXPECT_TRUE(b->durable());
    EXPECT_EQ(dirty_ranges(*b), (Ranges{{kMiB, 65536}}));
    ASSERT_TRUE(node_test::write(*n, 20 * kMiB, node_test::pattern(100, 2)).is_ok());
    // Disabling is stored at once; a write afterwards is not recorded.
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().set_enabled("b", false)).is_ok());
    EXPECT_EQ(find_info(qemu_bitmaps(img, true), "b")->flags, std::vector<std::string>{"in-use"});
    ASSERT_TRUE(node_test::write(*n, 30 * kMiB, node_test::pattern(100, 3)).is_ok());
  }
  EXPECT_EQ(qemu_dirty_ranges(img, "b"), (Ranges{{kMiB, 65536}, {20 * kMiB, 65536}}));
  EXPECT_TRUE(find_info(qemu_bitmaps(img), "b")->flags.empty());
  expect_check_clean(img);
}

TEST_F(BitmapStoreTest, ClearAndRemove) {
  const std::string img = f.path("c.qcow2");
  create_image(img, 32 * kMiB);
  run("qemu-img bitmap --add " + sq(img) + " q");
  {
    BlockNodePtr n = f.open(img);
    add_bitmap(*n, "a");
    add_bitmap(*n, "b");
    ASSERT_TRUE(node_test::write(*n, 0, node_test::pattern(4096, 1)).is_ok());
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().clear("a")).is_ok());
    EXPECT_TRUE(dirty_ranges(*n->bitmaps().find("a")).empty());
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().remove("q")).is_ok());
    EXPECT_EQ(qemu_bitmaps(img, true).size(), 2u);
    ASSERT_TRUE(node_test::write(*n, 5 * kMiB, node_test::pattern(4096, 2)).is_ok());
  }
  EXPECT_EQ(qemu_dirty_ranges(img, "a"), (Ranges{{5 * kMiB, 65536}}));
  EXPECT_EQ(qemu_dirty_ranges(img, "b"), (Ranges{{0, 65536}, {5 * kMiB, 65536}}));
  expect_check_clean(img);
  {
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().remove("a")).is_ok());
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().remove("b")).is_ok());
    EXPECT_TRUE(n->bitmaps().list().empty());
  }
  EXPECT_TRUE(qemu_bitmaps(img).empty());
  expect_check_clean(img);
  // The last removal dropped the extension and both autoclear bits.
  auto h = parse_header(fleece_test::read_file(img, 0, 65536));
  ASSERT_TRUE(h.is_ok());
  EXPECT_FALSE(h->bitmaps);
  EXPECT_EQ(h->autoclear_features, 0u);
  EXPECT_FALSE(h->fleece_bitmaps);
}

TEST_F(BitmapStoreTest, StoreRefusals) {
  const std::string img = f.path("lim.qcow2");
  create_image(img, 8ull << 40);  // 8 TiB, sparse
  BlockNodePtr n = f.open(img);
  ASSERT_TRUE(n);
  BitmapOptions o;
  o.name = "tiny";
  o.granularity = 512;
  o.persistent = true;
  auto r = fleece_test::run_task(n->bitmaps().create(o, n->size()));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("Use larger granularity"), std::string::npos)
      << r.status().message();
  // The store itself refuses a name it holds (NodeBitmaps checks first in practice).
  add_bitmap(*n, "x");
  auto* store = n->bitmaps().store();
  ASSERT_TRUE(store);
  auto dup = std::make_shared<DirtyBitmap>("x", n->size(), 65536);
  Status s = fleece_test::run_task(store->create(dup));
  EXPECT_EQ(s.code(), EEXIST) << s.to_string();
  n.reset();
  expect_check_clean(img);
}

TEST_F(BitmapStoreTest, ReadOnlyOpenWritesNothing) {
  const std::string img = f.path("ro.qcow2");
  create_image(img, 16 * kMiB);
  run("qemu-img bitmap --add " + sq(img) + " b");
  run("qemu-io -f qcow2 -c 'write 0 4k' " + sq(img));
  const auto before = fleece_test::read_whole_file(img);
  {
    BlockNodePtr n = f.open(img, true);
    auto b = n->bitmaps().find("b");
    ASSERT_TRUE(b);
    EXPECT_TRUE(b->read_only());
    EXPECT_FALSE(b->durable());
    EXPECT_FALSE(n->bitmaps().store()->writable());
    BitmapOptions o;
    o.name = "new";
    o.persistent = true;
    auto r = fleece_test::run_task(n->bitmaps().create(o, n->size()));
    EXPECT_EQ(r.status().code(), EROFS);
  }
  EXPECT_EQ(fleece_test::read_whole_file(img), before);
}

TEST_F(BitmapStoreTest, V2ImagesCannotStoreBitmaps) {
  const std::string img = f.path("v2.qcow2");
  create_image(img, 16 * kMiB, "compat=0.10");
  BlockNodePtr n = f.open(img);
  BitmapOptions o;
  o.name = "b";
  o.persistent = true;
  auto r = fleece_test::run_task(n->bitmaps().create(o, n->size()));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ENOTSUP);
  EXPECT_NE(r.status().message().find("v2"), std::string::npos) << r.status().message();
}

TEST_F(BitmapStoreTest, ConcurrentWritersShareCommits) {
  const std::string img = f.path("cc.qcow2");
  create_image(img, 64 * kMiB);
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  {
    BlockNodePtr n = f.open(img);
    auto b = add_bitmap(*n, "b", 65536);
    auto b2 = add_bitmap(*n, "b2", 4096);
    auto* store = dynamic_cast<Qcow2BitmapStore*>(n->bitmaps().store());
    ASSERT_TRUE(store);
    const uint64_t before = store->commits();
    constexpr int kWriters = 64;
    for (int i = 0; i < kWriters; ++i) writes.push_back({uint64_t(i) * 997 * 1024 + 3, 5000});
    auto& ctx = fleece_test::run_task_context();
    ctx.restart();
    std::atomic<int> ok{0};
    std::atomic<int> done{0};
    for (const auto& [o, l] : writes) {
      asio::co_spawn(ctx, [&, o = o, l = l]() -> Task<void> {
        auto data = node_test::pattern(l, static_cast<uint32_t>(o));
        Status s = co_await n->write(o, data, IoFlags::kNone);
        if (s.is_ok()) ok++;
        done++;
      }, asio::detached);
    }
    auto guard = asio::make_work_guard(ctx);
    while (done.load() < kWriters && ctx.run_one() > 0) {
    }
    guard.reset();
    ctx.run();
    ASSERT_EQ(ok.load(), kWriters);
    const uint64_t commits = store->commits() - before;
    EXPECT_GE(commits, 1u);
    EXPECT_LT(commits, uint64_t{kWriters} / 2) << "concurrent writers were not batched";
    EXPECT_EQ(dirty_ranges(*b), granules_of(writes, 65536, 64 * kMiB));
    EXPECT_EQ(dirty_ranges(*b2), granules_of(writes, 4096, 64 * kMiB));
  }
  EXPECT_EQ(qemu_dirty_ranges(img, "b"), granules_of(writes, 65536, 64 * kMiB));
  EXPECT_EQ(qemu_dirty_ranges(img, "b2"), granules_of(writes, 4096, 64 * kMiB));
  expect_check_clean(img);
}

TEST_F(BitmapStoreTest, ManagementWhileWritersRun) {
  // Writers keep writing while bitmaps are cleared, removed and created: no write
  // fails, nothing is written into freed clusters (qemu-img check), and every write
  // issued after a clear returned is in the cleared bitmap.
  const std::string img = f.path("m.qcow2");
  const uint64_t size = 64 * kMiB;
  create_image(img, size);
  std::vector<std::pair<uint64_t, uint64_t>> after_clear;
  {
    BlockNodePtr n = f.open(img);
    add_bitmap(*n, "a");
    add_bitmap(*n, "b", 4096);
    auto& ctx = fleece_test::run_task_context();
    ctx.restart();
    int running = 0;
    int failures = 0;
    bool cleared = false;
    for (int w = 0; w < 8; ++w) {
      ++running;
      asio::co_spawn(ctx, [&, w]() -> Task<void> {
        for (int i = 0; i < 40; ++i) {
          const uint64_t off = ((uint64_t(w) * 40 + uint64_t(i)) * 7919 % 1000) * 65536 + 512;
          const bool issued_after_clear = cleared;
          auto data = node_test::pattern(4096, static_cast<uint32_t>(off));
          if (!(co_await n->write(off, data, IoFlags::kNone)).is_ok()) ++failures;
          if (issued_after_clear) after_clear.push_back({off, 4096});
        }
        --running;
      }, asio::detached);
    }
    ++running;
    asio::co_spawn(ctx, [&]() -> Task<void> {
      if (!(co_await n->bitmaps().clear("a")).is_ok()) ++failures;
      cleared = true;
      if (!(co_await n->bitmaps().remove("b")).is_ok()) ++failures;
      BitmapOptions o;
      o.name = "c";
      o.persistent = true;
      if (!(co_await n->bitmaps().create(o, n->size())).is_ok()) ++failures;
      if (!(co_await n->bitmaps().set_enabled("a", false)).is_ok()) ++failures;
      if (!(co_await n->bitmaps().set_enabled("a", true)).is_ok()) ++failures;
      --running;
    }, asio::detached);
    auto guard = asio::make_work_guard(ctx);
    while (running > 0 && ctx.run_one() > 0) {
    }
    guard.reset();
    ctx.run();
    EXPECT_EQ(failures, 0);
    EXPECT_TRUE(cleared);
    EXPECT_FALSE(after_clear.empty()) << "the clear did not run while writers were busy";
    EXPECT_LT(after_clear.size(), 8u * 40u) << "the clear did not run while writers were busy";
    EXPECT_FALSE(n->bitmaps().find("b"));
  }
  const Ranges a = qemu_dirty_ranges(img, "a");
  for (const auto& r : granules_of(after_clear, 65536, size)) {
    bool in = false;
    for (const auto& [o, l] : a) in |= (o <= r.first && r.first + r.second <= o + l);
    EXPECT_TRUE(in) << "a write issued after the clear is missing at " << r.first;
  }
  auto infos = qemu_bitmaps(img);
  EXPECT_EQ(infos.size(), 2u);
  EXPECT_FALSE(find_info(infos, "b"));
  expect_check_clean(img);
}

}  // namespace
}  // namespace blockcore::qcow2::bitmap_test
