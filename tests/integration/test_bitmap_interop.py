"""Persistent dirty bitmaps, QEMU interop in both directions, through the real fleeced:

- bitmaps added with `qemu-img bitmap` (granularities 512 B to 2 GiB, enabled and
  disabled, enabled and disabled again, added late) and recorded by `qemu-io` writes,
  zeroes and discards show the same extents through fleeced (`nbdinfo --map`, libnbd
  block status with and without REQ_ONE) as through `qemu-nbd -B`, read-only and
  read-write, and a clean stop leaves them exactly as QEMU wrote them;
- after writes, zeroes and trims through fleeced (several connections, unaligned) and a
  clean stop, `qemu-img info` lists the bitmaps with their flags and no in-use,
  `qemu-img check` is clean, `qemu-nbd -B` reports exactly the granules written, and
  `qemu-img bitmap --merge` of fleeced's bitmaps yields the same content;
- while fleeced has the image open read-write, QEMU sees the bitmaps in-use;
- a bitmap QEMU left in_use (qemu-io killed with SIGKILL while holding the image open)
  loads inconsistent and all dirty, is never exported or reported clean, and can be
  cleared or removed."""

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import nbd
import pytest

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, nbdinfo_extents, qemu_img_bitmaps,
                            qemu_nbd_bitmap_map, query_dirty_bitmaps)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TIMEOUT = 60


def run(cmd, cwd=None, check=True, timeout=TIMEOUT):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")
    return r


def qemu_io(img, cmds):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    r = run(args + [img])
    bad = [line for line in (r.stdout + r.stderr).splitlines()
           if "error" in line.lower() or "failed" in line.lower()]
    assert not bad, f"qemu-io {img}: {bad}"


def qemu_check_clean(img):
    r = run(["qemu-img", "check", img], check=False)
    assert r.returncode == 0 and "No errors were found" in r.stdout, \
        f"qemu-img check (rc {r.returncode}):\n{r.stdout}{r.stderr}"


def config(img, *, read_only=False, export_bitmaps=(), bitmaps=()):
    """A config serving qcow2 image `img` as node and export `d`; `bitmaps` are
    (name, granularity, disabled) entries of the top-level `bitmaps:` list."""
    lines = ["listen:", "  - unix: {nbd_sock}", "control:", "  unix: {control_sock}",
             "nodes:", "  - node-name: d", "    driver: qcow2",
             f"    read-only: {str(read_only).lower()}",
             "    file:", "      driver: file", f"      filename: \"{img}\"",
             "exports:", "  - name: d", "    node: d", f"    writable: {str(not read_only).lower()}"]
    if export_bitmaps:
        lines.append(f"    bitmaps: [{', '.join(export_bitmaps)}]")
    if bitmaps:
        lines.append("bitmaps:")
        for name, gran, disabled in bitmaps:
            lines += ["  - node: d", f"    name: {name}", "    persistent: true",
                      f"    granularity: {gran}", f"    disabled: {str(disabled).lower()}"]
    return "\n".join(lines) + "\n"


def fleeced(tmp_path, img, **kw):
    return Daemon(tmp_path, config=config(img, **kw))


def libnbd_extents(uri, name, size, req_one=False):
    """Block status of qemu:dirty-bitmap:NAME over the whole disk with libnbd, in
    requests of at most 1 GiB (REQ_ONE: one extent per reply), merged like nbdinfo's."""
    ctx = dirty_bitmap_context(name)
    h = nbd.NBD()
    h.add_meta_context(ctx)
    h.connect_uri(uri)
    try:
        assert h.can_meta_context(ctx), f"{ctx} not negotiated"
        out = []
        off = 0
        while off < size:
            got = []

            def cb(metacontext, offset, entries, err):
                if metacontext == ctx:
                    got.extend(entries)
                return 0

            h.block_status(min(GiB, size - off), off, cb,
                           flags=nbd.CMD_FLAG_REQ_ONE if req_one else 0)
            assert got, f"no {ctx} extents at {off}"
            if req_one:
                assert len(got) == 2, f"REQ_ONE answered {len(got) // 2} extents"
            for i in range(0, len(got), 2):
                length, flags = got[i], got[i + 1]
                length = min(length, size - off)
                if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == off:
                    out[-1][1] += length
                else:
                    out.append([off, length, flags])
                off += length
        return [tuple(e) for e in out]
    finally:
        h.shutdown()


def flags_of(bitmaps):
    return {n: sorted(b["flags"]) for n, b in bitmaps.items()}


# ---- QEMU made and recorded: fleeced shows the same ---------------------------------------

SIZE_Q = 40 * MiB + 1536  # the last granule of most bitmaps ends inside it
# name -> (granularity, recording during pattern A, during pattern B)
QEMU_BITMAPS = {
    "g512": (512, True, True),
    "g4k": (4 * KiB, True, True),
    "g64k": (64 * KiB, True, True),
    "g1m": (MiB, True, False),        # disabled between the patterns: keeps only A
    "g2g": (2 * GiB, True, True),     # one granule for the whole disk
    "off": (64 * KiB, False, False),  # disabled from the start: stays empty
}
LATE = ("late", 16 * KiB)              # added after pattern A: records only B

PATTERN_A = [  # (qemu-io command, offset, length)
    ("write -P 0x11 {} {}", 100, 1000),
    ("write -P 0x12 {} {}", 65536 - 7, 14),
    ("write -z {} {}", MiB + 512, 70000),
    ("discard {} {}", 3 * MiB, 64 * KiB),
    ("write -P 0x13 {} {}", 20 * MiB - 4096, 3 * MiB + 12345),
    ("write -P 0x14 {} {}", SIZE_Q - 700, 700),
]
PATTERN_B = [
    ("write -P 0x21 {} {}", 7 * MiB + 3, 5),
    ("write -z -u {} {}", 9 * MiB, 2 * MiB),
    ("write -P 0x22 {} {}", 30 * MiB - 1, 2),
]


def qemu_made_image(dir_):
    img = Path(dir_) / "q.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", img, SIZE_Q])
    for name, (gran, rec_a, _) in QEMU_BITMAPS.items():
        run(["qemu-img", "bitmap", "--add", "-g", gran] + ([] if rec_a else ["--disable"]) +
            [img, name])
    qemu_io(img, [c.format(o, n) for c, o, n in PATTERN_A])
    run(["qemu-img", "bitmap", "--add", "-g", LATE[1], img, LATE[0]])
    for name, (_, rec_a, rec_b) in QEMU_BITMAPS.items():
        if rec_a and not rec_b:
            run(["qemu-img", "bitmap", "--disable", img, name])
    qemu_io(img, [c.format(o, n) for c, o, n in PATTERN_B])
    expected = {}
    for name, (gran, rec_a, rec_b) in QEMU_BITMAPS.items():
        ranges = ([(o, n) for _, o, n in PATTERN_A] if rec_a else []) + \
                 ([(o, n) for _, o, n in PATTERN_B] if rec_b else [])
        expected[name] = (gran, granules_touched(ranges, gran, SIZE_Q))
    expected[LATE[0]] = (LATE[1], granules_touched([(o, n) for _, o, n in PATTERN_B],
                                                   LATE[1], SIZE_Q))
    return img, expected


@pytest.fixture
def qemu_image(tmp_path):
    src = tmp_path / "img"
    src.mkdir()
    img, expected = qemu_made_image(src)
    # QEMU's own view, checked against the granules the patterns touch, so a mistake in
    # this test's model cannot pass for a fleeced bug.
    qmaps = {}
    for name, (gran, want) in expected.items():
        qmaps[name] = qemu_nbd_bitmap_map(tmp_path, img, name)
        assert dirty_granules_of(qmaps[name], gran, SIZE_Q) == want, \
            f"qemu-nbd: bitmap {name} is not what the qemu-io writes should have recorded"
    return img, expected, qmaps


@pytest.mark.parametrize("writable", [False, True], ids=["read-only", "read-write"])
def test_qemu_recorded_bitmaps_match_qemu_nbd(tmp_path, qemu_image, writable):
    img, expected, qmaps = qemu_image
    flags_before = flags_of(qemu_img_bitmaps(img))
    names = sorted(expected)
    with fleeced(tmp_path, img, read_only=not writable, export_bitmaps=names) as d:
        with Qmp(d.control_sock) as q:
            info = query_dirty_bitmaps(q, "d")
        assert sorted(info) == names, info
        for name in names:
            gran, want = expected[name]
            b = info[name]
            assert b["granularity"] == gran, b
            assert b["persistent"] is True, b
            assert b.get("inconsistent", False) is False, b
            assert b["recording"] == ("auto" in flags_before[name]), b
            assert b["count"] == sum(min(gran, SIZE_Q - g * gran) for g in want), b
            ctx = dirty_bitmap_context(name)
            assert nbdinfo_extents(d.uri("d"), ctx) == qmaps[name], \
                f"{ctx}: fleeced and qemu-nbd -B disagree"
            assert libnbd_extents(d.uri("d"), name, SIZE_Q) == qmaps[name], ctx
            assert libnbd_extents(d.uri("d"), name, SIZE_Q, req_one=True) == qmaps[name], ctx
        if writable:
            assert "in-use" in flags_of(qemu_img_bitmaps(img, force_share=True))["g64k"]
        assert d.stop() == 0, d.log_text()
    # A clean stop leaves QEMU's bitmaps exactly as they were: flags, content.
    assert flags_of(qemu_img_bitmaps(img)) == flags_before
    qemu_check_clean(img)
    for name in names:
        assert qemu_nbd_bitmap_map(tmp_path, img, name) == qmaps[name], name


# ---- written through fleeced: QEMU reads exactly the written granules ---------------------

SIZE_F = 48 * MiB + 512
FLEECE_BITMAPS = {  # ensured by the config: name -> (granularity, disabled)
    "fb": (4 * KiB, False),
    "f512": (512, False),
    "f1m": (MiB, False),
    "fdis": (64 * KiB, True),
}


def random_ops(rng, n):
    """(kind, offset, length): unaligned writes, zeroes and trims of 1 B to 300 KiB, a
    few aligned, one at the very end of the disk."""
    ops = [("write", SIZE_F - 333, 333)]
    for _ in range(n):
        length = rng.choice([1, rng.randint(2, 4096), rng.randint(4097, 300 * KiB), 64 * KiB])
        off = rng.randrange(0, SIZE_F - length)
        if rng.random() < 0.2:
            off -= off % (64 * KiB)
        kind = rng.choices(["write", "zero", "trim"], [6, 2, 2])[0]
        ops.append((kind, off, length))
    return ops


def apply_ops(uri, ops):
    h = nbd.NBD()
    h.connect_uri(uri)
    assert h.can_zero() and h.can_trim()
    try:
        for kind, off, length in ops:
            if kind == "write":
                h.pwrite(bytes([off % 251 + 1]) * length, off)
            elif kind == "zero":
                h.zero(length, off)
            else:
                h.trim(length, off)
        h.flush()
    finally:
        h.shutdown()


def write_concurrently(uri, ops, conns):
    errors = []

    def worker(part):
        try:
            apply_ops(uri, part)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(ops[i::conns],)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_fleeced_writes_read_by_qemu(tmp_path):
    rng = random.Random(4)
    img = tmp_path / "f.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", img, SIZE_F])
    # One bitmap QEMU made (recorded by fleeced), one QEMU made disabled (left alone).
    run(["qemu-img", "bitmap", "--add", "-g", 64 * KiB, img, "qb"])
    run(["qemu-img", "bitmap", "--add", "-g", 64 * KiB, "--disable", img, "qoff"])
    ops = random_ops(rng, 120)
    ranges = [(o, n) for _, o, n in ops]
    grans = {"qb": 64 * KiB, "qoff": 64 * KiB, **{n: g for n, (g, _) in FLEECE_BITMAPS.items()}}
    recording = {"qb": True, "qoff": False, **{n: not dis for n, (_, dis) in FLEECE_BITMAPS.items()}}
    expected = {n: granules_touched(ranges, g, SIZE_F) if recording[n] else set()
                for n, g in grans.items()}
    exported = sorted(grans)
    cfg_bitmaps = [(n, g, dis) for n, (g, dis) in FLEECE_BITMAPS.items()]
    with fleeced(tmp_path, img, export_bitmaps=exported, bitmaps=cfg_bitmaps) as d:
        # While fleeced has the image open read-write QEMU must not trust the copy.
        inuse = flags_of(qemu_img_bitmaps(img, force_share=True))
        for name in grans:
            assert "in-use" in inuse.get(name, []), f"{name}: {inuse}"
        write_concurrently(d.uri("d"), ops, conns=4)
        # The live view through fleeced.
        for name in exported:
            got = dirty_granules_of(nbdinfo_extents(d.uri("d"), dirty_bitmap_context(name)),
                                    grans[name], SIZE_F)
            assert got == expected[name], \
                f"{name} live: missing {sorted(expected[name] - got)[:10]}, " \
                f"extra {sorted(got - expected[name])[:10]}"
        with Qmp(d.control_sock) as q:
            info = query_dirty_bitmaps(q, "d")
        for name, g in grans.items():
            assert info[name]["count"] == sum(min(g, SIZE_F - i * g) for i in expected[name]), \
                (name, info[name])
            assert info[name]["recording"] == recording[name]
        d.signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0, d.log_text()
        d.log.close()

    bitmaps = qemu_img_bitmaps(img)
    for name, g in grans.items():
        assert name in bitmaps, f"{name} not in qemu-img info: {bitmaps}"
        assert bitmaps[name]["granularity"] == g
        assert bitmaps[name]["flags"] == (["auto"] if recording[name] else []), bitmaps[name]
    qemu_check_clean(img)
    qmaps = {}
    for name, g in grans.items():
        qmaps[name] = qemu_nbd_bitmap_map(tmp_path, img, name)
        got = dirty_granules_of(qmaps[name], g, SIZE_F)
        assert got == expected[name], \
            f"qemu-nbd -B {name}: missing {sorted(expected[name] - got)[:10]}, " \
            f"extra {sorted(got - expected[name])[:10]}"

    # qemu-img bitmap --merge reads fleeced's bitmaps: into an empty bitmap of the same
    # granularity (identical map) and of a coarser one (every touched granule).
    run(["qemu-img", "bitmap", "--add", "-g", 4 * KiB, "--disable", img, "copy"])
    run(["qemu-img", "bitmap", "--merge", "fb", img, "copy"])
    run(["qemu-img", "bitmap", "--add", "-g", 2 * MiB, "--disable", img, "coarse"])
    run(["qemu-img", "bitmap", "--merge", "fb", "--merge", "qb", img, "coarse"])
    assert qemu_nbd_bitmap_map(tmp_path, img, "copy") == qmaps["fb"]
    coarse = dirty_granules_of(qemu_nbd_bitmap_map(tmp_path, img, "coarse"), 2 * MiB, SIZE_F)
    assert coarse == granules_touched(ranges, 2 * MiB, SIZE_F)
    qemu_check_clean(img)

    # Back in fleeced (with QEMU's merges): the same content, still recording.
    with fleeced(tmp_path, img, export_bitmaps=exported + ["copy"], bitmaps=cfg_bitmaps) as d:
        for name in exported:
            assert nbdinfo_extents(d.uri("d"), dirty_bitmap_context(name)) == qmaps[name], name
        assert nbdinfo_extents(d.uri("d"), dirty_bitmap_context("copy")) == qmaps["fb"]
        apply_ops(d.uri("d"), [("write", 47 * MiB + 1, 1)])
        assert d.stop() == 0, d.log_text()
    got = dirty_granules_of(qemu_nbd_bitmap_map(tmp_path, img, "fb"), 4 * KiB, SIZE_F)
    assert got == expected["fb"] | {(47 * MiB + 1) // (4 * KiB)}
    got = dirty_granules_of(qemu_nbd_bitmap_map(tmp_path, img, "copy"), 4 * KiB, SIZE_F)
    assert got == expected["fb"], "a disabled bitmap recorded a write"
    qemu_check_clean(img)


def test_bitmap_created_by_command_is_seen_by_qemu(tmp_path):
    """block-dirty-bitmap-add persistent at run time, recorded, stored at a clean stop;
    a non-persistent one never reaches the image."""
    img = tmp_path / "c.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", img, 16 * MiB])
    with fleeced(tmp_path, img) as d:
        with Qmp(d.control_sock) as q:
            for args in ({"node": "d", "name": "p", "granularity": 8192, "persistent": True},
                         {"node": "d", "name": "t", "persistent": False}):
                assert q.cmd("block-dirty-bitmap-add", args) == {"return": {}}
            apply_ops(d.uri("d"), [("write", 5 * MiB - 1, 2), ("zero", 8 * MiB, 1)])
            info = query_dirty_bitmaps(q, "d")
            assert info["p"]["count"] == 3 * 8192 and info["t"]["count"] == 3 * 65536, info
        assert d.stop() == 0, d.log_text()
    bitmaps = qemu_img_bitmaps(img)
    assert sorted(bitmaps) == ["p"]
    assert bitmaps["p"]["flags"] == ["auto"] and bitmaps["p"]["granularity"] == 8192
    want = {(5 * MiB - 1) // 8192, 5 * MiB // 8192, 8 * MiB // 8192}
    assert dirty_granules_of(qemu_nbd_bitmap_map(tmp_path, img, "p"), 8192) == want
    qemu_check_clean(img)


# ---- in_use left by QEMU: inconsistent, all dirty, clear or remove -------------------------

def wait_export_gone(q, export_id, timeout=10):
    deadline = time.monotonic() + timeout
    while any(e["id"] == export_id for e in q.cmd("query-block-exports")["return"]):
        assert time.monotonic() < deadline, f"export {export_id} still listed"
        time.sleep(0.05)


def qemu_io_killed(img, cmds):
    """Runs qemu-io read-write on img, waits until its commands ran, and kills it with
    SIGKILL while it still holds the image open (its bitmaps stay in_use)."""
    args = ["stdbuf", "-oL", "qemu-io", "-f", "qcow2"]  # a line as soon as a command ran
    for c in cmds + ["sleep 60000"]:
        args += ["-c", c]
    p = subprocess.Popen(args + [str(img)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        line = p.stdout.readline()  # "wrote N/N bytes at offset O" after the first write
        assert "wrote" in line, line
        deadline = time.monotonic() + 10
        while "in-use" not in str(qemu_img_bitmaps(img, force_share=True)):
            assert time.monotonic() < deadline, "qemu-io never flagged its bitmaps in_use"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()


SIZE_U = 16 * MiB


def unclean_qemu_image(dir_):
    img = Path(dir_) / "u.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", img, SIZE_U])
    run(["qemu-img", "bitmap", "--add", img, "b"])
    run(["qemu-img", "bitmap", "--add", "-g", 4096, img, "keep"])
    qemu_io(img, ["write -P 1 0 4096"])          # recorded and stored cleanly
    qemu_io_killed(img, ["write -P 2 8M 4096"])  # recorded, never stored
    flags = flags_of(qemu_img_bitmaps(img))
    assert flags["b"] == ["auto", "in-use"], flags
    return img


@pytest.mark.parametrize("how", ["clear", "remove"])
def test_bitmap_left_in_use_by_qemu(tmp_path, how):
    img = unclean_qemu_image(tmp_path)
    with fleeced(tmp_path, img) as d:
        with Qmp(d.control_sock) as q:
            info = query_dirty_bitmaps(q, "d")
            for name in ("b", "keep"):
                assert info[name]["inconsistent"] is True, info[name]
                assert info[name]["count"] == SIZE_U, info[name]  # all dirty, never clean
            # Exporting it is refused (QEMU's way) or shows it all dirty: never clean.
            r = q.cmd("block-export-add", {"type": "nbd", "id": "x", "node-name": "d",
                                           "name": "x", "bitmaps": ["b"]})
            if "return" in r:
                ext = nbdinfo_extents(d.uri("x"), dirty_bitmap_context("b"))
                assert ext == [(0, SIZE_U, 1)], ext
                assert q.cmd("block-export-del", {"id": "x", "mode": "hard"}) == {"return": {}}
                wait_export_gone(q, "x")
            # Inconsistent bitmaps cannot be enabled, disabled or merged.
            r = q.cmd("block-dirty-bitmap-disable", {"node": "d", "name": "b"})
            assert "error" in r and "inconsistent" in r["error"]["desc"], r
            r = q.cmd(f"block-dirty-bitmap-{how}", {"node": "d", "name": "b"})
            assert r == {"return": {}}, r
            info = query_dirty_bitmaps(q, "d")
            if how == "remove":
                assert "b" not in info
            else:
                assert info["b"]["inconsistent"] is False and info["b"]["count"] == 0, info["b"]
                assert info["b"]["recording"] is True
            assert info["keep"]["inconsistent"] is True  # the other one is left as it was
            apply_ops(d.uri("d"), [("write", 3 * MiB + 5, 10)])
            if how == "clear":
                assert query_dirty_bitmaps(q, "d")["b"]["count"] == 65536
                r = q.cmd("block-export-add", {"type": "nbd", "id": "x", "node-name": "d",
                                               "name": "x", "bitmaps": ["b"]})
                assert r == {"return": {}}, r
                ext = nbdinfo_extents(d.uri("x"), dirty_bitmap_context("b"))
                assert dirty_granules_of(ext, 65536, SIZE_U) == {48}
        assert d.stop() == 0, d.log_text()
    bitmaps = qemu_img_bitmaps(img)
    qemu_check_clean(img)
    # The still-inconsistent bitmap: QEMU must not trust a stale copy either — it stays
    # in_use, or it was stored all dirty.
    if "in-use" not in bitmaps["keep"]["flags"]:
        assert qemu_nbd_bitmap_map(tmp_path, img, "keep") == [(0, SIZE_U, 1)]
    if how == "remove":
        assert "b" not in bitmaps
    else:
        assert bitmaps["b"]["flags"] == ["auto"], bitmaps["b"]
        ext = qemu_nbd_bitmap_map(tmp_path, img, "b")
        assert dirty_granules_of(ext, 65536, SIZE_U) == {48}


def test_bitmap_left_in_use_read_only(tmp_path):
    """Read-only, an in_use bitmap is inconsistent too, cannot be cleared, and the image
    is left untouched."""
    img = unclean_qemu_image(tmp_path)
    before = img.read_bytes()
    with fleeced(tmp_path, img, read_only=True) as d:
        with Qmp(d.control_sock) as q:
            info = query_dirty_bitmaps(q, "d")
            assert info["b"]["inconsistent"] is True and info["b"]["count"] == SIZE_U, info
            r = q.cmd("block-dirty-bitmap-clear", {"node": "d", "name": "b"})
            assert "error" in r, r
            r = q.cmd("block-dirty-bitmap-remove", {"node": "d", "name": "b"})
            assert "error" in r, r
        assert d.stop() == 0, d.log_text()
    assert img.read_bytes() == before
