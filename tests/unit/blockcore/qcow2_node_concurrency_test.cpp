// Qcow2Node under concurrent load: many coroutines on two io_context threads issue
// writes, write_zeroes, discards, reads, block_status and flushes at once — disjoint
// byte ranges that share clusters (so copy-on-write of one new cluster races between
// writers), and a chaos area where requests overlap freely. Each owned range is checked
// against a model (only its owner changes it); the closed image must be clean for
// `qemu-img check`.
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "qcow2_node_test_util.h"

namespace blockcore::qcow2::node_test {
namespace {

constexpr uint64_t K = 1024;
constexpr uint64_t M = 1024 * 1024;

struct Errors {
  std::mutex mu;
  std::vector<std::string> list;
  void add(std::string s) {
    std::lock_guard g(mu);
    if (list.size() < 20) list.push_back(std::move(s));
  }
};

struct Layout {
  uint64_t size;
  uint64_t cluster;
  uint64_t region;      // bytes per owner (not cluster aligned on purpose)
  int owners;
  uint64_t chaos_begin;  // [chaos_begin, size): overlapping requests, content unchecked
};

Task<void> owner(BlockNode& n, Model& m, const Layout& L, int id, Errors& err) {
  std::mt19937_64 rng(static_cast<uint64_t>(id) * 1000003u + 17);
  const uint64_t rb = uint64_t(id) * L.region;
  const uint64_t re = rb + L.region;
  for (int op = 0; op < 24; ++op) {
    uint64_t off = rb + rng() % L.region;
    uint64_t len = 1 + rng() % std::min<uint64_t>(re - off, 3 * L.cluster);
    const int kind = static_cast<int>(rng() % 10);
    Status s;
    if (kind < 5) {
      auto p = pattern(len, static_cast<uint32_t>(id * 1000 + op));
      s = co_await n.write(off, p, (op % 7 == 0) ? IoFlags::kFua : IoFlags::kNone);
      if (s.is_ok()) m.write(off, p);
    } else if (kind < 7) {
      const IoFlags f = (kind == 5) ? IoFlags::kMayTrim : IoFlags::kNone;
      s = co_await n.write_zeroes(off, len, f);
      if (s.is_ok()) m.zero(off, len);
    } else if (kind == 7) {
      s = co_await n.discard(off, len, IoFlags::kNone);
      // Whole clusters inside the range read as zeroes afterwards; the rest is kept.
      const uint64_t a = (off + L.cluster - 1) / L.cluster * L.cluster;
      const uint64_t b = (off + len) / L.cluster * L.cluster;
      if (s.is_ok() && a < b) m.zero(a, b - a);
    } else {
      // Read back the whole owned range and compare.
      std::vector<std::byte> got(L.region);
      s = co_await n.read(rb, got);
      if (s.is_ok()) {
        auto want = m.at(rb, L.region);
        if (!std::equal(got.begin(), got.end(), want.begin())) {
          size_t i = 0;
          while (got[i] == want[i]) ++i;
          err.add("owner " + std::to_string(id) + " op " + std::to_string(op) +
                  ": content differs at " + std::to_string(rb + i));
        }
      }
    }
    if (!s.is_ok()) err.add("owner " + std::to_string(id) + " op " + std::to_string(op) + ": " +
                            s.to_string());
  }
}

Task<void> chaos(BlockNode& n, const Layout& L, int id, Errors& err) {
  std::mt19937_64 rng(static_cast<uint64_t>(id) * 7777u + 3);
  const uint64_t span = L.size - L.chaos_begin;
  for (int op = 0; op < 40; ++op) {
    const uint64_t off = L.chaos_begin + rng() % span;
    const uint64_t len = 1 + rng() % std::min<uint64_t>(L.size - off, 4 * L.cluster);
    Status s;
    switch (rng() % 7) {
      case 0:
      case 1: {
        auto p = pattern(len, static_cast<uint32_t>(op + id * 100));
        s = co_await n.write(off, p, IoFlags::kNone);
        break;
      }
      case 2:
        s = co_await n.write_zeroes(off, len, IoFlags::kMayTrim);
        break;
      case 3:
        s = co_await n.discard(off, len, IoFlags::kNone);
        break;
      case 4: {
        std::vector<std::byte> b(len);
        s = co_await n.read(off, b);
        break;
      }
      case 5: {
        Result<ExtentList> r = co_await n.block_status(0, L.size);
        s = r.status();
        if (r.is_ok() && (r.value().empty() || extents_length(r.value()) > L.size)) {
          err.add("block_status returned a bad extent list");
        }
        break;
      }
      default:
        s = co_await n.flush();
        break;
    }
    if (!s.is_ok()) err.add("chaos " + std::to_string(id) + ": " + s.to_string());
  }
}

void run_concurrent(Fixture& fx, const std::string& img, const Layout& L, Model& m) {
  BlockNodePtr n = fx.open(img);
  ASSERT_TRUE(n);
  Errors err;
  {
    asio::io_context ctx1, ctx2;
    std::atomic<int> finished{0};
    auto done = [&](std::exception_ptr e) {
      if (e) err.add("a coroutine threw");
      ++finished;
    };
    int spawned = 0;
    for (int i = 0; i < L.owners; ++i, ++spawned) {
      asio::co_spawn((i % 2) ? ctx1 : ctx2, owner(*n, m, L, i, err), done);
    }
    for (int i = 0; i < 6; ++i, ++spawned) {
      asio::co_spawn((i % 2) ? ctx2 : ctx1, chaos(*n, L, i, err), done);
    }
    std::thread t1([&] { ctx1.run(); });
    std::thread t2([&] { ctx2.run(); });
    t1.join();
    t2.join();
    EXPECT_EQ(finished.load(), spawned);
  }
  for (const std::string& e : err.list) ADD_FAILURE() << e;
  const uint64_t owned = uint64_t(L.owners) * L.region;
  expect_reads(*n, m, 0, owned);
  n.reset();
  expect_check_clean(img);
  EXPECT_EQ(raw_header(img).incompatible & kIncompatDirty, 0u);
  BlockNodePtr again = fx.open(img, /*read_only=*/true);
  ASSERT_TRUE(again);
  expect_reads(*again, m, 0, owned);
}

TEST(Qcow2NodeConcurrencyTest, ManyCoroutinesTwoThreads64k) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  Layout L{8 * M, 64 * K, 100003, 60, 6 * M + 512 * K};
  create_image(img, L.size);
  Model m(L.size);
  run_concurrent(fx, img, L, m);
}

TEST(Qcow2NodeConcurrencyTest, ManyCoroutinesTwoThreadsSmallClusters) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  Layout L{4 * M, 4 * K, 50021, 64, 3 * M + 512 * K};
  create_image(img, L.size, "cluster_size=4k,refcount_bits=1");
  Model m(L.size);
  run_concurrent(fx, img, L, m);
}

TEST(Qcow2NodeConcurrencyTest, ExtendedL2OverBackingWithSnapshot) {
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string base = fx.path("base.raw");
  const std::string img = fx.path("a.qcow2");
  Layout L{8 * M, 64 * K, 99991, 60, 6 * M + 512 * K};
  Model m(L.size);
  for (uint64_t i = 0; i < L.size; ++i) m.bytes[i] = static_cast<std::byte>((i * 7) % 253 + 1);
  m.save_raw(base);
  create_image(img, L.size, "extended_l2=on", "-b " + sq(base) + " -F raw");
  // Some clusters of the overlay shared with an internal snapshot.
  qemu_io(img, "-c 'write -P 0x77 1M 1M'");
  std::memset(m.bytes.data() + 1 * M, 0x77, 1 * M);
  ASSERT_EQ(qemu_img("snapshot -c s " + sq(img)).exit_code, 0);
  run_concurrent(fx, img, L, m);
}

TEST(Qcow2NodeConcurrencyTest, ConcurrentWritersIntoOneNewClusterKeepEveryByte) {
  // 32 writers each write their own 2 KiB slice of the same two unallocated clusters at
  // once: the copy-on-write of one writer must never wipe another's slice.
  FLEECE_REQUIRE_QEMU();
  Fixture fx;
  const std::string img = fx.path("a.qcow2");
  create_image(img, 1 * M);
  Model m(1 * M);
  for (int round = 0; round < 5; ++round) {
    BlockNodePtr n = fx.open(img);
    ASSERT_TRUE(n);
    asio::io_context ctx1, ctx2;
    Errors err;
    for (int i = 0; i < 64; ++i) {
      const uint64_t off = uint64_t(round) * 128 * K + uint64_t(i) * 2 * K + 1;
      auto p = pattern(2 * K - 2, static_cast<uint32_t>(round * 100 + i));
      m.write(off, p);
      asio::co_spawn(
          (i % 2) ? ctx1 : ctx2,
          [&n, &err, off, p = std::move(p)]() -> Task<void> {
            Status s = co_await n->write(off, p, IoFlags::kNone);
            if (!s.is_ok()) err.add(s.to_string());
          },
          asio::detached);
    }
    std::thread t1([&] { ctx1.run(); });
    std::thread t2([&] { ctx2.run(); });
    t1.join();
    t2.join();
    for (const std::string& e : err.list) ADD_FAILURE() << e;
    expect_reads(*n, m, 0, 1 * M);
  }
  expect_check_clean(img);
  expect_content(img, m);
}

}  // namespace
}  // namespace blockcore::qcow2::node_test
