"""Crash-safe dirty bitmaps: fleeced serves a qcow2 image with persistent enabled bitmaps,
a libnbd client drives random writes, zeroes and trims (many in flight) and fleeced is
killed with SIGKILL at a random moment. A range counts as written once its request was
issued. After the crash:

- QEMU sees the bitmaps in-use (`qemu-img info`), so it never trusts them, and
  `qemu-img check` finds no errors;
- fleeced restarted on the image loads the bitmaps consistent (not "inconsistent", not
  all dirty), and each one
  * covers every granule of every acknowledged request,
  * covers every granule whose data changed on disk (a request that landed but was
    not acknowledged before the kill included),
  * marks nothing that was not issued (its dirty count stays what was written);
- a clean stop then leaves the bitmaps flagged "auto" without in-use, with the same
  content for `qemu-nbd -B`, and `qemu-img check` clean.

The image carries over between iterations; every other iteration starts by clearing the
bitmaps (block-dirty-bitmap-clear, which must be durable too: bits it cleared must not
come back), the others keep accumulating. A disabled bitmap stays clean throughout. The
data oracle keeps a hash of every sector and reads the issued ranges back through the
restarted fleeced (whose faithfulness after a crash test_qcow2_crash.py checks).

When QEMU opens the image read-write between the crash and the restart, fleeced must not
trust its record: the bitmaps load inconsistent and all dirty, never clean.

FLEECE_CRASH_ITERATIONS sets the iterations per case (default 10), FLEECE_CRASH_SEED the
random seed."""

import array
import hashlib
import os
import random
import signal
import struct
import subprocess
import threading
import time

import nbd
import pytest

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, nbdinfo_extents, qemu_img_bitmaps,
                            qemu_nbd_bitmap_map, query_dirty_bitmaps)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
SECTOR = 512
ZERO = bytes(SECTOR)
ITERATIONS = int(os.environ.get("FLEECE_CRASH_ITERATIONS", "10"))
SEED = int(os.environ.get("FLEECE_CRASH_SEED", str(random.randrange(1 << 30))))
MAX_IN_FLIGHT = 16
# case -> (disk size, qemu-img create options, {bitmap: (granularity, enabled)}). Disks
# large enough that an iteration's writes dirty only part of them, so "not all dirty"
# means something. With preallocated metadata a write lands in place, so every write
# that reached the file before the kill shows in the data, flushed or not.
CASES = {
    "g64k": (GiB, "preallocation=metadata", {"b": (64 * KiB, True)}),
    "three": (256 * MiB, "cluster_size=65536",
              {"b": (4 * KiB, True), "c": (MiB, True), "off": (64 * KiB, False)}),
}


def run(cmd, timeout=60):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


def config(img, exported=()):
    """Serves img as node and export `d`, offering the bitmaps `exported` (an exported
    bitmap is busy: it cannot be cleared)."""
    return ("listen:\n  - unix: {nbd_sock}\ncontrol:\n  unix: {control_sock}\n"
            "nodes:\n  - node-name: d\n    driver: qcow2\n    file:\n      driver: file\n"
            f"      filename: \"{img}\"\n"
            "exports:\n  - name: d\n    node: d\n    writable: true\n"
            f"    bitmaps: [{', '.join(sorted(exported))}]\n")


def make_image(tmp_path, size, opts, bitmaps):
    img = tmp_path / "disk.qcow2"
    r = run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, size])
    assert r.returncode == 0, r.stderr
    for name, (gran, enabled) in bitmaps.items():
        r = run(["qemu-img", "bitmap", "--add", "-g", gran] + ([] if enabled else ["--disable"]) +
                [img, name])
        assert r.returncode == 0, r.stderr
    return img


def sector_hash(data):
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class DiskState:
    """What every sector of the disk holds, as a 64-bit hash per sector (the disk starts
    as zeroes). changed() reads the sectors of some ranges through an NBD export and
    returns those that differ from the last known state, updating it."""

    def __init__(self, size):
        self.hashes = array.array("Q", [sector_hash(ZERO)]) * (size // SECTOR)

    def changed(self, uri, ranges):
        spans = merge_sectors(ranges)
        out = []
        h = nbd.NBD()
        h.connect_uri(uri)
        try:
            for first, count in spans:
                for chunk in range(first, first + count, 8192):  # 4 MiB reads
                    n = min(8192, first + count - chunk)
                    data = h.pread(n * SECTOR, chunk * SECTOR)
                    for i in range(n):
                        hv = sector_hash(data[i * SECTOR:(i + 1) * SECTOR])
                        if hv != self.hashes[chunk + i]:
                            self.hashes[chunk + i] = hv
                            out.append(((chunk + i) * SECTOR, SECTOR))
        finally:
            h.shutdown()
        return out


def merge_sectors(ranges):
    """(first sector, count) runs covering every sector the byte ranges touch."""
    spans = sorted((off // SECTOR, -(-(off + length) // SECTOR)) for off, length in ranges)
    out = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b - a) for a, b in out]


def random_request(rng, size):
    r = rng.random()
    if r < 0.6:
        length = rng.randint(1, 8 * KiB)
    elif r < 0.9:
        length = rng.randint(8 * KiB, 128 * KiB)
    else:
        length = 64 * KiB
    off = rng.randrange(0, size - length)
    if r >= 0.9 or rng.random() < 0.2:
        off -= off % (64 * KiB)
    return off, length


def drive_load(h, it, rng, size, deadline, dead, rate):
    """Random writes (80%), zeroes and trims, a few flushes, up to MAX_IN_FLIGHT at a time and about
    `rate` requests a second, until the connection dies or the deadline. Returns
    (issued ranges, acknowledged ranges, errors seen while fleeced was alive).
    h: a connected libnbd handle; closed on return."""
    issued, acked, errors = [], [], []
    in_flight = {}  # cookie -> (range, buffer)
    t0 = time.monotonic()
    try:
        while time.monotonic() < deadline:
            budget = int((time.monotonic() - t0) * rate) + 1 - len(issued)
            while len(in_flight) < MAX_IN_FLIGHT and budget > 0:
                budget -= 1
                if rng.random() < 0.03:  # a flush now and then makes earlier writes durable
                    in_flight[h.aio_flush()] = (None, None)
                    continue
                off, length = random_request(rng, size)
                kind = rng.random()
                issued.append((off, length))  # counts as written from here on
                if kind < 0.8:
                    stamp = struct.pack("<II", it, len(issued))
                    buf = nbd.Buffer.from_bytearray(
                        bytearray((stamp * (length // 8 + 1))[:length]))
                    cookie = h.aio_pwrite(buf, off)
                elif kind < 0.9:
                    buf = None
                    cookie = h.aio_zero(length, off)
                else:
                    buf = None
                    cookie = h.aio_trim(length, off)
                in_flight[cookie] = ((off, length), buf)
            h.poll(2 if not in_flight else 100)
            for cookie in list(in_flight):
                try:
                    if not h.aio_command_completed(cookie):
                        continue
                    if in_flight[cookie][0] is not None:
                        acked.append(in_flight[cookie][0])
                except nbd.Error as e:
                    if not dead.is_set():
                        errors.append(f"{in_flight[cookie][0]}: {e}")
                del in_flight[cookie]
    except nbd.Error as e:
        if not dead.is_set():
            time.sleep(0.2)
        if not dead.is_set():
            errors.append(f"connection: {e}")
    finally:
        try:
            h.close()
        except Exception:
            pass
    return issued, acked, errors


def describe(granules, limit=8):
    return sorted(granules)[:limit]


def check_record(ctx, size, bitmaps, maps, info, issued, acked, changed):
    """The promises, per enabled bitmap: acknowledged and changed granules dirty, nothing
    dirty that was not issued (so not all dirty); the disabled ones clean."""
    for name, (gran, enabled) in bitmaps.items():
        b = info[name]
        assert b.get("inconsistent", False) is False, f"{ctx}: {name} loaded inconsistent: {b}"
        dirty = dirty_granules_of(maps[name], gran, size)
        assert b["count"] == sum(min(gran, size - g * gran) for g in dirty), \
            f"{ctx}: {name}: query count {b['count']} disagrees with the map"
        if not enabled:
            assert not dirty, f"{ctx}: disabled bitmap {name} has {len(dirty)} dirty granules"
            continue
        want_acked = granules_touched(acked, gran, size)
        want_changed = granules_touched(changed, gran, size)
        may = granules_touched(issued, gran, size)
        total = -(-size // gran)
        assert want_acked <= dirty, \
            f"{ctx}: {name} lost acknowledged granules {describe(want_acked - dirty)}"
        assert want_changed <= dirty, \
            f"{ctx}: {name}: data changed in clean granules {describe(want_changed - dirty)}"
        assert len(may) == total or len(dirty) < total, f"{ctx}: {name} is all dirty"
        assert dirty <= may, \
            f"{ctx}: {name} marks granules never written {describe(dirty - may)} " \
            f"({len(dirty)} dirty, {len(may)} written of {total})"


def crash_during_load(tmp_path, cfg, it, rng, size, delay, rate, clear=()):
    """Starts fleeced with config cfg, clears the bitmaps `clear`, drives the load and
    SIGKILLs fleeced after delay seconds. Returns (issued, acked, clean_stop)."""
    d = Daemon(tmp_path, config=cfg)
    d.start(wait_control=True)
    try:
        if clear:
            with Qmp(d.control_sock) as q:
                for name in clear:
                    r = q.cmd("block-dirty-bitmap-clear", {"node": "d", "name": name})
                    assert r == {"return": {}}, r
                assert all(b["count"] == 0 for b in query_dirty_bitmaps(q, "d").values())
        h = nbd.NBD()
        h.connect_uri(d.uri("d"))  # before the timer: a short delay must not kill it first
    except BaseException:
        d.stop(sig=signal.SIGKILL)  # never leave a daemon behind a failed test
        raise
    dead = threading.Event()

    def kill():
        dead.set()
        d.proc.send_signal(signal.SIGKILL)

    killer = threading.Timer(delay, kill)
    killer.start()
    try:
        issued, acked, errors = drive_load(h, it, rng, size, time.monotonic() + delay + 5,
                                           dead, rate)
    finally:
        killer.join()
        d.proc.wait(10)
        d.log.close()
    log = d.log_path.read_text()
    # Something outside the test may stop fleeced cleanly (seen on shared boxes): a
    # clean stop is checked as one (bitmaps consistent for QEMU too).
    clean_stop = "received SIGTERM" in log and d.proc.returncode == 0
    if not clean_stop:
        assert not errors, f"requests failed before the kill: {errors[:5]}\n{log[-3000:]}"
        assert d.proc.returncode == -signal.SIGKILL, f"fleeced exited by itself:\n{log}"
    return issued, acked, clean_stop


@pytest.mark.parametrize("case", sorted(CASES))
def test_bitmap_crash_loop(tmp_path, case):
    rng = random.Random(f"{SEED}-{case}")
    size, opts, bitmaps = CASES[case]
    img = make_image(tmp_path, size, opts, bitmaps)
    cfg, cfg_exported = config(img), config(img, bitmaps)
    disk = DiskState(size)
    issued_all, acked_all = [], []  # since the bitmaps were last cleared
    started = time.monotonic()
    for it in range(1, ITERATIONS + 1):
        ctx = f"seed {SEED} case {case} iteration {it}"
        clear = it % 2 == 1 and it > 1
        if clear:
            issued_all, acked_all = [], []
        delay = rng.uniform(0.05, 1.0)
        rate = rng.choice([500, 2000, 8000])
        try:
            issued, acked, clean_stop = crash_during_load(tmp_path, cfg, it, rng, size, delay,
                                                          rate, clear=bitmaps if clear else ())
        except AssertionError as e:
            raise AssertionError(f"{ctx}: {e}") from None
        issued_all += issued
        acked_all += acked

        r = run(["qemu-img", "check", img])
        out = r.stdout + r.stderr
        assert r.returncode in (0, 3) and "ERROR" not in out and "corrupt" not in out.lower(), \
            f"{ctx}: qemu-img check after the crash (rc {r.returncode}):\n{out}"
        flags = qemu_img_bitmaps(img)
        for name in bitmaps:
            if not clean_stop:
                assert "in-use" in flags[name]["flags"], f"{ctx}: {name} after the crash: {flags}"

        # Reopen: the record is trusted, covers every change and is no larger than what
        # was written.
        with Daemon(tmp_path, config=cfg_exported) as d2:
            with Qmp(d2.control_sock) as q:
                info = query_dirty_bitmaps(q, "d")
            maps = {name: nbdinfo_extents(d2.uri("d"), dirty_bitmap_context(name))
                    for name in bitmaps}
            changed = disk.changed(d2.uri("d"), issued)
            check_record(ctx, size, bitmaps, maps, info, issued_all, acked_all, changed)
            assert d2.stop() == 0, f"{ctx}:\n{d2.log_text()}"
        r = run(["qemu-img", "check", img])
        assert r.returncode == 0, f"{ctx}: qemu-img check after a clean stop:\n{r.stdout}{r.stderr}"
        flags = qemu_img_bitmaps(img)
        for name, (_, enabled) in bitmaps.items():
            assert flags[name]["flags"] == (["auto"] if enabled else []), f"{ctx}: {flags}"
        if it in (1, ITERATIONS):  # QEMU reads the same content (slow-ish: not every time)
            for name in bitmaps:
                assert qemu_nbd_bitmap_map(tmp_path, img, name) == maps[name], f"{ctx}: {name}"
        if os.environ.get("FLEECE_CRASH_VERBOSE"):
            gran = bitmaps["b"][0]
            print(f"{ctx}: {len(issued)} issued, {len(acked)} acked, kill after {delay:.2f}s, "
                  f"{len(changed)} sectors changed; b: "
                  f"{len(dirty_granules_of(maps['b'], gran, size))} dirty of "
                  f"{len(granules_touched(issued_all, gran, size))} written, "
                  f"{-(-size // gran)} in all")
    print(f"{case}: {ITERATIONS} crash iterations in {time.monotonic() - started:.1f}s "
          f"(seed {SEED})")


def qemu_opens(img, how):
    cmds = {"qemu-io-write": ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 40M 4096", img],
            "qemu-io-open": ["qemu-io", "-f", "qcow2", "-c", "read 0 512", img],
            "qemu-img-amend": ["qemu-img", "amend", "-f", "qcow2", "-o", "lazy_refcounts=on",
                               img]}[how]
    r = run(cmds)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("how", ["qemu-io-write", "qemu-io-open", "qemu-img-amend"])
def test_qemu_between_crash_and_restart(tmp_path, how):
    size = 64 * MiB
    bitmaps = {"b": (64 * KiB, True), "off": (64 * KiB, False)}
    img = make_image(tmp_path, size, "cluster_size=65536", bitmaps)
    cfg = config(img)
    issued, _, clean_stop = crash_during_load(tmp_path, cfg, 1, random.Random(f"{SEED}-{how}"),
                                              size, 0.5, 2000)
    assert issued
    if clean_stop:
        pytest.skip("fleeced was stopped by something outside the test")
    assert "in-use" in qemu_img_bitmaps(img)["b"]["flags"]

    qemu_opens(img, how)  # QEMU cannot know what fleeced's record means

    with Daemon(tmp_path, config=cfg) as d2:
        with Qmp(d2.control_sock) as q:
            info = query_dirty_bitmaps(q, "d")
            for name in bitmaps:
                assert info[name]["inconsistent"] is True, (name, info[name])
                assert info[name]["count"] == size, (name, info[name])  # all dirty
            # The way out: clear (or remove), then it records again.
            r = q.cmd("block-dirty-bitmap-clear", {"node": "d", "name": "b"})
            assert r == {"return": {}}, r
            info = query_dirty_bitmaps(q, "d")
            assert info["b"]["inconsistent"] is False and info["b"]["count"] == 0, info["b"]
        assert d2.stop() == 0, d2.log_text()
    r = run(["qemu-img", "check", img])
    assert r.returncode == 0, r.stdout + r.stderr
    flags = qemu_img_bitmaps(img)
    assert flags["b"]["flags"] == ["auto"], flags
    assert qemu_nbd_bitmap_map(tmp_path, img, "b") == [(0, size, 0)]
    # Still inconsistent: QEMU must not trust it either (in-use, or stored all dirty).
    if "in-use" not in flags["off"]["flags"]:
        assert qemu_nbd_bitmap_map(tmp_path, img, "off") == [(0, size, 1)]
