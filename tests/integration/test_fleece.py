"""End-to-end tests of image fleecing through the real daemon: fleece-start / fleece-stop /
query-fleeces on the control socket, the snapshot export read with libnbd and nbdinfo while
clients keep writing the live export over several connections, bitmap rotation (done,
rolled back), SIGKILL mid-backup, the overlay limit and a full or read-only overlay folder
(each policy), and the live bitmap held busy during a backup."""

import contextlib
import os
import signal
import subprocess
import time

import nbd
import pytest

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, make_image, nbdinfo_extents, qemu_img_bitmaps,
                            qemu_nbd_bitmap_map, query_dirty_bitmaps)

MiB = 1 << 20
G = 65536
DISK = 8 * MiB

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: DRIVER
    file: {{ driver: file, filename: "{dir}/disk0.img" }}
exports:
  - {{ name: disk0, node: disk0, writable: true, bitmaps: [b] }}
bitmaps:
  - {{ node: disk0, name: b, persistent: PERSISTENT, granularity: 65536 }}
fleecing:
  overlay-dir: "{dir}/overlays"
"""

# Writes before the snapshot: (byte, offset, length).
BEFORE = [(0x11, 0, 3 * G), (0x22, 5 * G + 512, 4096), (0x33, 2 * MiB, MiB), (0x44, DISK - G, G)]
# Writes to the live disk after the snapshot, spread over connections: overlapping,
# partial-granule, adjacent, zero and trim.
AFTER = [("write", 0x55, G, G),                 # inside a written run
         ("write", 0x66, 2 * G + 100, G),       # partial, straddles two granules
         ("write", 0x77, 5 * G, 8192),          # overlaps the 4 KiB written before
         ("zero", 0, 2 * MiB + 4096, 8192),     # zero inside a pattern
         ("trim", 0, 2 * MiB + 3 * G, 2 * G),   # trim inside a pattern
         ("write", 0x88, 4 * MiB, 3 * G),       # never written before
         ("write", 0x99, 4 * MiB + 3 * G, G)]   # adjacent to the previous one


def config(driver):
    return (CONFIG.replace("DRIVER", driver)
            .replace("PERSISTENT", "true" if driver == "qcow2" else "false"))


def new_daemon(tmp_path, driver):
    """A Daemon on disk0 (created on first use); `with` starts it."""
    (tmp_path / "overlays").mkdir(exist_ok=True)
    if not (tmp_path / "disk0.img").exists():
        make_image(tmp_path / "disk0.img", DISK, fmt=driver)
    return Daemon(tmp_path, config=config(driver))


def connect(d, export):
    h = nbd.NBD()
    h.connect_uri(d.uri(export))
    return h


def read_all(d, export):
    h = connect(d, export)
    try:
        return b"".join(h.pread(MiB, off) for off in range(0, DISK, MiB))
    finally:
        h.shutdown()


def write_patterns(d, writes):
    h = connect(d, "disk0")
    for byte, off, length in writes:
        h.pwrite(bytes([byte]) * length, off)
    h.flush()
    h.shutdown()


def apply_after(d, ops):
    """Runs `ops` over three connections, round-robin."""
    handles = [connect(d, "disk0") for _ in range(3)]
    for i, (kind, byte, off, length) in enumerate(ops):
        h = handles[i % len(handles)]
        if kind == "write":
            h.pwrite(bytes([byte]) * length, off)
        elif kind == "zero":
            h.zero(length, off)
        else:
            h.trim(length, off)
    for h in handles:
        h.flush()
        h.shutdown()


def frozen_granules(d, export, bitmap="b"):
    return dirty_granules_of(nbdinfo_extents(d.uri(export), dirty_bitmap_context(bitmap)), G, DISK)


def ok(qmp, cmd, args=None):
    r = qmp.cmd(cmd, args)
    assert "return" in r, f"{cmd} {args} -> {r}"
    return r["return"]


@pytest.mark.parametrize("driver", ["qcow2", "raw"])
def test_fleece_view_is_the_disk_at_the_snapshot_point(tmp_path, driver):
    with new_daemon(tmp_path, driver) as d, Qmp(d.control_sock) as qmp:
        write_patterns(d, BEFORE)
        at_snapshot = read_all(d, "disk0")
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0", "bitmap": "b"})
        apply_after(d, AFTER)

        # The view equals the disk as of the snapshot point; the live disk has the writes.
        assert read_all(d, "disk0-fleece") == at_snapshot
        live = read_all(d, "disk0")
        assert live[G:2 * G] == b"\x55" * G
        assert live[2 * MiB + 4096:2 * MiB + 3 * 4096] == bytes(8192)
        assert live[4 * MiB:4 * MiB + 4 * G] == b"\x88" * 3 * G + b"\x99" * G

        # The view refuses writes (read-only export).
        h = connect(d, "disk0-fleece")
        assert h.is_read_only()
        with pytest.raises(nbd.Error):
            h.pwrite(b"x" * 512, 0)
        h.shutdown()

        # The frozen bitmap: exactly the granules written before; the live b: after.
        before = granules_touched([(o, n) for _, o, n in BEFORE], G, DISK)
        after = granules_touched([(o, n) for _, _, o, n in AFTER], G, DISK)
        assert frozen_granules(d, "disk0-fleece") == before
        assert frozen_granules(d, "disk0") == after

        [info] = ok(qmp, "query-fleeces")
        assert info["id"] == "f1" and info["node"] == "disk0"
        assert info["export"] == "disk0-fleece" and info["bitmap"] == "b"
        assert info["state"] == "active" and "reason" not in info
        # Old data is copied in 4 KiB pages: exactly the pages the writes touched.
        pages = granules_touched([(o, n) for _, _, o, n in AFTER], 4096, DISK)
        assert info["copied-bytes"] == len(pages) * 4096
        assert info["overlay-bytes"] >= info["copied-bytes"] // 2

        # A successful backup: the next round's frozen map holds only the new writes.
        ok(qmp, "fleece-stop", {"id": "f1"})
        assert ok(qmp, "query-fleeces") == []
        assert [e["name"] for e in ok(qmp, "query-block-exports")] == ["disk0"]
        round2 = [(0xa1, 6 * MiB, G)]
        write_patterns(d, round2)
        ok(qmp, "fleece-start", {"id": "f2", "node": "disk0", "bitmap": "b", "export": "inc"})
        g2 = granules_touched([(o, n) for _, o, n in round2], G, DISK)
        assert frozen_granules(d, "inc") == after | g2

        # A failed one: rolled back, the round after includes both.
        ok(qmp, "fleece-stop", {"id": "f2", "rollback": True})
        round3 = [(0xa2, 7 * MiB, 2 * G)]
        write_patterns(d, round3)
        ok(qmp, "fleece-start", {"id": "f3", "node": "disk0", "bitmap": "b"})
        g3 = granules_touched([(o, n) for _, o, n in round3], G, DISK)
        assert frozen_granules(d, "disk0-fleece") == after | g2 | g3
        assert frozen_granules(d, "disk0") == set()
        ok(qmp, "fleece-stop", {"id": "f3"})
        assert os.listdir(tmp_path / "overlays") == []


def test_fleece_errors(tmp_path):
    with new_daemon(tmp_path, "raw") as d, Qmp(d.control_sock) as qmp:
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0", "bitmap": "b"})
        # The live bitmap is busy while the fleece may merge back into it.
        b = query_dirty_bitmaps(qmp, "disk0")["b"]
        assert b["busy"] and b["recording"]
        for cmd in ["block-dirty-bitmap-remove", "block-dirty-bitmap-clear",
                    "block-dirty-bitmap-disable"]:
            r = qmp.cmd(cmd, {"node": "disk0", "name": "b"})
            assert "is currently in use" in r["error"]["desc"], (cmd, r)
        for args, text in [
                ({"id": "f1", "node": "disk0", "export": "x"}, "already exists"),
                ({"id": "f2", "node": "nope"}, "nor node-name='nope'"),
                ({"id": "f2", "node": "disk0"}, "already has export named 'disk0-fleece'"),
                ({"id": "f2", "node": "disk0", "export": "y", "bitmap": "b"}, "frozen by"),
                ({"id": "f2", "node": "disk0", "export": "y", "bitmap": "zz"}, "zz"),
                ({"id": "f2", "node": "disk0", "export": "y", "on-cbw-error": "x"},
                 "does not accept value"),
                ({"id": "f2", "node": "disk0", "export": "y", "overlay": str(tmp_path / "no")},
                 "overlay")]:
            r = qmp.cmd("fleece-start", args)
            assert r["error"]["class"] == "GenericError" and text in r["error"]["desc"], (args, r)
        r = qmp.cmd("fleece-stop", {"id": "nope"})
        assert "not found" in r["error"]["desc"]
        # A failed transaction leaves nothing: the second action fails, the first rolls back.
        r = qmp.cmd("transaction", {"actions": [
            {"type": "fleece-start", "data": {"id": "t1", "node": "disk0", "export": "t1"}},
            {"type": "fleece-start", "data": {"id": "t2", "node": "nope"}}]})
        assert "error" in r
        assert [f["id"] for f in ok(qmp, "query-fleeces")] == ["f1"]
        ok(qmp, "transaction", {"actions": [
            {"type": "fleece-start", "data": {"id": "t1", "node": "disk0", "export": "t1"}}]})
        assert [f["id"] for f in ok(qmp, "query-fleeces")] == ["f1", "t1"]
        ok(qmp, "fleece-stop", {"id": "t1"})
        ok(qmp, "fleece-stop", {"id": "f1"})
        assert os.listdir(tmp_path / "overlays") == []


def test_sigkill_mid_backup_loses_no_change(tmp_path):
    d = new_daemon(tmp_path, "qcow2").start(wait_control=True)
    with Qmp(d.control_sock) as qmp:
        write_patterns(d, [(0x11, 0, G)])
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0", "bitmap": "b"})
        write_patterns(d, [(0x22, 3 * G, G)])
        assert os.listdir(tmp_path / "overlays") == []  # unlinked at creation
    d.stop(sig=signal.SIGKILL)
    # A leftover a crash between create and unlink could leave: swept at start-up.
    (tmp_path / "overlays" / "fleece-old-abc123.overlay").write_bytes(b"x")
    with new_daemon(tmp_path, "qcow2") as d2, Qmp(d2.control_sock) as qmp:
        assert os.listdir(tmp_path / "overlays") == []
        assert ok(qmp, "query-fleeces") == []
        ok(qmp, "fleece-start", {"id": "f2", "node": "disk0", "bitmap": "b"})
        assert frozen_granules(d2, "disk0-fleece") == {0, 3}
        ok(qmp, "fleece-stop", {"id": "f2", "rollback": True})
    assert d2.proc.returncode == 0
    # Stored at SIGTERM with the rolled-back bits, consistent for QEMU's tools.
    assert "in-use" not in qemu_img_bitmaps(tmp_path / "disk0.img")["b"]["flags"]
    stored = qemu_nbd_bitmap_map(tmp_path, tmp_path / "disk0.img", "b")
    assert dirty_granules_of(stored, G, DISK) == {0, 3}


def wait_for_event(qmp, name, timeout=10):
    """The first `name` event; query-fleeces meanwhile pumps the socket."""
    deadline = time.monotonic() + timeout
    while not any(e["event"] == name for e in qmp.events):
        assert time.monotonic() < deadline, qmp.events
        ok(qmp, "query-fleeces")
        time.sleep(0.05)
    return next(e for e in qmp.events if e["event"] == name)


@contextlib.contextmanager
def small_tmpfs(path, size):
    """A tmpfs of `size` mounted on `path` (needs root; skips without)."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for a full overlay folder needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_overlay_folder_breaks_the_snapshot_not_the_guest(tmp_path):
    """The overlay's filesystem fills up: live writes keep succeeding, the view fails
    its reads with EIO, FLEECE_BROKEN is sent, and stopping leaves the folder empty."""
    with small_tmpfs(tmp_path / "overlays", 4 * G), new_daemon(tmp_path, "raw") as d, \
            Qmp(d.control_sock) as qmp:
        write_patterns(d, [(0x11, 0, 16 * G)])
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0"})
        write_patterns(d, [(0x22, i * G, G) for i in range(12)])
        assert read_all(d, "disk0")[:12 * G] == b"\x22" * 12 * G
        ev = wait_for_event(qmp, "FLEECE_BROKEN")
        assert ev["data"]["id"] == "f1" and "No space left" in ev["data"]["reason"], ev
        h = connect(d, "disk0-fleece")
        with pytest.raises(nbd.Error) as err:
            h.pread(G, 11 * G)
        assert "Input/output error" in str(err.value)
        h.shutdown()
        [info] = ok(qmp, "query-fleeces")
        assert info["state"] == "broken" and "No space left" in info["reason"]
        ok(qmp, "fleece-stop", {"id": "f1"})
        assert os.listdir(tmp_path / "overlays") == []
        assert d.alive()


def test_full_overlay_folder_with_break_guest_write_keeps_the_snapshot(tmp_path):
    """With on-cbw-error break-guest-write a write whose old data cannot be saved fails
    and changes nothing; the snapshot stays valid and whole."""
    with small_tmpfs(tmp_path / "overlays", 4 * G), new_daemon(tmp_path, "raw") as d, \
            Qmp(d.control_sock) as qmp:
        write_patterns(d, [(0x11, 0, 16 * G)])
        at_snapshot = read_all(d, "disk0")
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0",
                                 "on-cbw-error": "break-guest-write"})
        h = connect(d, "disk0")
        refused = []
        for i in range(12):
            try:
                h.pwrite(b"\x22" * G, i * G)
            except nbd.Error:
                refused.append(i)
        h.shutdown()
        assert 0 < len(refused) <= 12 - 3, refused  # the first granules fit
        live = read_all(d, "disk0")
        for i in range(12):
            want = 0x11 if i in refused else 0x22
            assert live[i * G:i * G + 4096] == bytes([want]) * 4096, i
        assert read_all(d, "disk0-fleece") == at_snapshot
        [info] = ok(qmp, "query-fleeces")
        assert info["state"] == "active"
        assert not any(e["event"] == "FLEECE_BROKEN" for e in qmp.events)
        ok(qmp, "fleece-stop", {"id": "f1"})
        write_patterns(d, [(0x33, refused[0] * G, 4096)])  # no fleece: writes pass again
        assert read_all(d, "disk0")[refused[0] * G] == 0x33


def test_read_only_overlay_folder_is_refused_at_start(tmp_path):
    with small_tmpfs(tmp_path / "overlays", 4 * G) as overlays, \
            new_daemon(tmp_path, "raw") as d, Qmp(d.control_sock) as qmp:
        subprocess.run(["mount", "-o", "remount,ro", str(overlays)], check=True)
        r = qmp.cmd("fleece-start", {"id": "f1", "node": "disk0"})
        assert "Read-only file system" in r["error"]["desc"], r
        assert ok(qmp, "query-fleeces") == []
        write_patterns(d, [(0x22, 0, 4096)])  # the live disk is untouched by the failure
        assert read_all(d, "disk0")[:4096] == b"\x22" * 4096


def test_overlay_limit_breaks_the_snapshot(tmp_path):
    with new_daemon(tmp_path, "raw") as d, Qmp(d.control_sock) as qmp:
        write_patterns(d, [(0x11, 0, 8 * G)])
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0", "overlay-limit": 2 * G})
        # Live writes keep succeeding past the limit (break-snapshot).
        write_patterns(d, [(0x22, i * G, G) for i in range(6)])
        assert read_all(d, "disk0")[5 * G:5 * G + 4096] == b"\x22" * 4096
        h = connect(d, "disk0-fleece")
        with pytest.raises(nbd.Error) as err:
            h.pread(G, 5 * G)
        assert "Input/output error" in str(err.value)
        h.shutdown()
        ev = wait_for_event(qmp, "FLEECE_BROKEN")
        assert ev["data"]["id"] == "f1" and ev["data"]["node"] == "disk0" and ev["data"]["reason"]
        [info] = ok(qmp, "query-fleeces")
        assert info["state"] == "broken" and info["reason"]
        ok(qmp, "fleece-stop", {"id": "f1"})


def test_sigterm_rolls_back_every_fleece(tmp_path):
    with new_daemon(tmp_path, "qcow2") as d, Qmp(d.control_sock) as qmp:
        write_patterns(d, [(0x11, 0, G)])
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0", "bitmap": "b"})
        write_patterns(d, [(0x22, 5 * G, G)])
    assert d.proc.returncode == 0
    assert "fleece 'f1' of node 'disk0' stopped and rolled back" in d.log_path.read_text()
    stored = qemu_nbd_bitmap_map(tmp_path, tmp_path / "disk0.img", "b")
    assert dirty_granules_of(stored, G, DISK) == {0, 5}


def test_fleecectl_fleece_start_list_stop(tmp_path):
    with new_daemon(tmp_path, "raw") as d:
        r = d.ctl("fleece", "start", "disk0", "--bitmap", "b", json_output=False)
        assert r.stdout == "fleece 'disk0-fleece' of node 'disk0' exported as 'disk0-fleece'\n"
        d.ctl("fleece", "start", "disk0", "--export", "scan", "--overlay-limit", "1M",
              "--on-cbw-error", "break-guest-write", "--cbw-timeout", "30", "--discard")
        [backup, scan] = d.ctl("fleece", "list")
        assert backup["id"] == "disk0-fleece" and backup["bitmap"] == "b"
        assert scan["id"] == "scan" and scan["export"] == "scan" and "bitmap" not in scan
        table = d.ctl("fleece", "list", json_output=False).stdout.splitlines()
        assert table[0].split() == ["ID", "NODE", "EXPORT", "BITMAP", "OVERLAY", "COPIED", "STATE"]
        assert table[2].split()[:3] == ["scan", "disk0", "scan"]
        assert connect(d, "scan").can_trim()
        r = d.ctl("fleece", "start", "disk0", "--overlay-limit", "lots", check=False)
        assert r.returncode == 64 and "--overlay-limit" in r.stderr
        r = d.ctl("fleece", "stop", "nope", check=False)
        assert r.returncode == 1 and "Fleece 'nope' not found" in r.stderr
        d.ctl("fleece", "stop", "scan")
        d.ctl("fleece", "stop", "disk0-fleece", "--rollback")
        assert d.ctl("fleece", "list") == []


def test_concurrent_writers_while_the_view_is_read(tmp_path):
    """Four connections write and zero at random while the view is read three times:
    every read of every granule is the disk as of the snapshot point."""
    import random
    import threading
    with new_daemon(tmp_path, "qcow2") as d, Qmp(d.control_sock) as qmp:
        chunk = 256 * 1024
        write_patterns(d, [(i % 250 + 1, i * chunk, chunk) for i in range(DISK // chunk)])
        at_snapshot = read_all(d, "disk0")
        ok(qmp, "fleece-start", {"id": "f1", "node": "disk0"})
        stop = threading.Event()
        errors = []

        def writer(seed):
            rng = random.Random(seed)
            h = connect(d, "disk0")
            try:
                while not stop.is_set():
                    length = rng.choice([512, 4096, 65536, 3 * 65536 + 512])
                    off = rng.randrange(0, DISK - length, 512)
                    if rng.random() < 0.8:
                        h.pwrite(bytes([rng.randrange(256)]) * length, off)
                    else:
                        h.zero(length, off)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                h.shutdown()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            views = [read_all(d, "disk0-fleece") for _ in range(3)]
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors
        for view in views:
            for off in range(0, DISK, G):
                assert view[off:off + G] == at_snapshot[off:off + G], f"granule at {off}"
        assert read_all(d, "disk0-fleece") == at_snapshot
        assert ok(qmp, "query-fleeces")[0]["copied-bytes"] > 0
        ok(qmp, "fleece-stop", {"id": "f1"})
