// Crash safety of persistent bitmaps and what other programs may do in between:
// a crash (the file as it was at any moment, or a process killed with SIGKILL) leaves
// bitmaps that reopen consistent, cover every acknowledged write and are not all-dirty;
// QEMU opening the image read-write in between, an unclean QEMU shutdown and a program
// without bitmap support make fleeced distrust them; hostile bitmap structures are
// refused. qemu-img check stays clean after every reopen.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "blockcore/qcow2/bitmap_directory.h"
#include "qcow2_bitmap_test_util.h"

namespace blockcore::qcow2::bitmap_test {
namespace {

using node_test::create_image;
using node_test::expect_check_clean;
using node_test::Fixture;

constexpr uint64_t kMiB = 1ull << 20;

// A file node that "crashes" before its crash_at-th change (write, zeroing, discard,
// flush or resize): the file's bytes at that moment are copied to `crash_copy`, and that
// change and every later one fail with EIO, as if the process had died.
class CrashingFile final : public BlockNode {
 public:
  CrashingFile(BlockNodePtr inner, std::string path, std::string crash_copy, int crash_at)
      : BlockNode("crashing", "file"),
        inner_(std::move(inner)),
        path_(std::move(path)),
        copy_(std::move(crash_copy)),
        crash_at_(crash_at) {
    set_info(inner_->info());
  }
  std::string describe() const override { return path_; }
  bool crashed() const { return dead_; }

 protected:
  Task<Status> do_read(uint64_t off, std::span<std::byte> buf) override {
    co_return co_await inner_->read(off, buf);
  }
  Task<Status> do_write(uint64_t off, std::span<const std::byte> buf, IoFlags f) override {
    if (step()) co_return Status::io_error("crashed");
    co_return co_await inner_->write(off, buf, f);
  }
  Task<Status> do_write_zeroes(uint64_t off, uint64_t len, IoFlags f) override {
    if (step()) co_return Status::io_error("crashed");
    co_return co_await inner_->write_zeroes(off, len, f);
  }
  Task<Status> do_discard(uint64_t off, uint64_t len, IoFlags f) override {
    if (step()) co_return Status::io_error("crashed");
    co_return co_await inner_->discard(off, len, f);
  }
  Task<Status> do_flush() override {
    if (step()) co_return Status::io_error("crashed");
    co_return co_await inner_->flush();
  }
  Task<Status> do_cache(uint64_t, uint64_t) override { co_return Status::ok(); }
  Task<Result<ExtentList>> do_block_status(uint64_t off, uint64_t len) override {
    co_return co_await inner_->block_status(off, len);
  }
  Task<Status> do_truncate(uint64_t n) override {
    if (step()) co_return Status::io_error("crashed");
    co_return co_await inner_->truncate(n);
  }

 private:
  bool step() {
    if (dead_) return true;
    if (++ops_ != crash_at_) return false;
    std::filesystem::copy_file(path_, copy_, std::filesystem::copy_options::overwrite_existing);
    dead_ = true;
    return true;
  }

  BlockNodePtr inner_;
  std::string path_;
  std::string copy_;
  int crash_at_;
  int ops_ = 0;
  bool dead_ = false;
};

class BitmapCrashTest : public QemuBitmapTest {
 protected:
  // Opens `img` through a CrashingFile.
  Result<BlockNodePtr> open_crashing(const std::string& img, const std::string& copy, int crash_at,
                                     std::shared_ptr<CrashingFile>* out) {
    NodeSpec fs;
    fs.driver = "file";
    fs.file.filename = img;
    auto file = FileNode::open(fs, f.pool);
    if (!file.is_ok()) return file.status();
    auto crashing = std::make_shared<CrashingFile>(file.value(), img, copy, crash_at);
    *out = crashing;
    NodeSpec qs;
    qs.node_name = "q";
    qs.driver = "qcow2";
    OpenRequest r{qs, f.pool, crashing};
    return open_qcow2_node(r);
  }
  // `writes` at 64 KiB granules, through the node.
  static void write_all(BlockNode& n, const std::vector<std::pair<uint64_t, uint64_t>>& writes) {
    for (const auto& [o, l] : writes) {
      ASSERT_TRUE(node_test::write(n, o, node_test::pattern(l, static_cast<uint32_t>(o))).is_ok());
    }
  }
  static bool covers(const Ranges& have, const Ranges& want) {
    for (const auto& [o, l] : want) {
      bool in = false;
      for (const auto& [ho, hl] : have) in |= (ho <= o && o + l <= ho + hl);
      if (!in) return false;
    }
    return true;
  }
  Fixture f;
};

TEST_F(BitmapCrashTest, CrashCopyReopensConsistentWithEveryWrite) {
  const std::string img = f.path("live.qcow2");
  const std::string crash = f.path("crash.qcow2");
  const uint64_t size = 64 * kMiB;
  create_image(img, size);
  run("qemu-img bitmap --add " + sq(img) + " fromqemu");
  const std::vector<std::pair<uint64_t, uint64_t>> writes = {
      {0, 4096}, {3 * kMiB + 7, 100}, {40 * kMiB, 3 * 65536}, {size - 4096, 4096}};
  {
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(n);
    add_bitmap(*n, "b");
    add_bitmap(*n, "fine", 512);
    add_bitmap(*n, "off", 65536, true, /*disabled=*/true);
    write_all(*n, writes);
    // The file as a crash would leave it (nothing is closed or written back).
    std::filesystem::copy_file(img, crash);
  }
  // QEMU sees the crash copy's bitmaps in use: it would never trust them.
  for (const QemuBitmapInfo& i : qemu_bitmaps(crash)) EXPECT_TRUE(i.has("in-use")) << i.name;
  for (bool read_only : {true, false}) {
    SCOPED_TRACE(read_only ? "read-only" : "read-write");
    BlockNodePtr n = f.open(crash, read_only);
    ASSERT_TRUE(n);
    for (const char* name : {"b", "fine", "fromqemu", "off"}) {
      auto b = n->bitmaps().find(name);
      ASSERT_TRUE(b) << name;
      EXPECT_FALSE(b->inconsistent()) << name;
    }
    EXPECT_EQ(dirty_ranges(*n->bitmaps().find("b")), granules_of(writes, 65536, size));
    EXPECT_EQ(dirty_ranges(*n->bitmaps().find("fromqemu")), granules_of(writes, 65536, size));
    EXPECT_EQ(dirty_ranges(*n->bitmaps().find("fine")), granules_of(writes, 512, size));
    EXPECT_TRUE(dirty_ranges(*n->bitmaps().find("off")).empty());
    EXPECT_FALSE(n->bitmaps().find("off")->enabled());
  }
  expect_check_clean(crash);
  EXPECT_EQ(qemu_dirty_ranges(crash, "b"), granules_of(writes, 65536, size));
  EXPECT_EQ(qemu_dirty_ranges(crash, "fine"), granules_of(writes, 512, size));
  for (const QemuBitmapInfo& i : qemu_bitmaps(crash)) EXPECT_FALSE(i.has("in-use")) << i.name;
}

// A fleecing rotation (DirtyBitmap::freeze) empties memory but the stored copy keeps the
// frozen bits until the backup ends: a crash mid-backup reloads frozen | new (rolled
// back); after drop_retained() and a store write only the new writes remain.
TEST_F(BitmapCrashTest, FrozenBitsSurviveACrashUntilDropped) {
  const std::string img = f.path("live.qcow2");
  const std::string crash = f.path("crash.qcow2");
  const uint64_t size = 64 * kMiB;
  create_image(img, size);
  const std::vector<std::pair<uint64_t, uint64_t>> before = {{0, 4096}, {5 * kMiB, 65536}};
  const std::vector<std::pair<uint64_t, uint64_t>> after = {{9 * kMiB, 100}, {5 * kMiB, 10}};
  std::vector<std::pair<uint64_t, uint64_t>> all = before;
  all.insert(all.end(), after.begin(), after.end());
  {
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(n);
    add_bitmap(*n, "b");
    write_all(*n, before);
    DirtyBitmapPtr b = n->bitmaps().find("b");
    const HBitmap frozen = b->freeze();
    EXPECT_EQ(frozen.count(), 2u);
    EXPECT_EQ(b->dirty_bytes(), 0u);
    write_all(*n, after);
    EXPECT_EQ(dirty_ranges(*b), granules_of(after, 65536, size));
    std::filesystem::copy_file(img, crash);
    // The backup is done: only what was written after the freeze stays.
    b->drop_retained();
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().store()->write_bitmap(b)).is_ok());
  }
  EXPECT_EQ(qemu_dirty_ranges(img, "b"), granules_of(after, 65536, size));
  BlockNodePtr n = f.open(crash, /*read_only=*/true);
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->bitmaps().find("b")->inconsistent());
  EXPECT_EQ(dirty_ranges(*n->bitmaps().find("b")), granules_of(all, 65536, size));
}

TEST_F(BitmapCrashTest, CrashAtEveryStep) {
  // A base image with a bitmap QEMU recorded, and one to be removed.
  const std::string base = f.path("base.qcow2");
  const uint64_t size = 16 * kMiB;
  create_image(base, size);
  run("qemu-img bitmap --add " + sq(base) + " q && qemu-img bitmap --add " + sq(base) + " gone");
  run("qemu-io -f qcow2 -c 'write 1M 4k' " + sq(base));
  const Ranges q_before = {{kMiB, 65536}};
  const std::string img = f.path("img.qcow2");
  const std::string crash = f.path("crash.qcow2");
  int crashes = 0;
  for (int crash_at = 1;; ++crash_at) {
    SCOPED_TRACE("crash before change " + std::to_string(crash_at));
    std::filesystem::copy_file(base, img, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(crash);
    std::vector<std::pair<uint64_t, uint64_t>> acked;     // every acknowledged write
    std::vector<std::pair<uint64_t, uint64_t>> acked_q;   // since q's last clear
    bool clear_acked = false;
    std::shared_ptr<CrashingFile> file;
    {
      // The scenario, as far as it gets: take over, create, write, clear, remove,
      // write, close.
      Result<BlockNodePtr> opened = open_crashing(img, crash, crash_at, &file);
      if (opened.is_ok()) {
        BlockNodePtr n = opened.value();
        BitmapOptions o;
        o.name = "n";
        o.persistent = true;
        (void)fleece_test::run_task(n->bitmaps().create(o, n->size()));
        auto w = [&](uint64_t off, uint64_t len) {
          if (node_test::write(*n, off, node_test::pattern(len, 7)).is_ok()) {
            acked.push_back({off, len});
            acked_q.push_back({off, len});
          }
        };
        w(2 * kMiB, 4096);
        w(5 * kMiB + 100, 70000);
        if (fleece_test::run_task(n->bitmaps().clear("q")).is_ok()) {
          clear_acked = true;
          acked_q.clear();
        }
        (void)fleece_test::run_task(n->bitmaps().remove("gone"));
        w(9 * kMiB, 512);
        w(size - 512, 512);
      }
    }
    if (!file->crashed()) break;  // the whole scenario ran: every step was covered
    ++crashes;
    ASSERT_TRUE(std::filesystem::exists(crash));
    {
      BlockNodePtr n = f.open(crash);
      ASSERT_TRUE(n) << "the crash copy does not open";
      for (const DirtyBitmapPtr& b : n->bitmaps().list()) {
        SCOPED_TRACE(b->name());
        if (b->inconsistent()) continue;  // never reported clean: safe
        EXPECT_LT(b->dirty_bytes(), size / 2) << "a consistent bitmap is almost all dirty";
        const Ranges have = dirty_ranges(*b);
        if (b->name() == "n") {
          // Every acknowledged write is in it.
          EXPECT_TRUE(covers(have, granules_of(acked, 65536, size)))
              << "have " << to_string(have) << " want " << to_string(granules_of(acked, 65536, size));
        } else if (b->name() == "q") {
          Ranges want = granules_of(acked_q, 65536, size);
          if (!clear_acked) {
            // Not cleared (all it held is still there), or cleared by a clear whose
            // answer the crash lost (nothing was acknowledged after it).
            EXPECT_TRUE((covers(have, want) && covers(have, q_before)) || have.empty())
                << "have " << to_string(have);
          } else {
            EXPECT_TRUE(covers(have, want)) << "have " << to_string(have) << " want " << to_string(want);
          }
        }
      }
    }
    expect_check_clean(crash);
    if (HasFailure()) break;
  }
  EXPECT_GT(crashes, 20);
}

TEST_F(BitmapCrashTest, SigkilledWriterLeavesCoveringBitmap) {
  const std::string img = f.path("k.qcow2");
  const uint64_t size = 256 * kMiB;
  create_image(img, size);
  {
    BlockNodePtr n = f.open(img);
    add_bitmap(*n, "b");
  }
  int progress[2];
  ASSERT_EQ(::pipe(progress), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The writer: reports each acknowledged write, writes until it is killed.
    ::close(progress[0]);
    Fixture cf;
    Result<BlockNodePtr> n = cf.try_open(img);
    if (!n.is_ok()) ::_exit(2);
    std::mt19937_64 rng(42);
    auto data = node_test::pattern(65536, 1);
    for (;;) {
      const uint64_t off = (rng() % (size / 65536)) * 65536;
      if (!node_test::write(*n.value(), off, data).is_ok()) ::_exit(3);
      if (::write(progress[1], &off, sizeof off) != sizeof off) ::_exit(4);
    }
  }
  ::close(progress[1]);
  std::vector<std::pair<uint64_t, uint64_t>> acked;
  uint64_t off = 0;
  while (acked.size() < 200 && ::read(progress[0], &off, sizeof off) == sizeof off) {
    acked.push_back({off, 65536});
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  // Writes acknowledged before the kill whose reports were still in the pipe.
  while (::read(progress[0], &off, sizeof off) == sizeof off) acked.push_back({off, 65536});
  ::close(progress[0]);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited by itself: " << status;
  ASSERT_GE(acked.size(), 200u);
  {
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(n);
    auto b = n->bitmaps().find("b");
    ASSERT_TRUE(b);
    EXPECT_FALSE(b->inconsistent());
    EXPECT_TRUE(covers(dirty_ranges(*b), granules_of(acked, 65536, size)));
    // Close to what was written: the acknowledged writes plus the one in flight.
    uint64_t written = 0;
    for (const auto& r : granules_of(acked, 65536, size)) written += r.second / 65536;
    EXPECT_GE(b->dirty_granules(), written);
    EXPECT_LE(b->dirty_granules(), written + 1);
  }
  expect_check_clean(img);
}

TEST_F(BitmapCrashTest, QemuReadWriteOpenMakesFleecedDistrustTheRecord) {
  const std::string img = f.path("live.qcow2");
  const std::string crash = f.path("crash.qcow2");
  const uint64_t size = 32 * kMiB;
  create_image(img, size);
  {
    BlockNodePtr n = f.open(img);
    add_bitmap(*n, "b");
    ASSERT_TRUE(node_test::write(*n, 0, node_test::pattern(4096, 1)).is_ok());
    std::filesystem::copy_file(img, crash);
  }
  // QEMU writes the crash copy (repairing it): the fleece autoclear bit goes.
  run("qemu-io -f qcow2 -c 'write 5M 4k' " + sq(crash));
  {
    auto h = parse_header(fleece_test::read_file(crash, 0, 65536));
    ASSERT_TRUE(h.is_ok());
    EXPECT_EQ(h->autoclear_features & kAutoclearFleeceBitmaps, 0u);
  }
  {
    BlockNodePtr n = f.open(crash);
    auto b = n->bitmaps().find("b");
    ASSERT_TRUE(b);
    EXPECT_TRUE(b->inconsistent());
    EXPECT_EQ(b->dirty_bytes(), size);  // all dirty, never clean
    EXPECT_FALSE(b->durable());
    // A write does not fail; the bitmap stays in use on disk.
    ASSERT_TRUE(node_test::write(*n, 8 * kMiB, node_test::pattern(4096, 2)).is_ok());
  }
  EXPECT_TRUE(find_info(qemu_bitmaps(crash), "b")->has("in-use"));
  expect_check_clean(crash);
  {
    // Cleared, it is consistent and crash-safe again.
    BlockNodePtr n = f.open(crash);
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().clear("b")).is_ok());
    auto b = n->bitmaps().find("b");
    EXPECT_FALSE(b->inconsistent());
    EXPECT_TRUE(b->durable());
    ASSERT_TRUE(node_test::write(*n, 9 * kMiB, node_test::pattern(4096, 3)).is_ok());
  }
  EXPECT_EQ(find_info(qemu_bitmaps(crash), "b")->flags, std::vector<std::string>{"auto"});
  EXPECT_EQ(qemu_dirty_ranges(crash, "b"), (Ranges{{9 * kMiB, 65536}}));
  expect_check_clean(crash);
}

TEST_F(BitmapCrashTest, UncleanQemuShutdownLoadsInconsistent) {
  const std::string img = f.path("q.qcow2");
  const uint64_t size = 16 * kMiB;
  create_image(img, size);
  run("qemu-img bitmap --add " + sq(img) + " b && qemu-img bitmap --add " + sq(img) + " c");
  // qemu-io aborts with the image open read-write: its bitmaps stay in use.
  (void)shell("qemu-io -f qcow2 -c 'write 0 4k' -c abort " + sq(img));
  ASSERT_TRUE(find_info(qemu_bitmaps(img), "b")->has("in-use"));
  {
    BlockNodePtr n = f.open(img, true);
    auto b = n->bitmaps().find("b");
    EXPECT_TRUE(b->inconsistent());
    EXPECT_TRUE(b->read_only());
    EXPECT_EQ(b->dirty_bytes(), size);
  }
  {
    BlockNodePtr n = f.open(img);
    EXPECT_TRUE(n->bitmaps().find("b")->inconsistent());
    ASSERT_TRUE(node_test::write(*n, kMiB, node_test::pattern(512, 1)).is_ok());
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().remove("c")).is_ok());
  }
  auto infos = qemu_bitmaps(img);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_TRUE(infos[0].has("in-use"));
  expect_check_clean(img);
  {
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(fleece_test::run_task(n->bitmaps().clear("b")).is_ok());
    ASSERT_TRUE(node_test::write(*n, 2 * kMiB, node_test::pattern(512, 1)).is_ok());
  }
  EXPECT_EQ(find_info(qemu_bitmaps(img), "b")->flags, std::vector<std::string>{"auto"});
  EXPECT_EQ(qemu_dirty_ranges(img, "b"), (Ranges{{2 * kMiB, 65536}}));
  expect_check_clean(img);
}

TEST_F(BitmapCrashTest, ClearedBitmapsAutoclearBitMakesEveryBitmapInconsistent) {
  const std::string img = f.path("a.qcow2");
  create_image(img, 16 * kMiB);
  run("qemu-img bitmap --add " + sq(img) + " b");
  node_test::write_be64_at(img, 88, 0);  // a program without bitmap support wrote it
  {
    BlockNodePtr n = f.open(img, true);
    EXPECT_TRUE(n->bitmaps().find("b")->inconsistent());
  }
  {
    BlockNodePtr n = f.open(img);
    EXPECT_TRUE(n->bitmaps().find("b")->inconsistent());
  }
  EXPECT_TRUE(find_info(qemu_bitmaps(img), "b")->has("in-use"));
  expect_check_clean(img);
}

// ---- hostile bitmap structures ----

struct Layout {
  Header h;
  std::vector<BitmapDirEntry> dir;
  std::vector<uint64_t> dir_entry_offsets;
};
Layout read_layout(const std::string& img) {
  Layout l;
  auto file = fleece_test::read_whole_file(img);
  l.h = parse_header(std::span(file).first(65536)).value();
  auto d = parse_bitmap_directory(
      std::span(file).subspan(l.h.bitmaps->directory_offset, l.h.bitmaps->directory_size),
      l.h.bitmaps->nb_bitmaps, l.h.cluster_size(), l.h.size);
  l.dir = d.value();
  uint64_t pos = l.h.bitmaps->directory_offset;
  for (const BitmapDirEntry& e : l.dir) {
    l.dir_entry_offsets.push_back(pos);
    pos += bitmap_dir_entry_bytes(e.name.size(), e.extra_data.size());
  }
  return l;
}

TEST_F(BitmapCrashTest, HostileStructuresAreRefused) {
  const std::string base = f.path("base.qcow2");
  create_image(base, 16 * kMiB);
  run("qemu-img bitmap --add " + sq(base) + " b0 && qemu-img bitmap --add " + sq(base) + " b1");
  run("qemu-io -f qcow2 -c 'write 0 64k' " + sq(base));
  const Layout l = read_layout(base);
  const std::string img = f.path("img.qcow2");
  auto expect_refused = [&](const std::string& what) {
    Result<BlockNodePtr> n = f.try_open(img, true);
    ASSERT_FALSE(n.is_ok()) << "opened an image that should fail with: " << what;
    EXPECT_NE(n.status().message().find(what), std::string::npos) << n.status().message();
  };
  auto fresh = [&] {
    std::filesystem::copy_file(base, img, std::filesystem::copy_options::overwrite_existing);
  };
  const uint64_t t0 = l.dir[0].table_offset;
  const uint64_t t1 = l.dir[1].table_offset;
  const uint64_t data0 = node_test::read_be64_at(base, t0);
  ASSERT_NE(data0, 0u);
  // A table on top of the L1 table.
  fresh();
  node_test::write_be64_at(img, l.dir_entry_offsets[0], l.h.l1_table_offset);
  expect_refused("overlaps other metadata");
  // Two bitmaps sharing a data cluster.
  fresh();
  node_test::write_be64_at(img, t1, data0);
  expect_refused("overlaps other metadata");
  // A data cluster past the end of the file.
  fresh();
  node_test::write_be64_at(img, t0, 1ull << 40);
  expect_refused("past the end of the file");
  // Reserved bits in a table entry.
  fresh();
  node_test::write_be64_at(img, t0, data0 | 2);
  expect_refused("reserved bits");
  // A reserved flag in the directory.
  fresh();
  {
    std::vector<std::byte> flags(4);
    store_be32(flags.data(), kBitmapFlagAuto | 8);
    std::fstream io(img, std::ios::binary | std::ios::in | std::ios::out);
    io.seekp(static_cast<std::streamoff>(l.dir_entry_offsets[1] + 12));
    io.write(reinterpret_cast<const char*>(flags.data()), 4);
  }
  expect_refused("reserved flags");
  // The image still opens once it is whole again.
  fresh();
  EXPECT_TRUE(f.try_open(img, true).is_ok());
}

TEST_F(BitmapCrashTest, ExtraDataRules) {
  const std::string img = f.path("x.qcow2");
  create_image(img, 16 * kMiB);
  run("qemu-img bitmap --add " + sq(img) + " b0");
  const Layout l = read_layout(img);
  // Entry "b0": 24 + 2 bytes of name, padded to 32: room for 2 bytes of extra data.
  const uint64_t e = l.dir_entry_offsets[0];
  auto put = [&](uint64_t off, const std::vector<std::byte>& b) {
    std::fstream io(img, std::ios::binary | std::ios::in | std::ios::out);
    io.seekp(static_cast<std::streamoff>(off));
    io.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  auto be32 = [](uint32_t v) {
    std::vector<std::byte> b(4);
    store_be32(b.data(), v);
    return b;
  };
  put(e + 20, be32(2));
  put(e + 24, {std::byte{'x'}, std::byte{'y'}, std::byte{'b'}, std::byte{'0'}});
  {
    // Not marked compatible: loaded read-only and inconsistent; a read-write open is refused.
    BlockNodePtr n = f.open(img, true);
    auto b = n->bitmaps().find("b0");
    ASSERT_TRUE(b);
    EXPECT_TRUE(b->inconsistent());
    EXPECT_TRUE(b->read_only());
    n.reset();
    auto rw = f.try_open(img);
    ASSERT_FALSE(rw.is_ok());
    EXPECT_NE(rw.status().message().find("extra data"), std::string::npos) << rw.status().message();
  }
  put(e + 12, be32(kBitmapFlagAuto | kBitmapFlagExtraDataCompatible));
  {
    // Compatible: used as usual, and the extra data is kept.
    BlockNodePtr n = f.open(img);
    ASSERT_TRUE(n);
    auto b = n->bitmaps().find("b0");
    EXPECT_FALSE(b->inconsistent());
    EXPECT_TRUE(b->durable());
    ASSERT_TRUE(node_test::write(*n, 0, node_test::pattern(512, 1)).is_ok());
  }
  const Layout after = read_layout(img);
  ASSERT_EQ(after.dir.size(), 1u);
  EXPECT_EQ(after.dir[0].extra_data, (std::vector<std::byte>{std::byte{'x'}, std::byte{'y'}}));
  EXPECT_TRUE(after.dir[0].extra_data_compatible());
  EXPECT_FALSE(after.dir[0].in_use());
  BlockNodePtr n = f.open(img, true);
  EXPECT_EQ(dirty_ranges(*n->bitmaps().find("b0")), (Ranges{{0, 65536}}));
}

}  // namespace
}  // namespace blockcore::qcow2::bitmap_test
