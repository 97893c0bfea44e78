"""End-to-end tests of zero-copy I/O (`server: zero-copy`): READ replies of 128 KiB to
1 MiB from a fully allocated raw file are spliced from the page cache to the socket,
and WRITE payloads of that size are spliced from the socket through a pipe into the
file. Every byte read or written through the daemon must equal the file, whichever path
a request takes; query-blockstats counts exactly the spliced bytes; sparse files keep
their OFFSET_HOLE chunks and qcow2 images are copied; a fleece keeps the old data of a
spliced write; `auto` splices only when more than one connection is busy; a client that
vanishes mid-reply leaves no pipe behind."""

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
  zero-copy: {mode}
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
fleecing:
  overlay-dir: "{{dir}}/overlays"
exports:
  - {{{{ name: dense, node: dense, writable: true }}}}
  - {{{{ name: sparse, node: sparse, writable: true }}}}
  - {{{{ name: q, node: q }}}}
"""


def start(tmp_path, mode):
    rng = random.Random(7)
    data = rng.randbytes(DENSE_SIZE)
    (tmp_path / "overlays").mkdir()
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
    """Whether fleeced splices a READ of a fully allocated file (see ZeroCopyPath)."""
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


def test_spliced_writes_land_exactly(tmp_path):
    d, data = start(tmp_path, "always")
    data = bytearray(data)
    with d:
        h = connect(d, "dense")
        rng = random.Random(5)
        plan = [(0, MiB, 0), (777, MiB, nbd.CMD_FLAG_FUA), (DENSE_SIZE - MiB, MiB, 0),
                (3 * MiB, THRESHOLD, 0), (5 * MiB + 1, THRESHOLD - 1, 0), (9 * MiB, 2 * MiB, 0)]
        for _ in range(40):
            length = rng.choice([THRESHOLD, 300000, MiB, 64 * KiB, 4096])
            plan.append((rng.randrange(0, DENSE_SIZE - length), length,
                         rng.choice([0, 0, nbd.CMD_FLAG_FUA])))
        for off, length, flags in plan:
            payload = rng.randbytes(length)
            h.pwrite(payload, off, flags)
            data[off:off + length] = payload
            if rng.random() < 0.3:
                assert h.pread(length, off) == payload
        h.flush()
        h.shutdown()
        assert (tmp_path / "dense.img").read_bytes() == bytes(data)
        st = export_stats(d, "dense")
        assert st["write-bytes"] == sum(length for _, length, _ in plan)
        assert st["write-bytes-zero-copy"] == sum(
            length for _, length, _ in plan if THRESHOLD <= length <= PIPE)


def test_never_copies_writes(tmp_path):
    d, _ = start(tmp_path, "never")
    with d:
        h = connect(d, "dense")
        h.pwrite(bytes(MiB), 0)
        h.shutdown()
        st = export_stats(d, "dense")
        assert st["write-bytes"] == MiB and st["write-bytes-zero-copy"] == 0


def test_fleece_keeps_the_old_data_of_spliced_writes(tmp_path):
    d, data = start(tmp_path, "always")
    with d, Qmp(d.control_sock) as q:
        r = q.cmd("fleece-start", {"id": "f", "node": "dense"})
        assert "return" in r, r
        h = connect(d, "dense")
        new = random.Random(9).randbytes(4 * MiB)
        for off in range(0, 4 * MiB, MiB):
            h.pwrite(new[off:off + MiB], 2 * MiB + off)
        view = connect(d, "dense-fleece")
        for off in range(0, 8 * MiB, MiB):
            assert view.pread(MiB, off) == data[off:off + MiB], off
        assert h.pread(4 * MiB, 2 * MiB) == new
        view.shutdown()
        h.shutdown()
        st = export_stats(d, "dense")
        assert st["write-bytes-zero-copy"] == 4 * MiB
        assert "return" in q.cmd("fleece-stop", {"id": "f"})
