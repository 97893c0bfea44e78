"""End-to-end tests of images on a memory-backed filesystem (tmpfs: /dev/shm), where
fleeced serves small READs and WRITEs (up to 64 KiB) on the spot, without a coroutine
(RequestHandler::handle_now over BlockNode::read_now/write_now), while larger ones and
anything that must wait (a fleece's copy-before-write, a paused node) take the usual
path. The other integration tests keep their images under /tmp (a disk filesystem
here), where writes never take that path; these put every image, and the daemon's
directory, in a fresh directory under /dev/shm that is removed afterwards.

What a user checks:
- many pipelined reads and writes (64 in flight over two connections, 1 byte to 64 KiB at
  unaligned offsets, plus 128 KiB to 1 MiB ones that go the other path, with zero-copy
  off and always) leave the export and the file on disk equal to a model of what was
  written, every read returns the model's bytes, and query-blockstats counts exactly the
  requests and bytes sent, on the raw node, its file node and the export (none counted
  twice, none lost, nothing failed);
- FUA writes succeed and land, without a flush being emulated;
- a write past the end gets ENOSPC and the connection and daemon stay usable; a write
  through a read-only export of the same node gets EPERM and changes nothing;
- a dirty bitmap added over QMP records exactly the granules small writes touched
  (qemu:dirty-bitmap:NAME through libnbd block status, and query-dirty-bitmaps);
- during a fleece, small writes to the live export (on a connection opened before the
  fleece started, too) leave the old bytes in the fleece view and the new ones in the
  live export and the file; fleece-stop succeeds and writes go on;
- a raw node with an offset/size window over a tmpfs file puts a write at X of the export
  at window offset + X of the file, and refuses one past the window with ENOSPC."""

import errno
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import nbd
import pytest

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, query_dirty_bitmaps)

KiB = 1 << 10
MiB = 1 << 20
G = 64 * KiB  # the default bitmap granularity
DISK = 32 * MiB + 12345  # an unaligned end
WIN_FILE = 8 * MiB
WIN_OFF = MiB
WIN_SIZE = 4 * MiB
INLINE_LIMIT = 64 * KiB  # FileNode::kInlineIoLimit
IN_FLIGHT = 64

CONFIG = """listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
server:
  io-threads: 2
  max-in-flight: 64
  zero-copy: {zero_copy}
nodes:
  - node-name: disk-file
    driver: file
    filename: "{{dir}}/disk.img"
  - node-name: disk
    driver: raw
    file: disk-file
  - node-name: win
    driver: raw
    file: {{{{ driver: file, filename: "{{dir}}/win.img" }}}}
    offset: {win_off}
    size: {win_size}
exports:
  - {{{{ name: disk, node: disk, writable: true }}}}
  - {{{{ name: disk-ro, node: disk, writable: false }}}}
  - {{{{ name: win, node: win, writable: true }}}}
fleecing:
  overlay-dir: "{{dir}}/overlays"
"""


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def shm_dir():
    """A fresh directory under /dev/shm, removed afterwards whatever happens."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    path = Path(tempfile.mkdtemp(prefix="fleece-mem-", dir="/dev/shm"))
    try:
        if fs_type(path) not in ("tmpfs", "ramfs"):
            pytest.skip(f"/dev/shm is {fs_type(path)}, not memory-backed")
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Env:
    """A running daemon over disk.img and win.img (random contents) in a tmpfs dir, and
    models of both files."""

    def __init__(self, d, disk, win):
        self.d = d
        self.disk = disk  # bytearray: what disk.img must hold
        self.win = win    # bytearray: what win.img must hold

    def connect(self, export="disk", strict=True, contexts=()):
        h = nbd.NBD()
        if not strict:
            h.set_strict_mode(0)
        for c in contexts:
            h.add_meta_context(c)
        h.connect_uri(self.d.uri(export))
        return h

    def path(self, name):
        return self.d.dir / name

    def qmp(self):
        return Qmp(self.d.control_sock)

    def stats(self, node):
        with self.qmp() as q:
            r = q.cmd("query-blockstats", {"node-name": node})
        assert "return" in r, r
        (entry,) = r["return"]
        return entry

    def export_stats(self, node, export):
        (exp,) = [e for e in self.stats(node)["exports"] if e["name"] == export]
        return exp


def start_env(shm_dir, zero_copy="never"):
    rng = random.Random(1234)
    disk = bytearray(rng.randbytes(DISK))
    win = bytearray(rng.randbytes(WIN_FILE))
    (shm_dir / "disk.img").write_bytes(disk)
    (shm_dir / "win.img").write_bytes(win)
    (shm_dir / "overlays").mkdir()
    config = CONFIG.format(zero_copy=zero_copy, win_off=WIN_OFF, win_size=WIN_SIZE)
    return Daemon(shm_dir, config=config), disk, win


@pytest.fixture
def env(shm_dir):
    d, disk, win = start_env(shm_dir)
    with d:
        yield Env(d, disk, win)
        assert d.alive(), "fleeced died:\n" + d.log_text()


def ok(qmp, cmd, args=None):
    r = qmp.cmd(cmd, args)
    assert "return" in r, f"{cmd} {args} -> {r}"
    return r["return"]


def nbd_errno(fn):
    with pytest.raises(nbd.Error) as e:
        fn()
    return e.value.errnum


def read_export(h, size):
    return b"".join(h.pread(min(MiB, size - off), off) for off in range(0, size, MiB))


def wait(h, cookie):
    while not h.aio_command_completed(cookie):
        h.poll(-1)


# ---- pipelined reads and writes -------------------------------------------------------

SMALL = [1, 2, 3, 17, 511, 512, 513, 1000, 4095, 4096, 4097, 8191, 8192, 12345, 32768,
         65535, 65536]
LARGE = [65537, 128 * KiB, 200000, 256 * KiB, MiB]  # past the inline limit


def plan_batch(rng, size, n):
    """n requests on pairwise disjoint ranges: ("w"|"r", offset, length). Disjoint, so
    that requests executing in any order give one result the model can predict."""
    taken = []
    batch = []
    while len(batch) < n:
        if rng.random() < 0.08:
            length = rng.choice(LARGE)
        elif rng.random() < 0.5:
            length = rng.choice(SMALL)
        else:
            length = rng.randint(1, INLINE_LIMIT)
        off = rng.randrange(0, size - length + 1)
        if rng.random() < 0.02:
            off = size - length  # up to the unaligned end
        if any(off < e and s < off + length for s, e in taken):
            continue
        taken.append((off, off + length))
        batch.append(("w" if rng.random() < 0.5 else "r", off, length))
    return batch


@pytest.mark.parametrize("zero_copy", ["never", "always"])
def test_pipelined_small_reads_and_writes_match_the_model_and_are_counted_once(
        shm_dir, zero_copy):
    d, model, _ = start_env(shm_dir, zero_copy)
    with d:
        e = Env(d, model, None)
        handles = [e.connect(), e.connect()]
        rng = random.Random(99)
        sent = {"w": [0, 0], "r": [0, 0], "w_small": 0, "w_large": 0}
        for _ in range(12):
            batch = plan_batch(rng, DISK, IN_FLIGHT)
            pending = []
            for i, (kind, off, length) in enumerate(batch):
                h = handles[i % len(handles)]
                if kind == "w":
                    data = rng.randbytes(length)
                    model[off:off + length] = data
                    cookie = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off)
                    pending.append((h, cookie, None, off, length))
                    sent["w_small" if length <= INLINE_LIMIT else "w_large"] += 1
                else:
                    buf = nbd.Buffer(length)
                    pending.append((h, h.aio_pread(buf, off), buf, off, length))
                sent[kind][0] += 1
                sent[kind][1] += length
            for h, cookie, buf, off, length in pending:
                wait(h, cookie)
                if buf is not None:
                    # Disjoint from every write of the batch: the model's bytes.
                    assert buf.to_bytearray() == model[off:off + length], (off, length)
        assert sent["w_small"] > 300 and sent["w_large"] > 10, sent

        # Counted exactly once each, by the node, the file node and the export; taken
        # before the read-back below, which adds reads.
        for node in ("disk", "disk-file"):
            st = e.stats(node)
            s = st["stats"]
            assert s["wr_operations"] == sent["w"][0], node
            assert s["wr_bytes"] == sent["w"][1], node
            assert s["rd_operations"] == sent["r"][0], node
            assert s["rd_bytes"] == sent["r"][1], node
            for k in ("failed_wr_operations", "invalid_wr_operations",
                      "failed_rd_operations", "invalid_rd_operations", "flush_operations"):
                assert s[k] == 0, (node, k)
            assert st["operations"]["write"]["requests"] == sent["w"][0], node
            assert st["operations"]["write"]["bytes"] == sent["w"][1], node
            assert st["in-flight"] == 0, node
        exp = e.export_stats("disk", "disk")
        assert exp["requests"]["write"] == sent["w"][0]
        assert exp["write-bytes"] == sent["w"][1]
        assert exp["requests"]["read"] == sent["r"][0]
        assert exp["read-bytes"] == sent["r"][1]
        assert exp["errors"]["write"] == 0 and exp["errors"]["read"] == 0

        # The export and the file hold what the model says.
        assert read_export(handles[0], DISK) == model
        assert read_export(handles[1], DISK) == model
        for h in handles:
            h.shutdown()
        assert e.path("disk.img").read_bytes() == model
        assert d.alive(), d.log_text()


# ---- FUA, errors ----------------------------------------------------------------------

def test_fua_writes_land(env):
    h = env.connect()
    assert h.can_fua()
    writes = [(4096, 4096), (3 * MiB + 7, 100), (5 * MiB - 1, 2), (DISK - 1, 1),
              (7 * MiB + 3, INLINE_LIMIT), (9 * MiB + 11, 128 * KiB)]
    rng = random.Random(5)
    for off, length in writes:
        data = rng.randbytes(length)
        h.pwrite(data, off, flags=nbd.CMD_FLAG_FUA)
        env.disk[off:off + length] = data
        # Already in the file, without a flush: the file is what another process sees.
        with open(env.path("disk.img"), "rb") as f:
            f.seek(off)
            assert f.read(length) == data, (off, length)
        assert h.pread(length, off) == data
    st = env.stats("disk")["stats"]
    assert st["wr_operations"] == len(writes)
    assert st["flush_operations"] == 0, "FUA is native, not emulated with a flush"
    h.shutdown()
    assert env.path("disk.img").read_bytes() == env.disk


def test_write_past_the_end_is_enospc_and_read_only_export_is_eperm(env):
    h = env.connect(strict=False)
    assert h.get_size() == DISK
    assert nbd_errno(lambda: h.pwrite(b"x" * 10, DISK - 5)) == errno.ENOSPC
    assert nbd_errno(lambda: h.pwrite(b"x", DISK)) == errno.ENOSPC
    assert nbd_errno(lambda: h.pwrite(b"x" * 4096, DISK + 4096)) == errno.ENOSPC
    assert nbd_errno(lambda: h.pread(10, DISK - 5)) == errno.EINVAL
    # The connection stays usable, small writes go on, nothing was written past or at
    # the end by the refused ones.
    h.pwrite(b"ok", DISK - 2)
    assert h.pread(7, DISK - 7) == bytes(env.disk[DISK - 7:DISK - 2]) + b"ok"
    env.disk[DISK - 2:DISK] = b"ok"
    exp = env.export_stats("disk", "disk")
    assert exp["errors"]["write"] == 3 and exp["errors"]["read"] == 1
    # Refused by the NBD layer before the node: error replies, not requests executed.
    assert exp["requests"]["write"] == 1 and exp["write-bytes"] == 2

    ro = env.connect("disk-ro", strict=False)
    assert ro.is_read_only()
    assert nbd_errno(lambda: ro.pwrite(b"z" * 512, 0)) == errno.EPERM
    assert nbd_errno(lambda: ro.pwrite(b"z", 12345)) == errno.EPERM
    assert nbd_errno(lambda: ro.pwrite(b"z" * 4096, 8192, flags=nbd.CMD_FLAG_FUA)) == errno.EPERM
    assert ro.pread(512, 0) == env.disk[0:512]
    assert ro.pread(4096, 8192) == env.disk[8192:8192 + 4096]
    ro.shutdown()
    # Still usable from a fresh connection too; the file holds only the accepted write.
    h2 = env.connect()
    h2.pwrite(b"again", 100)
    env.disk[100:105] = b"again"
    assert h2.pread(105, 0) == env.disk[0:105]
    h2.shutdown()
    h.shutdown()
    assert env.path("disk.img").read_bytes() == env.disk
    assert env.stats("disk")["stats"]["wr_operations"] == 2


# ---- dirty bitmaps ------------------------------------------------------------------

def bitmap_status(h, size, context):
    """[(offset, length, flags)] of `context` over [0, size), whatever the reply sizes."""
    out = []
    off = 0
    while off < size:
        seen = []

        def collect(metacontext, o, entries, err):
            if metacontext == context:
                seen.extend(zip(entries[0::2], entries[1::2]))
            return 0

        h.block_status(min(size - off, 2 ** 31), off, collect)
        assert seen, off
        for length, flags in seen:
            out.append((off, length, flags))
            off += length
    return out


def test_bitmap_added_over_qmp_records_exactly_the_small_writes(env):
    with env.qmp() as q:
        ok(q, "block-dirty-bitmap-add", {"node": "disk", "name": "b"})
        ok(q, "block-dirty-bitmap-add", {"node": "disk-file", "name": "fb"})
        ok(q, "block-export-add", {"type": "nbd", "id": "bm", "node-name": "disk",
                                   "name": "bm", "writable": True, "bitmaps": ["b"]})
    ctx = dirty_bitmap_context("b")
    h = env.connect("bm", contexts=[ctx])
    assert h.can_meta_context(ctx)
    assert bitmap_status(h, DISK, ctx) == [(0, DISK, 0)]

    rng = random.Random(8)
    writes = [(3 * G + 100, 5000), (10 * G - 10, 20), (DISK - 1, 1), (20 * MiB, 4096),
              (21 * MiB + 1, 1)]
    writes += [(rng.randrange(0, DISK - 4096), rng.choice([1, 512, 4096, 3000]))
               for _ in range(30)]
    other = env.connect()  # the same node through the plain export
    for i, (off, length) in enumerate(writes):
        (h if i % 2 else other).pwrite(rng.randbytes(length), off)
    want = granules_touched(writes, G, DISK)

    got = dirty_granules_of(bitmap_status(h, DISK, ctx), G, DISK)
    assert got == want
    with env.qmp() as q:
        bitmaps = query_dirty_bitmaps(q)
    dirty = sum(min(G, DISK - g * G) for g in want)
    assert bitmaps[("disk", "b")]["count"] == dirty
    # The file node's bitmap saw the same writes at the same offsets.
    assert bitmaps[("disk-file", "fb")]["count"] == dirty
    # Reads mark nothing.
    h.pread(65536, 25 * MiB)
    assert dirty_granules_of(bitmap_status(h, DISK, ctx), G, DISK) == want
    h.shutdown()
    other.shutdown()


# ---- fleecing -------------------------------------------------------------------------

def test_fleece_view_keeps_old_bytes_under_small_live_writes(env):
    live = env.connect()  # opened before the fleece starts
    # Written (on the spot) before the snapshot point: part of the view.
    live.pwrite(b"\x5a" * 4096, 2 * MiB)
    env.disk[2 * MiB:2 * MiB + 4096] = b"\x5a" * 4096
    at_snapshot = bytes(env.disk)

    with env.qmp() as q:
        ok(q, "fleece-start", {"id": "f1", "node": "disk"})
        rng = random.Random(21)
        writes = [(2 * MiB, 4096), (4096, 4096), (3 * MiB + 123, 1000), (5 * MiB - 3, 7),
                  (DISK - 1, 1), (7 * MiB + 5, INLINE_LIMIT), (11 * MiB + 77, 200000)]
        late = env.connect()  # and one opened after
        for i, (off, length) in enumerate(writes):
            data = rng.randbytes(length)
            (live if i % 2 else late).pwrite(data, off)
            env.disk[off:off + length] = data

        view = env.connect("disk-fleece")
        assert view.is_read_only()
        for off, length in writes:
            assert view.pread(length, off) == at_snapshot[off:off + length], (off, length)
            assert live.pread(length, off) == env.disk[off:off + length], (off, length)
        assert read_export(view, DISK) == at_snapshot
        assert read_export(late, DISK) == env.disk
        assert env.path("disk.img").read_bytes() == env.disk
        (fleece,) = env.stats("disk")["fleeces"]
        assert fleece["copied-bytes"] > 0 and not fleece["broken"]
        view.shutdown()

        ok(q, "fleece-stop", {"id": "f1"})
        assert ok(q, "query-fleeces") == []
    # Writes go on after the fleece, on the old connection.
    live.pwrite(b"after", 1234)
    env.disk[1234:1239] = b"after"
    assert live.pread(5, 1234) == b"after"
    live.shutdown()
    late.shutdown()
    assert env.path("disk.img").read_bytes() == env.disk


# ---- a raw window -------------------------------------------------------------------

def test_raw_window_writes_land_at_window_offset(env):
    h = env.connect("win", strict=False)
    assert h.get_size() == WIN_SIZE
    rng = random.Random(31)
    writes = [(0, 1), (4096, 4096), (12345, 777), (MiB + 1, INLINE_LIMIT),
              (2 * MiB + 5, 128 * KiB), (WIN_SIZE - 10, 10), (WIN_SIZE - 4096, 1)]
    for off, length in writes:
        data = rng.randbytes(length)
        h.pwrite(data, off)
        env.win[WIN_OFF + off:WIN_OFF + off + length] = data
        with open(env.path("win.img"), "rb") as f:
            f.seek(WIN_OFF + off)
            assert f.read(length) == data, (off, length)
        assert h.pread(length, off) == data
    # Past the window, though inside the file.
    assert nbd_errno(lambda: h.pwrite(b"y" * 20, WIN_SIZE - 10)) == errno.ENOSPC
    assert nbd_errno(lambda: h.pwrite(b"y", WIN_SIZE)) == errno.ENOSPC
    assert read_export(h, WIN_SIZE) == env.win[WIN_OFF:WIN_OFF + WIN_SIZE]
    h.shutdown()
    # Nothing outside the window changed; inside, exactly the writes.
    assert env.path("win.img").read_bytes() == env.win
    st = env.stats("win")["stats"]
    assert st["wr_operations"] == len(writes)
    assert st["wr_bytes"] == sum(length for _, length in writes)
