"""Crash consistency of the qcow2 driver: a libnbd client drives a random mixed load
(writes of random sizes and offsets, partial clusters included, FUA writes, zeroes, trims,
flushes; several requests in flight) against a writable qcow2 export, and fleeced is
killed with SIGKILL at a random moment. Then:

- `qemu-img check` finds no errors (leaked clusters are allowed right after the crash);
- every write acknowledged before a completed flush (or with FUA) reads back; any byte
  not made durable that way reads as its durable value or as a value some later request
  could have left there (the oracle works per 512-byte sector: every written sector
  carries a unique stamp of its request and position, so misplaced data is caught too);
- fleeced restarted on the image repairs the leaks and still reads the same data; after
  a clean stop `qemu-img check` finds neither errors nor leaks.

The image carries over from one iteration to the next, so later crashes hit images that
have been crashed and repaired before. FLEECE_CRASH_ITERATIONS sets the iterations per
case (default 20); FLEECE_CRASH_SEED fixes the random seed; FLEECE_CRASH_QCOW2_OPTS gives
the image's qemu-img create options for every case."""

import os
import random
import re
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import nbd
import pytest

from fleece_harness import Daemon

MiB = 1 << 20
SECTOR = 512
SIZE = 16 * MiB
NSECT = SIZE // SECTOR
ZERO = bytes(SECTOR)
ITERATIONS = int(os.environ.get("FLEECE_CRASH_ITERATIONS", "20"))
SEED = int(os.environ.get("FLEECE_CRASH_SEED", str(random.randrange(1 << 30))))
MAX_IN_FLIGHT = 8
# qemu-img create -o options of the crashed image, overriding every case's own
# (e.g. "cluster_size=4096,refcount_bits=1").
CREATE_OPTS = os.environ.get("FLEECE_CRASH_QCOW2_OPTS")
# case -> (over a raw backing file, qemu-img create options)
CASES = {
    "plain": (False, "cluster_size=65536"),
    "backing": (True, "cluster_size=65536"),
    # Subclusters: 16 KiB clusters of 32 x 512-byte subclusters, over a backing file.
    "extl2-backing": (True, "cluster_size=16384,extended_l2=on"),
}


def run(cmd, cwd=None, timeout=60):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def stamp(it, op, sector):
    return struct.pack("<IIQ", it, op, sector) * (SECTOR // 16)


class Op:
    __slots__ = ("id", "kind", "first", "count", "fua", "done_order", "cookie", "buf")

    def __init__(self, id_, kind, first, count, fua=False):
        self.id, self.kind, self.first, self.count, self.fua = id_, kind, first, count, fua
        self.done_order = None  # completion order (client view), None if never answered
        self.cookie = None
        self.buf = None

    def value(self, it, s, backing):
        """The values sector s may hold if this request landed."""
        if self.kind == "write":
            return (stamp(it, self.id, s),)
        if self.kind == "zero":
            return (ZERO,)
        return (ZERO, backing[s])  # trim: zeroes or what the backing file has


def random_range(rng):
    kind = rng.random()
    if kind < 0.4:
        count = rng.randint(1, 8)          # inside a cluster (partial cluster)
    elif kind < 0.6:
        count = 128                          # a 64 KiB cluster's worth, often unaligned
    else:
        count = rng.randint(9, 512)          # up to 256 KiB, spanning clusters
    if rng.random() < 0.3:
        first = rng.randrange(0, NSECT // 128) * 128  # cluster-aligned
    else:
        first = rng.randrange(0, NSECT)
    count = min(count, NSECT - first)
    return first, count


def drive_load(uri, it, rng, deadline, dead):
    """Runs the random load until the connection dies (fleeced killed) or the deadline.
    Returns (ops, last completed flush's completion watermark, errors while alive)."""
    h = nbd.NBD()
    h.connect_uri(uri)
    can_fua = h.can_fua()
    ops = []
    in_flight = {}              # op id -> Op
    busy = []                   # sector bitmap of in-flight ranges
    busy = bytearray(NSECT)
    order = 0                   # completions seen so far
    durable_mark = 0            # ops with done_order < durable_mark are flushed
    flushes = {}                # cookie -> watermark at issue
    errors = []

    def free(first, count):
        return not any(busy[first:first + count])

    try:
        while time.monotonic() < deadline:
            while len(in_flight) + len(flushes) < MAX_IN_FLIGHT:
                r = rng.random()
                if r < 0.12:
                    flushes[h.aio_flush()] = order
                    continue
                first, count = random_range(rng)
                if not free(first, count):
                    break
                if r < 0.70:
                    op = Op(len(ops), "write", first, count, fua=can_fua and rng.random() < 0.15)
                    data = b"".join(stamp(it, op.id, s) for s in range(first, first + count))
                    op.buf = nbd.Buffer.from_bytearray(bytearray(data))
                    op.cookie = h.aio_pwrite(op.buf, first * SECTOR,
                                             flags=nbd.CMD_FLAG_FUA if op.fua else 0)
                elif r < 0.85:
                    op = Op(len(ops), "zero", first, count, fua=can_fua and rng.random() < 0.15)
                    flags = nbd.CMD_FLAG_FUA if op.fua else 0
                    if rng.random() < 0.5:
                        flags |= nbd.CMD_FLAG_NO_HOLE
                    op.cookie = h.aio_zero(count * SECTOR, first * SECTOR, flags=flags)
                else:
                    op = Op(len(ops), "trim", first, count)
                    op.cookie = h.aio_trim(count * SECTOR, first * SECTOR)
                ops.append(op)
                in_flight[op.id] = op
                busy[first:first + count] = b"\x01" * count
            h.poll(100)
            for op in list(in_flight.values()):
                try:
                    if not h.aio_command_completed(op.cookie):
                        continue
                except nbd.Error as e:
                    if not dead.is_set():
                        errors.append(f"{op.kind} {op.first * SECTOR}+{op.count * SECTOR}: {e}")
                    del in_flight[op.id]
                    continue
                op.done_order = order
                order += 1
                del in_flight[op.id]
                busy[op.first:op.first + op.count] = bytes(op.count)
            for cookie, mark in list(flushes.items()):
                try:
                    if not h.aio_command_completed(cookie):
                        continue
                except nbd.Error as e:
                    if not dead.is_set():
                        errors.append(f"flush: {e}")
                    del flushes[cookie]
                    continue
                durable_mark = max(durable_mark, mark)
                del flushes[cookie]
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
    return ops, durable_mark, errors


def check_oracle(it, ops, durable_mark, before, backing, got):
    """before: the disk at the start of the iteration; got: the disk read back after the
    crash. Returns a list of problems (empty when every sector is explained)."""
    durable = [(before[s * SECTOR:(s + 1) * SECTOR],) for s in range(NSECT)]
    last = [-1] * NSECT
    for op in ops:  # issue order; overlapping requests were never in flight together
        if op.done_order is None:
            continue
        if op.done_order < durable_mark or op.fua:
            for s in range(op.first, op.first + op.count):
                vals = op.value(it, s, backing)
                if op.kind == "trim":
                    # A trim may also leave the data as it was.
                    vals = durable[s] + vals
                durable[s] = vals
                last[s] = op.id
    allowed = [list(v) for v in durable]
    for op in ops:
        durable_op = op.done_order is not None and (op.done_order < durable_mark or op.fua)
        if durable_op:
            continue
        for s in range(op.first, op.first + op.count):
            if op.id > last[s]:
                allowed[s].extend(op.value(it, s, backing))
    problems = []
    for s in range(NSECT):
        sec = got[s * SECTOR:(s + 1) * SECTOR]
        if sec not in allowed[s]:
            what = "unknown data"
            if sec == ZERO:
                what = "zeroes"
            elif len(sec) == SECTOR and sec == sec[:16] * 32:
                i, o, ss = struct.unpack("<IIQ", sec[:16])
                what = f"stamp of iteration {i} op {o} sector {ss}"
            problems.append(f"sector {s} (offset {s * SECTOR}) holds {what}; "
                            f"durable request {last[s]}, {len(allowed[s])} value(s) allowed")
            if len(problems) >= 10:
                break
    return problems


def read_image(img, out):
    r = run(["qemu-img", "convert", "-U", "-O", "raw", img, out])
    assert r.returncode == 0, r.stderr
    data = Path(out).read_bytes()
    os.unlink(out)
    return data


def qemu_check(img):
    r = run(["qemu-img", "check", img])
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_crash_loop(tmp_path, case):
    rng = random.Random(f"{SEED}-{case}")
    img = tmp_path / "disk.qcow2"
    with_backing, opts = CASES[case]
    opts = CREATE_OPTS or opts
    if with_backing:
        base = tmp_path / "base.raw"
        with open(base, "wb") as f:  # distinct content in every sector of the base
            f.write(b"".join(struct.pack("<IIQ", 0xBA5E, 0, s) * 32 for s in range(NSECT)))
        r = run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts,
                 "-b", base.name, "-F", "raw",
                 img.name, str(SIZE)], cwd=tmp_path)
        raw = base.read_bytes()
        backing = [raw[s * SECTOR:(s + 1) * SECTOR] for s in range(NSECT)]
    else:
        r = run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, img, str(SIZE)])
        backing = [ZERO] * NSECT
    assert r.returncode == 0, r.stderr
    state = read_image(img, tmp_path / "start.raw")
    started = time.monotonic()
    for it in range(1, ITERATIONS + 1):
        ctx = f"seed {SEED} case {case} iteration {it}"
        t_it = time.monotonic()
        d = Daemon(tmp_path, serve=[str(img), "--format", "qcow2"])
        d.start()
        dead = threading.Event()
        delay = rng.uniform(0.1, 1.5)

        def kill(d=d, dead=dead):
            dead.set()
            d.proc.send_signal(signal.SIGKILL)

        killer = threading.Timer(delay, kill)
        killer.start()
        try:
            ops, mark, errors = drive_load(d.uri(), it, rng, time.monotonic() + delay + 5, dead)
        finally:
            killer.join()
            d.proc.wait(10)
            d.log.close()
        log = d.log_path.read_text()
        if "received SIGTERM" in log and d.proc.returncode == 0:
            # Something outside the test stopped fleeced cleanly (seen on shared boxes).
            # A clean stop is a stronger test: every acknowledged request is durable.
            print(f"{ctx}: fleeced got a SIGTERM from outside the test; checking a clean stop")
            mark = 1 + max((o.done_order for o in ops if o.done_order is not None), default=-1)
        else:
            assert not errors, f"{ctx}: requests failed before the kill: {errors[:5]}\n{log[-3000:]}"
            assert d.proc.returncode == -signal.SIGKILL, f"{ctx}: fleeced exited by itself:\n{log}"

        t_load = time.monotonic()
        rc, out = qemu_check(img)
        assert rc in (0, 3) and "ERROR" not in out and "corrupt" not in out.lower() and \
            not re.search(r"[1-9][0-9]* errors? w", out), \
            f"{ctx}: qemu-img check after the crash (rc {rc}):\n{out}"
        got = read_image(img, tmp_path / "crash.raw")
        problems = check_oracle(it, ops, mark, state, backing, got)
        n_durable = sum(1 for o in ops if o.done_order is not None and
                        (o.done_order < mark or o.fua))
        assert not problems, (f"{ctx}: {len(ops)} requests, {n_durable} durable:\n" +
                              "\n".join(problems))

        # Restart: the open repairs the leaks; the data stays the same; a clean stop
        # leaves an image without errors or leaks.
        with Daemon(tmp_path, serve=[str(img), "--format", "qcow2"]) as d2:
            out_raw = tmp_path / "after.raw"
            r = run(["qemu-img", "convert", "-f", "raw", "-O", "raw", d2.uri(), out_raw])
            assert r.returncode == 0, f"{ctx}: {r.stderr}"
            again = out_raw.read_bytes()
            os.unlink(out_raw)
            assert again == got, f"{ctx}: the disk changed across the repairing restart"
            assert d2.stop() == 0, f"{ctx}:\n{d2.log_text()}"
        t_restart = time.monotonic()
        rc, out = qemu_check(img)
        assert rc == 0, f"{ctx}: qemu-img check after restart and clean stop (rc {rc}):\n{out}"
        state = got
        if os.environ.get("FLEECE_CRASH_VERBOSE"):
            print(f"{ctx}: {len(ops)} requests, kill after {delay:.2f}s, check+oracle "
                  f"{t_restart - t_load:.2f}s, total {time.monotonic() - t_it:.2f}s")
    elapsed = time.monotonic() - started
    print(f"{case}: {ITERATIONS} crash iterations in {elapsed:.1f}s (seed {SEED})")
