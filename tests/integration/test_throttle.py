"""End-to-end tests of the `throttle` filter node: a 256 MiB raw image served twice, once
plain and once through a throttle node from the YAML config (bps-read 20 MiB/s); fio's
nbd engine reads both at once — the throttled export stays within 10% of its limit while
the plain one runs much faster. An IOPS limit set up over the control socket
(blockdev-add driver=throttle + block-export-add) holds 4 KiB random reads to within 10%
of iops-read 500. block-set-throttle (and `fleecectl node throttle`) change the limits
of a running read stream within a second, query-named-block-nodes shows them, the data
read through the throttle equals the file, writes through a writable throttle node are
limited and marked in the child's dirty bitmap, which the throttle node's export offers,
and bad limits in the YAML are reported with file:line."""

import json
import os
import subprocess
import threading
import time

import nbd
import pytest

from fleece_harness import (FLEECED, Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            nbdinfo_extents, query_dirty_bitmaps)

MiB = 1 << 20
DISK = 256 * MiB
LIMIT = 20 * MiB
TIMEOUT = 60

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: "{dir}/disk0.img" }}
  - node-name: slow
    driver: throttle
    read-only: true
    file: disk0
    limits: {{ bps-read: 20M }}
exports:
  - {{ name: disk0, node: disk0, writable: true }}
  - {{ name: slow, node: slow }}
"""


def make_disk(path):
    """A raw image of distinct 1 MiB blocks (a random block with the block number mixed in)."""
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as f:
        for i in range(DISK // MiB):
            block[0:8] = i.to_bytes(8, "little")
            block[MiB // 2:MiB // 2 + 8] = (i * 7919).to_bytes(8, "little")
            f.write(block)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    if subprocess.run(["fio", "--enghelp=nbd"], capture_output=True).returncode != 0:
        pytest.skip("this fio has no nbd ioengine")
    tmp = tmp_path_factory.mktemp("throttle")
    make_disk(tmp / "disk0.img")
    with Daemon(tmp, config=CONFIG) as d:
        yield d


def fio(uri, name, rw, bs, iodepth, runtime, ramp=1):
    """Starts a time-based fio job with the nbd engine; returns the Popen."""
    args = ["fio", f"--name={name}", "--ioengine=nbd", f"--uri={uri}", f"--rw={rw}",
            f"--bs={bs}", f"--iodepth={iodepth}", "--time_based", f"--runtime={runtime}s",
            f"--ramp_time={ramp}s", "--output-format=json"]
    if rw.startswith("rand"):
        args += ["--norandommap", "--randrepeat=0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fio_result(proc):
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    # fio's nbd engine prints "fio: connected to NBD server" before the JSON.
    read = json.loads(out[out.index("{"):])["jobs"][0]["read"]
    return read["bw_bytes"], read["iops"]


def test_throttled_export_holds_its_byte_rate_while_the_plain_one_runs_free(daemon):
    slow = fio(daemon.uri("slow"), "slow", "read", "1M", 4, runtime=5)
    fast = fio(daemon.uri("disk0"), "fast", "read", "1M", 4, runtime=5)
    slow_bw, _ = fio_result(slow)
    fast_bw, _ = fio_result(fast)
    print(f"throttled {slow_bw / MiB:.1f} MiB/s, plain {fast_bw / MiB:.1f} MiB/s")
    assert 0.9 * LIMIT <= slow_bw <= 1.1 * LIMIT, f"throttled: {slow_bw / MiB:.1f} MiB/s"
    assert fast_bw >= 3 * LIMIT, f"unthrottled: {fast_bw / MiB:.1f} MiB/s"


def test_iops_limit_from_blockdev_add(daemon):
    with Qmp(daemon.control_sock) as q:
        r = q.cmd("blockdev-add", {"driver": "throttle", "node-name": "iops", "read-only": True,
                                   "file": "disk0", "limits": {"iops-read": 500}})
        assert r == {"return": {}}, r
        r = q.cmd("block-export-add", {"type": "nbd", "id": "iops", "name": "iops",
                                       "node-name": "iops"})
        assert r == {"return": {}}, r
        try:
            job = fio(daemon.uri("iops"), "iops", "randread", "4k", 8, runtime=5)
            _, iops = fio_result(job)
            print(f"throttled {iops:.0f} IOPS")
            assert 450 <= iops <= 550, f"{iops:.0f} IOPS"
            node = next(n for n in q.cmd("query-named-block-nodes")["return"]
                        if n["node-name"] == "iops")
            assert node["drv"] == "throttle"
            assert node["iops_rd"] == 500 and node["bps"] == 0
            assert node["throttle-limits"]["iops-read"] == 500
        finally:
            q.cmd("block-export-del", {"id": "iops"})
            deadline = time.monotonic() + 10
            while q.cmd("blockdev-del", {"node-name": "iops"}).get("error"):
                assert time.monotonic() < deadline, "the throttle node stayed in use"
                time.sleep(0.1)


class Reader(threading.Thread):
    """Reads the export sequentially in 256 KiB requests, recording (end time, bytes)."""

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.uri = uri
        self.samples = []
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            h = nbd.NBD()
            h.connect_uri(self.uri)
            off = 0
            while not self.stop.is_set():
                h.pread(256 << 10, off)
                self.samples.append((time.monotonic(), 256 << 10))
                off = (off + (256 << 10)) % DISK
            h.shutdown()
        except Exception as e:  # reported by the test
            self.error = e

    def rate(self, start, end):
        return sum(n for t, n in self.samples if start < t <= end) / (end - start)


def set_limits(q, node, limits):
    r = q.cmd("block-set-throttle", {"node-name": node, "limits": limits})
    assert r == {"return": {}}, r


def test_limit_changes_at_run_time_take_effect_within_a_second(daemon):
    reader = Reader(daemon.uri("slow"))
    t0 = time.monotonic()
    reader.start()
    try:
        with Qmp(daemon.control_sock) as q:
            time.sleep(2.0)
            lowered = time.monotonic()
            # fleecectl changes only what it is given, through block-set-throttle.
            daemon.ctl("node", "throttle", "slow", "--bps-read", "5M")
            time.sleep(2.5)
            raised = time.monotonic()
            set_limits(q, "slow", {"bps-read": 40 * MiB})
            time.sleep(2.0)
            end = time.monotonic()
            node = next(n for n in q.cmd("query-named-block-nodes")["return"]
                        if n["node-name"] == "slow")
            set_limits(q, "slow", {"bps-read": LIMIT})
    finally:
        reader.stop.set()
        reader.join(10)
    assert reader.error is None, reader.error
    before = reader.rate(t0 + 0.5, lowered)
    low = reader.rate(lowered + 1.0, raised)
    high = reader.rate(raised + 1.0, end)
    print(f"{before / MiB:.1f} -> {low / MiB:.1f} -> {high / MiB:.1f} MiB/s")
    assert 0.8 * LIMIT <= before <= 1.1 * LIMIT, f"before: {before / MiB:.1f} MiB/s"
    assert 0.9 * 5 * MiB <= low <= 1.1 * 5 * MiB, f"lowered: {low / MiB:.1f} MiB/s"
    assert 0.75 * 40 * MiB <= high <= 1.1 * 40 * MiB, f"raised: {high / MiB:.1f} MiB/s"
    assert node["bps_rd"] == 40 * MiB
    assert node["throttle-limits"]["bps-read"] == 40 * MiB
    assert node["throttle-limits"]["bps-total"] == 0


def test_a_reload_with_new_limits_applies_them_without_dropping_clients(daemon):
    """SIGHUP with only the throttle node's limits changed in the YAML: the node stays
    open, the connection reading it keeps going, and the new rate holds."""
    import signal
    original = daemon.config_path.read_text()
    reader = Reader(daemon.uri("slow"))
    reader.start()
    try:
        time.sleep(1.5)
        daemon.config_path.write_text(original.replace("bps-read: 20M", "bps-read: 8M"))
        daemon.signal(signal.SIGHUP)
        changed = time.monotonic()
        deadline = changed + 10
        while "node 'slow' has new throttle limits" not in daemon.log_text():
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.05)
        time.sleep(3.0)
        end = time.monotonic()
    finally:
        reader.stop.set()
        reader.join(10)
        daemon.config_path.write_text(original)
        daemon.signal(signal.SIGHUP)
    assert reader.error is None, reader.error  # the connection was not dropped
    low = reader.rate(changed + 1.0, end)
    assert 0.85 * 8 * MiB <= low <= 1.1 * 8 * MiB, f"after reload: {low / MiB:.1f} MiB/s"
    assert "node 'slow' closed" not in daemon.log_text()
    with Qmp(daemon.control_sock) as q:
        deadline = time.monotonic() + 10
        while True:  # the restoring reload is applied too
            node = next(n for n in q.cmd("query-named-block-nodes")["return"]
                        if n["node-name"] == "slow")
            if node["throttle-limits"]["bps-read"] == LIMIT:
                break
            assert time.monotonic() < deadline, node
            time.sleep(0.05)


def test_reads_through_the_throttle_equal_the_file(daemon):
    h = nbd.NBD()
    h.connect_uri(daemon.uri("slow"))
    try:
        assert h.get_size() == DISK
        with open(daemon.dir / "disk0.img", "rb") as f:
            for off, length in [(0, MiB), (37 * MiB + 4096, 3 * MiB), (DISK - 2 * MiB, 2 * MiB),
                                (129 * MiB - 512, 1024)]:
                f.seek(off)
                assert h.pread(length, off) == f.read(length), f"at {off}"
        # Writes go through the plain export; the throttle node sees them (no cache).
        w = nbd.NBD()
        w.connect_uri(daemon.uri("disk0"))
        w.pwrite(b"\xab" * 65536, 5 * MiB)
        w.flush()
        w.shutdown()
        assert h.pread(65536, 5 * MiB) == b"\xab" * 65536
    finally:
        h.shutdown()


def test_writes_through_a_throttle_node_mark_the_childs_bitmap_which_its_export_offers(daemon):
    """A writable throttle node over a node with a dirty bitmap: its export offers the
    child's bitmap, and writes through it are throttled and marked on the child."""
    image = daemon.dir / "small.img"
    with open(image, "wb") as f:
        f.truncate(16 * MiB)
    with Qmp(daemon.control_sock) as q:
        for cmd, args in [
                ("blockdev-add", {"driver": "file", "node-name": "small", "filename": str(image)}),
                ("block-dirty-bitmap-add", {"node": "small", "name": "b", "persistent": False}),
                ("blockdev-add", {"driver": "throttle", "node-name": "small-slow", "file": "small",
                                  "limits": {"iops-write": 20}}),
                ("block-export-add", {"type": "nbd", "id": "small-slow", "name": "small-slow",
                                      "node-name": "small-slow", "writable": True,
                                      "bitmaps": ["b"]})]:
            r = q.cmd(cmd, args)
            assert r == {"return": {}}, (cmd, r)
        h = nbd.NBD()
        h.connect_uri(daemon.uri("small-slow"))
        start = time.monotonic()
        for i in range(12):  # 20 IOPS: 2 in the bucket, then one per 50 ms
            h.pwrite(b"\x5a" * 4096, (i * 256 + 3) * 4096)
        took = time.monotonic() - start
        h.shutdown()
        assert 0.4 <= took <= 1.5, f"12 writes took {took:.2f} s"
        extents = nbdinfo_extents(daemon.uri("small-slow"), dirty_bitmap_context("b"))
        assert dirty_granules_of(extents, 65536, 16 * MiB) == {(i * 256 + 3) * 4096 // 65536
                                                              for i in range(12)}
        assert query_dirty_bitmaps(q, "small")["b"]["count"] == 12 * 65536
        assert q.cmd("block-export-del", {"id": "small-slow"}) == {"return": {}}


def test_bad_limits_in_the_config_are_reported_with_their_line(tmp_path):
    config = f"""nodes:
  - node-name: disk0
    driver: file
    filename: {tmp_path}/disk0.img
  - node-name: slow
    driver: throttle
    file: disk0
    limits:
      bps-read: 10X
      iops-total-max: 100
      bps-rate: 1M
"""
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    r = subprocess.run([str(FLEECED), "--check-config", "--config", str(path)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"{path}:9: nodes[1].limits.bps-read: '10X' is not a size" in out, out
    assert f"{path}:11: nodes[1].limits: unknown key 'bps-rate'" in out, out

    path.write_text(config.replace("      bps-read: 10X\n", "").replace("      bps-rate: 1M\n", ""))
    r = subprocess.run([str(FLEECED), "--check-config", "--config", str(path)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert (f"{path}:9: nodes[1].limits.iops-total-max: iops-total-max requires iops-total"
            in out), out
