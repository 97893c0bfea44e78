"""End-to-end qemu:dirty-bitmap:NAME through the real daemon, as a backup tool meets it:

- an export's bitmaps are listed like QEMU lists them (no queries, `qemu:`,
  `qemu:dirty-bitmap:`, an exact name) by libnbd and nbdinfo, and only exact names can
  be selected;
- writes, zeroes and trims through a writable export show up at once as dirty granules
  (nbdinfo --map, libnbd block status with and without REQ_ONE, and QEMU's own NBD client
  through `qemu-img map` with x-dirty-bitmap, which selects only that context);
- an exported bitmap is busy (cannot be removed) until its export is gone; a missing
  bitmap is QEMU's "Bitmap 'X' is not found" for block-export-add and a start-up error
  naming the export and the bitmap for a config export;
- the map of a 1 TiB disk with a few thousand scattered dirty granules comes back fast.
The bitmaps here are made over QMP (block-dirty-bitmap-add) on a raw node; QEMU interop
of persistent bitmaps is tests/integration/test_bitmap_interop.py."""

import json
import random
import subprocess
import time

import nbd
import pytest

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, nbdinfo_extents, query_dirty_bitmaps)

KiB = 1 << 10
MiB = 1 << 20
TiB = 1 << 40
SIZE = 64 * MiB
GRAN = 64 * KiB
BASE = "base:allocation"
DEPTH = "qemu:allocation-depth"
NIGHTLY = dirty_bitmap_context("nightly")
WEEKLY = dirty_bitmap_context("weekly")

CONFIG = """
listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: {dir}/disk.raw }}
"""


def make_sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def ok(qmp, cmd, args=None):
    r = qmp.cmd(cmd, args)
    assert "return" in r, f"{cmd} {args} -> {r}"
    return r["return"]


def err(qmp, cmd, args=None):
    r = qmp.cmd(cmd, args)
    assert "error" in r, f"{cmd} {args} -> {r}"
    return r["error"]["desc"]


def start(tmp_path, size=SIZE):
    make_sparse(tmp_path / "disk.raw", size)
    return Daemon(tmp_path, config=CONFIG).start()


@pytest.fixture
def daemon(tmp_path):
    """disk0 with bitmaps nightly (64 KiB) and weekly (1 MiB), exported writable as
    `live` with both and allocation-depth, and as `plain` (read-only) with none."""
    d = start(tmp_path)
    try:
        with Qmp(d.control_sock) as q:
            ok(q, "block-dirty-bitmap-add", {"node": "disk0", "name": "nightly",
                                             "granularity": GRAN})
            ok(q, "block-dirty-bitmap-add", {"node": "disk0", "name": "weekly",
                                             "granularity": MiB})
            ok(q, "block-export-add", {"type": "nbd", "id": "live", "node-name": "disk0",
                                       "name": "live", "writable": True,
                                       "bitmaps": ["nightly", "weekly"],
                                       "allocation-depth": True})
            ok(q, "block-export-add", {"type": "nbd", "id": "plain", "node-name": "disk0",
                                       "name": "plain"})
        yield d
        assert d.alive(), "fleeced died:\n" + d.log_text()
    finally:
        d.stop()


def list_contexts(uri, queries=None):
    # libnbd 1.14: the queries of LIST are the contexts added with add_meta_context.
    h = nbd.NBD()
    h.set_opt_mode(True)
    for q in queries or []:
        h.add_meta_context(q)
    h.connect_uri(uri)
    found = []
    h.opt_list_meta_context(lambda name: found.append(name))
    h.opt_abort()
    return found


def block_status(h, length, offset, context, flags=0):
    """[(length, flags)] of one BLOCK_STATUS reply for `context`."""
    seen = {}

    def collect(metacontext, off, entries, err):
        seen[metacontext] = list(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(length, offset, collect, flags=flags)
    return seen.get(context)


def test_listed_like_qemu(daemon):
    live = daemon.uri("live")
    assert list_contexts(live) == [BASE, DEPTH, NIGHTLY, WEEKLY]
    assert list_contexts(live, ["qemu:"]) == [DEPTH, NIGHTLY, WEEKLY]
    assert list_contexts(live, ["qemu:dirty-bitmap:"]) == [NIGHTLY, WEEKLY]
    assert list_contexts(live, [WEEKLY]) == [WEEKLY]
    assert list_contexts(live, ["qemu:dirty-bitmap:night"]) == []
    assert list_contexts(live, ["qemu:dirty-bitmap"]) == []
    assert list_contexts(live, ["base:", WEEKLY]) == [BASE, WEEKLY]
    # The same node exported without bitmaps offers none of them.
    assert list_contexts(daemon.uri("plain")) == [BASE]
    assert list_contexts(daemon.uri("plain"), ["qemu:dirty-bitmap:"]) == []

    out = subprocess.run(["nbdinfo", "--json", "--list", daemon.uri()], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    exports = {e["export-name"]: e for e in json.loads(out)["exports"]}
    assert exports["live"]["contexts"] == [BASE, DEPTH, NIGHTLY, WEEKLY]
    assert exports["plain"]["contexts"] == [BASE]


def test_only_exact_names_are_selected(daemon):
    for wildcard in ["qemu:", "qemu:dirty-bitmap:"]:
        h = nbd.NBD()
        h.add_meta_context(wildcard)
        h.add_meta_context(NIGHTLY)
        h.connect_uri(daemon.uri("live"))
        assert not h.can_meta_context(wildcard)
        assert h.can_meta_context(NIGHTLY)
        assert not h.can_meta_context(WEEKLY)
        h.shutdown()


def test_writes_show_as_dirty_granules(daemon):
    h = nbd.NBD()
    h.add_meta_context(NIGHTLY)
    h.add_meta_context(WEEKLY)
    h.connect_uri(daemon.uri("live"))
    assert block_status(h, SIZE, 0, NIGHTLY) == [(SIZE, 0)]

    rng = random.Random(4)
    writes = [(rng.randrange(0, SIZE - 8192), rng.choice([1, 512, 4096, 8192]))
              for _ in range(40)]
    for off, length in writes:
        h.pwrite(b"\xa5" * length, off)
    zeroes = [(10 * MiB + 1000, 3 * GRAN)]
    trims = [(40 * MiB, 2 * GRAN)]
    for off, length in zeroes:
        h.zero(length, off)
    for off, length in trims:
        h.trim(length, off)
    touched = writes + zeroes + trims

    # Seen at once, by another client, through nbdinfo.
    for name, gran in [("nightly", GRAN), ("weekly", MiB)]:
        ext = nbdinfo_extents(daemon.uri("live"), dirty_bitmap_context(name))
        assert sum(length for _, length, _ in ext) == SIZE
        assert dirty_granules_of(ext, gran, SIZE) == granules_touched(touched, gran, SIZE), name

    # REQ_ONE: one extent, never past the request, the right state.
    first_dirty = min(granules_touched(touched, GRAN, SIZE))
    got = block_status(h, 3 * GRAN, first_dirty * GRAN, NIGHTLY, flags=nbd.CMD_FLAG_REQ_ONE)
    assert len(got) == 1 and got[0][1] == 1 and 0 < got[0][0] <= 3 * GRAN
    got = block_status(h, 1000, 60 * MiB, NIGHTLY,
                       flags=nbd.CMD_FLAG_REQ_ONE)
    assert len(got) == 1 and got[0][0] <= 1000
    h.shutdown()


def test_qemu_nbd_client_reads_the_bitmap(daemon):
    """QEMU's NBD client with x-dirty-bitmap selects only that context and reports dirty
    areas as "data": false in qemu-img map (docs/interop/nbd.rst, iotests' way)."""
    h = nbd.NBD()
    h.connect_uri(daemon.uri("live"))
    writes = [(3 * GRAN + 17, 100), (7 * MiB, 3 * GRAN), (SIZE - 1, 1)]
    for off, length in writes:
        h.pwrite(b"\x01" * length, off)
    h.shutdown()

    opts = (f"driver=nbd,server.type=unix,server.path={daemon.nbd_sock},export=live,"
            f"x-dirty-bitmap={NIGHTLY}")
    out = subprocess.run(["qemu-img", "map", "--output=json", "--image-opts", opts],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    dirty = set()
    for e in json.loads(out):
        if not e["data"]:
            assert e["start"] % GRAN == 0 and e["length"] % GRAN == 0
            dirty.update(range(e["start"] // GRAN, (e["start"] + e["length"]) // GRAN))
    assert dirty == granules_touched(writes, GRAN, SIZE)


def test_exported_bitmap_is_busy_until_the_export_goes(daemon):
    h = nbd.NBD()
    h.add_meta_context(NIGHTLY)
    h.connect_uri(daemon.uri("live"))
    with Qmp(daemon.control_sock) as q:
        desc = err(q, "block-dirty-bitmap-remove", {"node": "disk0", "name": "nightly"})
        assert "in use" in desc, desc
        info = query_dirty_bitmaps(q, "disk0")
        if "busy" in info["nightly"]:
            assert info["nightly"]["busy"] is True
        # Deleting the export (mode hard: its client is disconnected) releases it once
        # the connection has let go.
        ok(q, "block-export-del", {"id": "live", "mode": "hard"})
        deadline = time.monotonic() + 10
        while True:
            r = q.cmd("block-dirty-bitmap-remove", {"node": "disk0", "name": "nightly"})
            if "return" in r or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "return" in r, r
        assert "nightly" not in query_dirty_bitmaps(q, "disk0")


def test_export_add_with_missing_bitmap(daemon):
    with Qmp(daemon.control_sock) as q:
        assert err(q, "block-export-add",
                   {"type": "nbd", "id": "x", "node-name": "disk0", "name": "x",
                    "bitmaps": ["monthly"]}) == "Bitmap 'monthly' is not found"
        assert err(q, "block-export-add",
                   {"type": "nbd", "id": "x", "node-name": "disk0", "name": "x",
                    "bitmaps": [{"node": "disk0", "name": "monthly"}]}) \
            == "Dirty bitmap 'monthly' not found"
        exports = {e["id"] for e in ok(q, "query-block-exports")}
        assert exports == {"live", "plain"}


def test_config_export_with_missing_bitmap_fails_start(tmp_path):
    make_sparse(tmp_path / "disk.raw", SIZE)
    config = CONFIG + """exports:
  - name: vm
    node: disk0
    bitmaps: [monthly]
"""
    d = Daemon(tmp_path, config=config)
    with pytest.raises(RuntimeError):
        d.start()
    assert d.proc.wait(10) != 0
    d.log.close()
    log = d.log_path.read_text()
    assert "export 'vm'" in log and "Bitmap 'monthly' is not found" in log, log


def test_config_export_offers_a_config_bitmap(tmp_path):
    make_sparse(tmp_path / "disk.raw", SIZE)
    config = CONFIG + """exports:
  - {{ name: vm, node: disk0, writable: true, bitmaps: [nightly] }}
bitmaps:
  - {{ node: disk0, name: nightly, persistent: false, granularity: 65536 }}
"""
    with Daemon(tmp_path, config=config) as d:
        assert list_contexts(d.uri("vm"), ["qemu:"]) == [NIGHTLY]
        h = nbd.NBD()
        h.connect_uri(d.uri("vm"))
        h.pwrite(b"x" * 10, 5 * GRAN + 3)
        h.shutdown()
        ext = nbdinfo_extents(d.uri("vm"), NIGHTLY)
        assert dirty_granules_of(ext, GRAN, SIZE) == {5}


def test_tebibyte_map_is_fast(tmp_path):
    d = start(tmp_path, size=TiB)
    try:
        with Qmp(d.control_sock) as q:
            ok(q, "block-dirty-bitmap-add", {"node": "disk0", "name": "nightly",
                                             "granularity": GRAN})
            ok(q, "block-export-add", {"type": "nbd", "id": "big", "node-name": "disk0",
                                       "writable": True, "bitmaps": ["nightly"]})
        rng = random.Random(1)
        granules = sorted(rng.sample(range(TiB // GRAN), 3000))
        h = nbd.NBD()
        h.connect_uri(d.uri("disk0"))
        for g in granules:
            h.pwrite(b"\x5a" * 512, g * GRAN + 4096)
        h.shutdown()

        t0 = time.monotonic()
        ext = nbdinfo_extents(d.uri("disk0"), NIGHTLY)
        elapsed = time.monotonic() - t0
        assert sum(length for _, length, _ in ext) == TiB
        assert dirty_granules_of(ext, GRAN, TiB) == set(granules)
        assert elapsed < 5.0, f"nbdinfo --map of 1 TiB took {elapsed:.2f}s"
    finally:
        d.stop()
