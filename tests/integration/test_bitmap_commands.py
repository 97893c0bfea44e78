"""End-to-end tests of the dirty-bitmap commands through the real daemon and fleecectl:
block-dirty-bitmap-add/-remove/-clear/-enable/-disable/-merge, transaction (all or
nothing), query-dirty-bitmaps, and what a backup client sees over NBD (nbdinfo --map of
qemu:dirty-bitmap:NAME) after writes through fleeced. Persistent bitmaps on a qcow2 image
and in a raw node's bitmap-file are checked afterwards with qemu-img info and qemu-nbd -B,
as a user of QEMU's tools would."""

import json
import subprocess

import nbd
import pytest

from fleece_harness import (FLEECECTL, Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, make_image, nbdinfo_extents, qemu_img_bitmaps,
                            qemu_nbd_bitmap_map, query_dirty_bitmaps)

MiB = 1 << 20
G = 65536
DISK = 16 * MiB

RAW_CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: "{dir}/disk0.raw" }}
  - node-name: disk1
    driver: raw
    file: {{ driver: file, filename: "{dir}/disk1.raw" }}
exports:
  - {{ name: disk0, node: disk0, writable: true }}
  - {{ name: disk1, node: disk1, writable: true }}
"""

QCOW2_CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: vm
    driver: qcow2
    file: {{ driver: file, filename: "{dir}/vm.qcow2" }}
  - node-name: raw0
    driver: raw
    file: {{ driver: file, filename: "{dir}/raw0.raw" }}
    bitmap-file: "{dir}/raw0.bitmaps.qcow2"
exports:
  - {{ name: vm, node: vm, writable: true }}
  - {{ name: raw0, node: raw0, writable: true }}
"""


@pytest.fixture
def daemon(tmp_path):
    make_image(tmp_path / "disk0.raw", DISK)
    make_image(tmp_path / "disk1.raw", DISK)
    d = Daemon(tmp_path, config=RAW_CONFIG).start(wait_control=True)
    yield d
    assert d.alive(), "fleeced died during the test:\n" + d.log_text()
    assert d.stop() == 0


def ctl(d, *args, json_output=False):
    cmd = [str(FLEECECTL), "--socket", str(d.control_sock)]
    if json_output:
        cmd.append("--json")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)


def nbd_write(d, export, ranges, flush=True):
    """Writes each (offset, length) of `export` through an NBD client."""
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(str(d.nbd_sock))
    for off, length in ranges:
        h.pwrite(b"\xa5" * length, off)
    if flush:
        h.flush()
    h.shutdown()


def ok(q, command, **arguments):
    r = q.cmd(command, arguments)
    assert "return" in r, f"{command} {arguments}: {r}"
    return r["return"]


def error(q, command, **arguments):
    r = q.cmd(command, arguments)
    assert "error" in r, f"{command} {arguments} succeeded: {r}"
    assert r["error"]["class"] == "GenericError"
    return r["error"]["desc"]


def exported_dirty_granules(d, q, node, bitmap, granularity=G, disk=DISK):
    """The granules `bitmap` of `node` marks dirty, as an NBD client reads them."""
    export = f"{node}-{bitmap}-view"
    ok(q, "block-export-add", type="nbd", id=export, name=export, **{"node-name": node},
       bitmaps=[bitmap])
    try:
        extents = nbdinfo_extents(d.uri(export), dirty_bitmap_context(bitmap))
    finally:
        ok(q, "block-export-del", id=export)
    return dirty_granules_of(extents, granularity, disk)


def test_writes_through_nbd_are_recorded_and_served(daemon):
    writes = [(0, 512), (3 * G + 100, 2 * G), (DISK - 512, 512)]
    with Qmp(daemon.control_sock) as q:
        ok(q, "block-dirty-bitmap-add", node="disk0", name="nightly")
        ok(q, "block-dirty-bitmap-add", node="disk0", name="fine", granularity=4096)
        ok(q, "block-dirty-bitmap-add", node="disk0", name="off", disabled=True)
        nbd_write(daemon, "disk0", writes)
        bitmaps = query_dirty_bitmaps(q, "disk0")
        expected = granules_touched(writes, G, DISK)
        assert bitmaps["nightly"]["count"] == len(expected) * G
        assert bitmaps["nightly"]["recording"] is True
        assert bitmaps["nightly"]["persistent"] is False
        assert bitmaps["off"]["count"] == 0
        assert bitmaps["fine"]["granularity"] == 4096
        assert bitmaps["fine"]["count"] == len(granules_touched(writes, 4096, DISK)) * 4096
        assert exported_dirty_granules(daemon, q, "disk0", "nightly") == expected
        assert exported_dirty_granules(daemon, q, "disk0", "fine", 4096) == \
            granules_touched(writes, 4096, DISK)
        # The other node's writes are not this node's.
        nbd_write(daemon, "disk1", [(8 * MiB, 4096)])
        assert query_dirty_bitmaps(q, "disk0")["nightly"]["count"] == len(expected) * G
        # query-named-block-nodes carries QEMU's BlockDirtyInfo list.
        nodes = {n["node-name"]: n for n in ok(q, "query-named-block-nodes")}
        assert [b["name"] for b in nodes["disk0"]["dirty-bitmaps"]] == ["fine", "nightly", "off"]
        assert "dirty-bitmaps" not in nodes["disk1"]


def test_an_exported_bitmap_is_busy_until_the_export_goes(daemon):
    with Qmp(daemon.control_sock) as q:
        ok(q, "block-dirty-bitmap-add", node="disk0", name="b")
        ok(q, "block-export-add", type="nbd", id="view", name="view", **{"node-name": "disk0"},
           bitmaps=["b"])
        assert query_dirty_bitmaps(q, "disk0")["b"]["busy"] is True
        busy = "Bitmap 'b' is currently in use by another operation and cannot be used"
        for command in ("block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
                        "block-dirty-bitmap-disable"):
            assert error(q, command, node="disk0", name="b") == busy
        ok(q, "block-export-del", id="view")
        assert query_dirty_bitmaps(q, "disk0")["b"]["busy"] is False
        ok(q, "block-dirty-bitmap-remove", node="disk0", name="b")
        assert query_dirty_bitmaps(q, "disk0") == {}


def test_incremental_backup_transaction_is_all_or_nothing(daemon):
    with Qmp(daemon.control_sock) as q:
        ok(q, "block-dirty-bitmap-add", node="disk0", name="nightly")
        nbd_write(daemon, "disk0", [(G, 4096), (5 * G, 4096)])
        before = query_dirty_bitmaps(q)
        step = [
            {"type": "block-dirty-bitmap-add",
             "data": {"node": "disk0", "name": "backup-1", "disabled": True}},
            {"type": "block-dirty-bitmap-merge",
             "data": {"node": "disk0", "target": "backup-1", "bitmaps": ["nightly"]}},
            {"type": "block-dirty-bitmap-clear", "data": {"node": "disk0", "name": "nightly"}},
        ]
        # A failing last action: nothing happened.
        failing = step + [{"type": "block-dirty-bitmap-enable",
                           "data": {"node": "disk1", "name": "nope"}}]
        assert error(q, "transaction", actions=failing) == "Dirty bitmap 'nope' not found"
        assert query_dirty_bitmaps(q) == before
        assert exported_dirty_granules(daemon, q, "disk0", "nightly") == {1, 5}
        # The same step succeeding: backup-1 holds what nightly had; nightly restarts.
        assert ok(q, "transaction", actions=step) == {}
        nbd_write(daemon, "disk0", [(9 * G, 512)])
        after = query_dirty_bitmaps(q, "disk0")
        assert after["backup-1"]["recording"] is False
        assert exported_dirty_granules(daemon, q, "disk0", "backup-1") == {1, 5}
        assert exported_dirty_granules(daemon, q, "disk0", "nightly") == {9}
        # Argument errors name the action's parameter; nothing runs.
        assert error(q, "transaction", actions=[
            step[0], {"type": "block-dirty-bitmap-clear", "data": {"node": "disk0"}}]) == \
            "Parameter 'actions[1].data.name' is missing"
        assert error(q, "transaction", actions=[{"type": "drive-backup", "data": {}}]) == \
            "Parameter 'actions[0].type' does not accept value 'drive-backup'"
        assert error(q, "transaction", actions=step[:1],
                     properties={"completion-mode": "grouped"}) == \
            "Action 'block-dirty-bitmap-add' does not support transaction property " \
            "completion-mode = grouped"
        assert set(query_dirty_bitmaps(q, "disk0")) == {"backup-1", "nightly"}


def test_commands_errors_use_qemus_messages(daemon):
    with Qmp(daemon.control_sock) as q:
        ok(q, "block-dirty-bitmap-add", node="disk0", name="b")
        assert error(q, "block-dirty-bitmap-add", node="disk0", name="b") == \
            "Bitmap already exists: b"
        assert error(q, "block-dirty-bitmap-add", node="nope", name="b") == \
            "Cannot find device='nope' nor node-name='nope'"
        assert error(q, "block-dirty-bitmap-add", node="disk0", name="c", granularity=3000) == \
            "Granularity must be power of 2 and at least 512"
        assert error(q, "block-dirty-bitmap-add", node="disk0", name="c", persistent=True) \
            .startswith("Can't make bitmap 'c' persistent in 'disk0'")
        assert error(q, "block-dirty-bitmap-clear", node="nope", name="b") == \
            "Node 'nope' not found"
        assert error(q, "block-dirty-bitmap-enable", node="disk0", name="x") == \
            "Dirty bitmap 'x' not found"
        ok(q, "block-dirty-bitmap-add", node="disk1", name="other")
        ok(q, "block-dirty-bitmap-merge", node="disk0", target="b",
           bitmaps=["b", {"node": "disk1", "name": "other"}])
        assert error(q, "block-dirty-bitmap-merge", node="disk0", target="b",
                     bitmaps=[{"node": "disk1", "name": "b"}]) == "Dirty bitmap 'b' not found"


def test_fleecectl_bitmap_subcommands(daemon):
    assert ctl(daemon, "bitmap", "add", "disk0", "nightly").returncode == 0
    r = ctl(daemon, "bitmap", "add", "disk0", "weekly", "--granularity", "1M", "--disabled")
    assert r.returncode == 0 and r.stdout == ""
    nbd_write(daemon, "disk0", [(0, 512), (G, 2 * G)])
    r = ctl(daemon, "bitmap", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "NODE   NAME     GRANULARITY  DIRTY    FLAGS",
        "disk0  nightly  64 KiB       192 KiB  recording",
        "disk0  weekly   1 MiB        0 B      disabled",
    ]
    # A node without a bitmap store gets an in-memory bitmap by default.
    listed = ctl(daemon, "bitmap", "list", "disk0", json_output=True)
    assert listed.returncode == 0
    infos = json.loads(listed.stdout)
    assert [(b["name"], b["persistent"]) for b in infos] == [("nightly", False), ("weekly", False)]

    assert ctl(daemon, "bitmap", "add", "disk1", "x").returncode == 0
    nbd_write(daemon, "disk1", [(15 * MiB, 512)])
    assert ctl(daemon, "bitmap", "merge", "disk0", "weekly", "nightly", "disk1:x").returncode == 0
    weekly = {b["name"]: b for b in json.loads(
        ctl(daemon, "bitmap", "list", "disk0", json_output=True).stdout)}["weekly"]
    assert weekly["count"] == 2 * MiB  # granules 0 and 15 of 1 MiB
    assert ctl(daemon, "bitmap", "clear", "disk0", "nightly").returncode == 0
    assert ctl(daemon, "bitmap", "disable", "disk0", "nightly").returncode == 0
    assert ctl(daemon, "bitmap", "enable", "disk0", "nightly").returncode == 0
    assert ctl(daemon, "--json", "bitmap", "remove", "disk0", "weekly").stdout.strip() == "{}"

    # Refusals exit 1 with the daemon's reason; bad command lines exit 64.
    r = ctl(daemon, "bitmap", "remove", "disk0", "weekly")
    assert (r.returncode, r.stderr) == (1, "fleecectl: Dirty bitmap 'weekly' not found\n")
    r = ctl(daemon, "bitmap", "add", "disk0", "p", "--persistent")
    assert r.returncode == 1 and "persistent in 'disk0'" in r.stderr
    assert ctl(daemon, "bitmap", "add", "disk0", "g", "--granularity", "lots").returncode == 64
    assert ctl(daemon, "bitmap", "add", "disk0", "p", "--persistent",
               "--no-persistent").returncode == 64
    assert ctl(daemon, "bitmap", "merge", "disk0", "nightly").returncode == 64
    assert ctl(daemon, "bitmap", "list", "nope").returncode == 1
    r = ctl(daemon, "bitmap", "list")
    assert [line.split()[:2] for line in r.stdout.splitlines()[1:]] == \
        [["disk0", "nightly"], ["disk1", "x"]]


# ---- persistent bitmaps: a qcow2 image's own, and a raw node's bitmap-file -------------------

@pytest.fixture
def persistent_daemon(tmp_path):
    make_image(tmp_path / "vm.qcow2", DISK, fmt="qcow2")
    make_image(tmp_path / "raw0.raw", DISK)
    d = Daemon(tmp_path, config=QCOW2_CONFIG).start(wait_control=True)
    yield d
    if d.alive():
        assert d.stop() == 0


@pytest.mark.parametrize("node,image,export", [
    ("vm", "vm.qcow2", "vm"),
    ("raw0", "raw0.bitmaps.qcow2", "raw0"),
])
def test_persistent_bitmaps_reach_the_image(persistent_daemon, tmp_path, node, image, export):
    d = persistent_daemon
    writes = [(0, 4096), (7 * G + 1, 100), (DISK - G, G)]
    with Qmp(d.control_sock) as q:
        nodes = {n["node-name"]: n for n in ok(q, "query-named-block-nodes")}
        assert nodes[node]["bitmap-store"]["writable"] is True
    # fleecectl's default where the node can store bitmaps: persistent.
    assert ctl(d, "bitmap", "add", node, "nightly").returncode == 0
    assert ctl(d, "bitmap", "add", node, "mem", "--no-persistent").returncode == 0
    assert ctl(d, "bitmap", "add", node, "gone", "--persistent").returncode == 0
    assert ctl(d, "bitmap", "add", node, "frozen", "--disabled").returncode == 0
    nbd_write(d, export, writes)
    with Qmp(d.control_sock) as q:
        infos = query_dirty_bitmaps(q, node)
        assert infos["nightly"]["persistent"] is True
        assert infos["mem"]["persistent"] is False
        # A failing transaction changes nothing, in memory or in the image.
        before = query_dirty_bitmaps(q, node)
        assert error(q, "transaction", actions=[
            {"type": "block-dirty-bitmap-merge",
             "data": {"node": node, "target": "frozen", "bitmaps": ["nightly"]}},
            {"type": "block-dirty-bitmap-clear", "data": {"node": node, "name": "nightly"}},
            {"type": "block-dirty-bitmap-remove", "data": {"node": node, "name": "gone"}},
            {"type": "block-dirty-bitmap-add", "data": {"node": node, "name": "nightly"}},
        ]) == "Bitmap already exists: nightly"
        assert query_dirty_bitmaps(q, node) == before
        ok(q, "block-dirty-bitmap-remove", node=node, name="gone")
    assert d.stop() == 0

    expected = granules_touched(writes, G, DISK)
    stored = qemu_img_bitmaps(tmp_path / image)
    assert set(stored) == {"nightly", "frozen"}
    assert "in-use" not in stored["nightly"]["flags"]
    assert "auto" in stored["nightly"]["flags"]
    assert "auto" not in stored["frozen"]["flags"]
    assert stored["nightly"]["granularity"] == G
    fmt_dir = tmp_path / f"qemu-nbd-{node}"
    fmt_dir.mkdir()
    extents = qemu_nbd_bitmap_map(fmt_dir, tmp_path / image, "nightly")
    assert dirty_granules_of(extents, G, DISK) == expected
    extents = qemu_nbd_bitmap_map(fmt_dir, tmp_path / image, "frozen")
    assert dirty_granules_of(extents, G, DISK) == set()
    check = subprocess.run(["qemu-img", "check", str(tmp_path / image)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_persistent_bitmaps_survive_a_restart_and_a_transaction(persistent_daemon, tmp_path):
    d = persistent_daemon
    with Qmp(d.control_sock) as q:
        ok(q, "block-dirty-bitmap-add", node="vm", name="nightly", persistent=True)
    nbd_write(d, "vm", [(2 * G, 512)])
    assert d.stop() == 0
    d2 = Daemon(tmp_path, config=QCOW2_CONFIG).start(wait_control=True)
    try:
        with Qmp(d2.control_sock) as q:
            infos = query_dirty_bitmaps(q, "vm")
            assert infos["nightly"]["count"] == G
            assert infos["nightly"]["inconsistent"] is False
            assert ok(q, "transaction", actions=[
                {"type": "block-dirty-bitmap-add",
                 "data": {"node": "vm", "name": "backup-1", "persistent": True,
                          "disabled": True}},
                {"type": "block-dirty-bitmap-merge",
                 "data": {"node": "vm", "target": "backup-1", "bitmaps": ["nightly"]}},
                {"type": "block-dirty-bitmap-clear", "data": {"node": "vm", "name": "nightly"}},
            ]) == {}
        nbd_write(d2, "vm", [(4 * G, 512)])
    finally:
        assert d2.stop() == 0
    extents = qemu_nbd_bitmap_map(tmp_path, tmp_path / "vm.qcow2", "backup-1")
    assert dirty_granules_of(extents, G, DISK) == {2}
    extents = qemu_nbd_bitmap_map(tmp_path, tmp_path / "vm.qcow2", "nightly")
    assert dirty_granules_of(extents, G, DISK) == {4}
