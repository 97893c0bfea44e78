"""End-to-end tests of zero-copy reads (`server: zero-copy-reads`): READ replies of
128 KiB and more from a fully allocated raw file are spliced from the page cache to the
socket. Every byte read through the daemon must equal the file, whichever path a
request takes; query-blockstats counts exactly the spliced bytes; sparse files keep
their OFFSET_HOLE chunks and qcow2 images are copied; `auto` splices only when more
than one connection is busy; a client that vanishes mid-reply leaves no pipe behind."""

import os
import time
import random
import subprocess

import nbd
import pytest

from fleece_harness import Daemon, Qmp, make_image

KiB = 1 << 10
MiB = 1 << 20
PAGE = 4096
THRESHOLD = 128 * KiB
PIPE = MiB
DENSE_SIZE = 16 * MiB + 3 * PAGE + 100  # an unaligned end

CONFIG = """listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
server:
  zero-copy-reads: {mode}
nodes:
  - node-name: dense
    driver: raw
    file: {{{{ driver: file, filename: "{{dir}}/dense.img" }}}}
  - node-name: sparse
    driver: raw
    file: {{{{ driver: file, filename: "{{dir}}/sparse.img" }}}}
  - node-name: q
    driver: qcow2
    file: {{{{ driver: file, filename: "{{dir}}/q.qcow2" }}}}
exports:
  - {{{{ name: dense, node: dense, writable: true }}}}
  - {{{{ name: sparse, node: sparse, writable: true }}}}
  - {{{{ name: q, node: q }}}}
"""


def start(tmp_path, mode):
    rng = random.Random(7)
    data = rng.randbytes(DENSE_SIZE)
    (tmp_path / "dense.img").write_bytes(data)
    make_image(tmp_path / "sparse.img", 8 * MiB, pattern=[(0x11, 0, MiB)])
    make_image(tmp_path / "q.qcow2", 8 * MiB, fmt="qcow2", pattern=[(0x22, 0, 4 * MiB)])
    return Daemon(tmp_path, config=CONFIG.format(mode=mode)), data


def connect(d, name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(str(d.nbd_sock))
    return h


def export_stats(d, name):
    with Qmp(d.control_sock) as q:
        r = q.cmd("query-blockstats", {"node-name": name})
        (node,) = r["return"]
        (exp,) = [e for e in node["exports"] if e["name"] == name]
        return exp


def spliceable(off, length):
    """Whether fleeced splices a READ of a fully allocated file (see LargeReadPath)."""
    pages = (off + length - 1) // PAGE - off // PAGE + 1
    return length >= THRESHOLD and pages * PAGE <= PIPE


def read_plan(size):
    rng = random.Random(11)
    plan = [(0, MiB), (MiB, THRESHOLD), (PAGE, MiB), (777, MiB - PAGE), (5, MiB),
            (size - (MiB - PAGE), MiB - PAGE), (size - 1000, 1000), (size - 1, 1),
            (3 * MiB + 5, 200000), (2 * MiB, THRESHOLD - 1), (0, 4096)]
    for _ in range(60):
        length = rng.choice([THRESHOLD, 256 * KiB, 300000, MiB - PAGE, MiB, 2 * MiB, 64 * KiB])
        plan.append((rng.randrange(0, size - length), length))
    return plan


def pipes_of(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
                n += 1
        except OSError:
            pass
    return n


def test_always_splices_exactly_the_eligible_reads(tmp_path):
    d, data = start(tmp_path, "always")
    with d:
        h = connect(d, "dense")
        plan = read_plan(DENSE_SIZE)
        for off, length in plan:
            assert h.pread(length, off) == data[off:off + length], (off, length)
        h.shutdown()
        st = export_stats(d, "dense")
        assert st["read-bytes"] == sum(length for _, length in plan)
        assert st["read-bytes-zero-copy"] == sum(
            length for off, length in plan if spliceable(off, length))
        # A whole-disk copy with the usual tools.
        out = tmp_path / "copy.img"
        subprocess.run(["nbdcopy", d.uri("dense"), str(out)], check=True, timeout=60)
        assert out.read_bytes() == data
        subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", d.uri("dense"),
                        str(tmp_path / "dense.img")], check=True, timeout=60,
                       stdout=subprocess.DEVNULL)


def test_sparse_files_keep_their_holes_until_they_fill(tmp_path):
    d, _ = start(tmp_path, "always")
    with d:
        h = connect(d, "sparse")
        chunks = []

        def chunk(subbuf, offset, status, err):
            chunks.append(status)
            return 0

        want = b"\x11" * MiB + b"\0" * MiB
        assert h.pread_structured(2 * MiB, 0, chunk) == want
        assert nbd.READ_HOLE in chunks
        assert export_stats(d, "sparse")["read-bytes-zero-copy"] == 0
        # Written full, the file has no hole left: reads are spliced from now on.
        fill = random.Random(3).randbytes(8 * MiB)
        for off in range(0, 8 * MiB, MiB):
            h.pwrite(fill[off:off + MiB], off)
        h.flush()
        assert h.pread(MiB, 2 * MiB) == fill[2 * MiB:3 * MiB]
        assert export_stats(d, "sparse")["read-bytes-zero-copy"] == MiB
        h.shutdown()


def test_qcow2_reads_are_copied(tmp_path):
    d, _ = start(tmp_path, "always")
    with d:
        h = connect(d, "q")
        assert h.pread(2 * MiB, 3 * MiB) == b"\x22" * MiB + b"\0" * MiB
        h.shutdown()
        assert export_stats(d, "q")["read-bytes-zero-copy"] == 0


def test_never_copies(tmp_path):
    d, data = start(tmp_path, "never")
    with d:
        h = connect(d, "dense")
        for off in range(0, 8 * MiB, MiB):
            assert h.pread(MiB, off) == data[off:off + MiB]
        h.shutdown()
        st = export_stats(d, "dense")
        assert st["read-bytes"] == 8 * MiB and st["read-bytes-zero-copy"] == 0


def pipelined_reads(handles, data, per_handle=8, rounds=4):
    """Keeps `per_handle` 1 MiB reads in flight on every handle at once and checks each."""
    for r in range(rounds):
        pending = []
        for i, h in enumerate(handles):
            for k in range(per_handle):
                off = ((r * len(handles) + i) * per_handle + k) * MiB % (16 * MiB)
                buf = nbd.Buffer(MiB)
                pending.append((h, h.aio_pread(buf, off), buf, off))
        for h, cookie, buf, off in pending:
            while not h.aio_command_completed(cookie):
                h.poll(-1)
            assert buf.to_bytearray() == data[off:off + MiB], off


def test_auto_copies_for_one_local_connection_and_splices_for_several(tmp_path):
    d, data = start(tmp_path, "auto")
    with d:
        one = connect(d, "dense")
        pipelined_reads([one], data)
        st = export_stats(d, "dense")
        assert st["read-bytes"] == 32 * MiB and st["read-bytes-zero-copy"] == 0
        # Four busy connections: the server's CPU is what runs out, so it splices.
        many = [one] + [connect(d, "dense") for _ in range(3)]
        pipelined_reads(many, data)
        st = export_stats(d, "dense")
        assert st["read-bytes"] == 32 * MiB + 128 * MiB
        assert st["read-bytes-zero-copy"] > 0
        for h in many:
            h.shutdown()


def test_client_vanishing_mid_reply_leaves_no_pipe(tmp_path):
    d, data = start(tmp_path, "always")
    with d:
        baseline = pipes_of(d.proc.pid)
        for _ in range(3):
            h = connect(d, "dense")
            for k in range(12):
                h.aio_pread(nbd.Buffer(MiB), k * MiB)
            h.poll(0)
            del h  # nbd_close: the socket is gone, with most replies unread
        other = connect(d, "dense")
        assert other.pread(MiB, 4 * MiB) == data[4 * MiB:5 * MiB]
        other.shutdown()
        deadline = time.monotonic() + 10
        while pipes_of(d.proc.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipes_of(d.proc.pid) == baseline
        assert d.alive()
        assert d.stop() == 0
