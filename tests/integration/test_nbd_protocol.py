"""End-to-end NBD protocol tests against the real daemon (`fleeced serve`), with libnbd as
the client for protocol corners, raw sockets for garbage, and the standard tools
(nbdinfo, nbdcopy, qemu-img, qemu-io) for interoperability. After every test the daemon
must still be running and serve a new connection."""

import errno
import json
import os
import random
import socket
import struct
import subprocess
import time

import nbd
import pytest

from fleece_harness import Daemon, make_image

MiB = 1 << 20
SIZE = 16 * MiB
IHAVEOPT = 0x49484156454F5054
NBD_MAGIC = 0x4E42444D41474943
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
REP_ACK = 1
CMD_READ, CMD_WRITE, CMD_DISC = 0, 1, 2
STATE_HOLE, STATE_ZERO = 1, 2

# Data at [0, 1 MiB) = 0x11 and [4 MiB, 6 MiB) = 0x22; the rest is a sparse hole.
PATTERN = [(0x11, 0, MiB), (0x22, 4 * MiB, 2 * MiB)]


@pytest.fixture
def image(tmp_path):
    return make_image(tmp_path / "disk.raw", SIZE, pattern=PATTERN)


def check_alive(d):
    assert d.alive(), "fleeced died:\n" + d.log_text()
    h = connect(d.uri())
    assert len(h.pread(512, 0)) == 512
    h.shutdown()


@pytest.fixture
def daemon(tmp_path, image):
    with Daemon(tmp_path, serve=[str(image)], extra_args=["--log-level", "debug"]) as d:
        yield d
        check_alive(d)


@pytest.fixture
def ro_daemon(tmp_path, image):
    with Daemon(tmp_path, serve=[str(image), "--read-only"]) as d:
        yield d
        check_alive(d)


def connect(uri, strict=True, contexts=("base:allocation",)):
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    for c in contexts:
        h.add_meta_context(c)
    h.connect_uri(uri)
    return h


def wait_log(d, text, timeout=5.0):
    """True once `text` appears in the daemon log (lines are written as connections end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log_text():
            return True
        time.sleep(0.02)
    return False


def nbd_errno(fn):
    """Runs fn, expecting an NBD error; returns its errno."""
    with pytest.raises(nbd.Error) as e:
        fn()
    return e.value.errnum


# ---- protocol corners with libnbd ---------------------------------------------------

def test_out_of_range_requests_get_the_spec_errors(daemon):
    h = connect(daemon.uri(), strict=False)
    size = h.get_size()
    assert size == SIZE
    assert nbd_errno(lambda: h.pread(512, size)) == errno.EINVAL
    assert nbd_errno(lambda: h.pread(1024, size - 512)) == errno.EINVAL
    assert nbd_errno(lambda: h.pwrite(b"x" * 512, size)) == errno.ENOSPC
    assert nbd_errno(lambda: h.trim(512, size)) == errno.EINVAL
    assert nbd_errno(lambda: h.zero(512, size)) == errno.ENOSPC
    assert nbd_errno(lambda: h.cache(512, size)) == errno.EINVAL
    assert nbd_errno(lambda: h.block_status(512, size, lambda *a: 0)) == errno.EINVAL
    # The connection survives all of it.
    assert h.pread(512, size - 512) == b"\0" * 512
    h.shutdown()


def test_unknown_and_misplaced_flags_are_einval(daemon):
    h = connect(daemon.uri(), strict=False)
    assert nbd_errno(lambda: h.pread(512, 0, flags=0x40)) == errno.EINVAL
    assert nbd_errno(lambda: h.pread(512, 0, flags=nbd.CMD_FLAG_REQ_ONE)) == errno.EINVAL
    assert nbd_errno(lambda: h.pwrite(b"y" * 512, 0, flags=nbd.CMD_FLAG_DF)) == errno.EINVAL
    assert nbd_errno(lambda: h.trim(512, 0, flags=nbd.CMD_FLAG_NO_HOLE)) == errno.EINVAL
    # FUA is accepted on any command once negotiated.
    assert h.pread(512, 0, flags=nbd.CMD_FLAG_FUA) == b"\x11" * 512
    # Nothing was written by the refused write.
    assert h.pread(512, 0) == b"\x11" * 512
    h.shutdown()


def test_read_only_export_refuses_writes(ro_daemon):
    h = connect(ro_daemon.uri(), strict=False)
    assert h.is_read_only()
    assert not h.can_trim() and not h.can_zero()
    assert nbd_errno(lambda: h.pwrite(b"z" * 512, 0)) == errno.EPERM
    assert nbd_errno(lambda: h.trim(512, 0)) == errno.EPERM
    assert nbd_errno(lambda: h.zero(512, 0)) == errno.EPERM
    assert h.pread(512, 0) == b"\x11" * 512
    h.shutdown()


def test_block_status_and_req_one(daemon):
    h = connect(daemon.uri())
    assert h.can_meta_context("base:allocation")
    seen = []

    def cb(meta, off, entries, err):
        seen.append((meta, off, list(entries)))
        return 0

    h.block_status(SIZE, 0, cb)
    assert len(seen) == 1
    meta, off, entries = seen[0]
    assert meta == "base:allocation" and off == 0
    pairs = list(zip(entries[0::2], entries[1::2]))
    assert sum(length for length, _ in pairs) <= SIZE
    assert pairs[0] == (MiB, 0)
    assert pairs[1][1] == STATE_HOLE | STATE_ZERO
    # REQ_ONE: exactly one extent, never longer than the request.
    for offset, length in [(0, SIZE), (0, 4096), (2 * MiB, 100), (4 * MiB + 512, 3 * MiB)]:
        seen.clear()
        h.block_status(length, offset, cb, nbd.CMD_FLAG_REQ_ONE)
        (_, _, entries), = seen
        assert len(entries) == 2
        assert 0 < entries[0] <= length
    h.shutdown()


def test_block_status_without_context_is_einval(daemon):
    h = connect(daemon.uri(), strict=False, contexts=())
    assert nbd_errno(lambda: h.block_status(4096, 0, lambda *a: 0)) == errno.EINVAL
    h.shutdown()


def test_df_read_and_sparse_read(daemon):
    h = connect(daemon.uri())
    assert h.get_structured_replies_negotiated() and h.can_df()
    expected = b"\x11" * MiB + b"\0" * (3 * MiB) + b"\x22" * (2 * MiB)
    assert h.pread(6 * MiB, 0) == expected
    # Chunks as the client sees them: holes arrive as OFFSET_HOLE without DF.
    chunks = []

    def chunk(subbuf, offset, status, err):
        chunks.append((offset, len(subbuf), status))
        return 0

    assert h.pread_structured(6 * MiB, 0, chunk) == expected
    assert any(s == nbd.READ_HOLE for _, _, s in chunks)
    chunks.clear()
    assert h.pread_structured(6 * MiB, 0, chunk, nbd.CMD_FLAG_DF) == expected
    assert [s for _, _, s in chunks] == [nbd.READ_DATA]
    h.shutdown()


def test_list_and_set_meta_context_queries(daemon):
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.set_strict_mode(0)
    h.connect_uri(daemon.uri())

    def listed(*queries):
        h.clear_meta_contexts()
        for q in queries:
            h.add_meta_context(q)
        names = []
        h.opt_list_meta_context(lambda name: names.append(name) or 0)
        return names

    assert listed() == ["base:allocation"]
    assert listed("base:") == ["base:allocation"]
    assert listed("base:allocation") == ["base:allocation"]
    assert listed("nosuch:x") == []
    assert listed("qemu:dirty-bitmap:") == []
    assert listed("nosuch:x", "base:") == ["base:allocation"]
    # SET (done by GO in libnbd): a wildcard selects nothing, an exact name selects it.
    h.clear_meta_contexts()
    h.add_meta_context("base:")
    h.opt_go()
    assert not h.can_meta_context("base:allocation")
    assert nbd_errno(lambda: h.block_status(4096, 0, lambda *a: 0)) == errno.EINVAL
    h.shutdown()


def test_opt_info_and_list(tmp_path, image):
    with Daemon(tmp_path, serve=[str(image), "--name", "vol"]) as d:
        h = nbd.NBD()
        h.set_opt_mode(True)
        h.connect_uri(d.uri("vol"))
        names = []
        h.opt_list(lambda name, desc: names.append(name) or 0)
        assert names == ["vol"]
        h.set_export_name("nosuch")
        with pytest.raises(nbd.Error):
            h.opt_info()  # "nosuch" is unknown: NBD_REP_ERR_UNKNOWN, still negotiating
        h.set_export_name("vol")
        h.opt_info()
        assert h.get_size() == SIZE
        h.opt_go()
        assert h.pread(4, 4 * MiB) == b"\x22" * 4
        h.shutdown()


def wait_all(h, cookies):
    """Polls until every command completed (each cookie is retired exactly once)."""
    pending = set(cookies)
    deadline = time.monotonic() + 30
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} commands never completed"
        pending = {c for c in pending if not h.aio_command_completed(c)}
        if pending:
            h.poll(1)


def test_pipelined_aio_requests(daemon):
    h = connect(daemon.uri())
    bufs = [nbd.Buffer.from_bytearray(bytearray([i % 251]) * 65536) for i in range(64)]
    wait_all(h, [h.aio_pwrite(buf, 8 * MiB + i * 65536) for i, buf in enumerate(bufs)])
    reads = [nbd.Buffer(65536) for _ in range(64)]
    wait_all(h, [h.aio_pread(buf, 8 * MiB + i * 65536) for i, buf in enumerate(reads)])
    for i, buf in enumerate(reads):
        assert buf.to_bytearray() == bytearray([i % 251]) * 65536
    assert h.aio_in_flight() == 0
    h.flush()
    h.shutdown()


def test_flush_is_visible_across_connections(daemon):
    a = connect(daemon.uri())
    b = connect(daemon.uri())
    assert a.can_multi_conn()
    a.pwrite(b"\x33" * 4096, 12 * MiB)
    a.flush()
    assert b.pread(4096, 12 * MiB) == b"\x33" * 4096
    a.shutdown()
    b.shutdown()


def test_write_zeroes_and_trim(daemon):
    h = connect(daemon.uri())
    assert h.can_zero() and h.can_fast_zero() and h.can_trim()
    h.zero(MiB // 2, 0, flags=nbd.CMD_FLAG_NO_HOLE)
    assert h.pread(MiB // 2, 0) == b"\0" * (MiB // 2)
    h.zero(MiB // 2, 0)
    h.trim(MiB, 4 * MiB)
    h.flush()
    h.shutdown()


# ---- misbehaving clients ------------------------------------------------------------

def raw_connect(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(d.nbd_sock))
    return s


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def raw_handshake(s, export=b""):
    greeting = recv_exact(s, 18)
    assert struct.unpack(">QQH", greeting)[:2] == (NBD_MAGIC, IHAVEOPT)
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    data = struct.pack(">I", len(export)) + export + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        _, _, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
        recv_exact(s, length)
        if rtype == REP_ACK:
            return
        assert rtype & 0x80000000 == 0, "GO failed"


def wait_closed(s):
    """True when the server closes the socket (it may first send replies)."""
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_client_disconnects_mid_request(daemon):
    s = raw_connect(daemon)
    raw_handshake(s)
    # A 1 MiB write with only 1000 bytes of payload, then gone.
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, MiB) + b"\xee" * 1000)
    s.close()
    # Another client mid-read of a large reply.
    s = raw_connect(daemon)
    raw_handshake(s)
    for i in range(8):
        s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, i, 0, 4 * MiB))
    s.close()
    time.sleep(0.2)
    h = connect(daemon.uri())
    assert h.pread(1000, 0) == b"\x11" * 1000  # the partial write did nothing
    h.shutdown()
    assert wait_log(daemon, "in the middle of a request")


def test_disconnect_in_handshake(daemon):
    s = raw_connect(daemon)
    recv_exact(s, 18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"\0" * 10)
    s.close()


def test_garbage_before_and_after_handshake(daemon):
    rng = random.Random(1234)
    for _ in range(5):
        s = raw_connect(daemon)
        recv_exact(s, 18)
        try:
            s.sendall(bytes(rng.getrandbits(8) for _ in range(4096)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert wait_closed(s)
        s.close()
    s = raw_connect(daemon)
    raw_handshake(s)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(rng.getrandbits(8) for _ in range(100)))
    assert wait_closed(s)
    s.close()
    assert wait_log(daemon, "protocol violation: bad request magic")


def test_unknown_command_over_raw_socket(daemon):
    s = raw_connect(daemon)
    raw_handshake(s)
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 42, 7, 0, 0))
    magic, error, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    assert (magic, error, cookie) == (SIMPLE_REPLY_MAGIC, errno.EINVAL, 7)
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 8, 0, 0))
    assert wait_closed(s)
    s.close()


def test_oversized_write_disconnects(daemon):
    s = raw_connect(daemon)
    raw_handshake(s)
    s.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, 0, 64 * MiB))
    assert wait_closed(s)
    s.close()


# ---- standard tools -----------------------------------------------------------------

def run(*cmd, **kw):
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, timeout=120, **kw)


def test_nbdinfo_list_json_map(daemon):
    out = run("nbdinfo", "--list", daemon.uri()).stdout
    assert "export-size: 16777216" in out
    info = json.loads(run("nbdinfo", "--json", daemon.uri()).stdout)
    exp = info["exports"][0]
    assert info["structured"] is True
    assert exp["export-size"] == SIZE
    assert "base:allocation" in exp["contexts"]
    assert exp["can_df"] and exp["can_multi_conn"] and exp["can_fua"]
    m = run("nbdinfo", "--map", "--json", daemon.uri()).stdout
    extents = json.loads(m)
    assert extents[0]["offset"] == 0 and extents[0]["length"] == MiB
    assert extents[0]["type"] == 0
    data_bytes = sum(e["length"] for e in extents if e["type"] & STATE_HOLE == 0)
    assert data_bytes == 3 * MiB


def test_nbdcopy_both_ways(daemon, image, tmp_path):
    out = tmp_path / "copy.raw"
    run("nbdcopy", daemon.uri(), str(out))
    assert out.read_bytes() == image.read_bytes()
    src = tmp_path / "src.raw"
    make_image(src, SIZE, pattern=[(0x44, 2 * MiB, 3 * MiB), (0x55, 15 * MiB, MiB)])
    run("nbdcopy", str(src), daemon.uri())
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(src), daemon.uri())


def test_qemu_img_compare_and_qemu_io(daemon, image):
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(image), daemon.uri())
    out = run("qemu-io", "-f", "raw", "-c", "write -P 0x66 3M 64k", "-c",
              "read -P 0x66 3M 64k", "-c", "read -P 0x11 0 1M", "-c", "read -P 0x22 4M 2M",
              daemon.uri()).stdout
    assert "Pattern verification failed" not in out
    run("qemu-io", "-f", "raw", "-c", "read -P 0x66 3M 64k", daemon.uri())
    # The daemon wrote through to the file.
    with open(image, "rb") as f:
        f.seek(3 * MiB)
        assert f.read(65536) == b"\x66" * 65536


def test_connection_summary_is_logged(daemon):
    h = connect(daemon.uri())
    h.pread(4096, 0)
    h.pwrite(b"\x77" * 8192, 10 * MiB)
    h.shutdown()
    assert wait_log(daemon, "8192 bytes written")
    line = [l for l in daemon.log_text().splitlines() if "8192 bytes written" in l][-1]
    assert "4096 bytes read" in line and "8192 bytes written" in line
    assert "NBD_CMD_DISC" in line
