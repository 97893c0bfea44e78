"""End-to-end tests of I/O statistics: known reads and writes through libnbd show up
exactly in query-blockstats (QEMU's BlockStats counters plus fleece's operations, dirty
bitmaps and fleeces) and in the Prometheus endpoint (`metrics: {unix: PATH}`), whose
every line is valid text exposition format; a fleece's overlay bytes appear; bad HTTP
requests get an error and the daemon keeps serving; a bad metrics section is refused
with its file:line."""

import http.client
import re
import socket
import subprocess
import time

import nbd
import pytest

from fleece_harness import FLEECED, Daemon, Qmp, make_image

MiB = 1 << 20
G = 65536

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
metrics:
  unix: "{dir}/metrics.sock"
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: "{dir}/disk0.img" }}
exports:
  - {{ name: disk0, node: disk0, writable: true }}
bitmaps:
  - {{ node: disk0, name: b, persistent: false, granularity: 65536 }}
fleecing:
  overlay-dir: "{dir}/overlays"
"""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def http_get(path, target="/metrics", method="GET"):
    c = UnixHTTPConnection(path)
    c.request(method, target)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, r.getheader("Content-Type"), body


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([-+0-9.eE]+|\+Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)')
COMMENT = re.compile(r'^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$')


def parse_exposition(text):
    """{(name, frozenset(labels)): value}; asserts every line is valid."""
    assert text.endswith("\n")
    out = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert COMMENT.match(line), line
            parts = line.split(" ")
            if parts[1] == "TYPE":
                assert parts[3] in ("counter", "gauge", "histogram"), line
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        assert m, line
        labels = {}
        if m.group(3):
            rest = m.group(3)
            pos = 0
            while pos < len(rest):
                lm = LABEL.match(rest, pos)
                assert lm, line
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        base = re.sub(r'_(bucket|sum|count)$', '', m.group(1))
        assert m.group(1) in types or base in types, f"sample without TYPE: {line}"
        key = (m.group(1), frozenset(labels.items()))
        assert key not in out, f"duplicate sample: {line}"
        out[key] = float(m.group(4))
    return out


def metric(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def node_stats(qmp, node="disk0"):
    r = qmp.cmd("query-blockstats", {"node-name": node})
    assert "return" in r, r
    assert len(r["return"]) == 1
    return r["return"][0]


@pytest.fixture
def daemon(tmp_path):
    make_image(tmp_path / "disk0.img", 8 * MiB)
    (tmp_path / "overlays").mkdir()
    with Daemon(tmp_path, config=CONFIG) as d:
        deadline = time.monotonic() + 10
        while not (tmp_path / "metrics.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        yield d


def connect(d):
    h = nbd.NBD()
    h.set_export_name("disk0")
    h.connect_unix(str(d.nbd_sock))
    return h


def test_blockstats_count_exactly_what_clients_did(daemon):
    h = connect(daemon)
    for off in (0, MiB, 2 * MiB):
        h.pwrite(b"\x5a" * 4096, off)
    h.pread(8192, 0)
    h.pread(G, MiB)
    h.flush()
    h.trim(G, 3 * MiB)
    h.zero(2 * G, 4 * MiB)
    with Qmp(daemon.control_sock) as q:
        s = node_stats(q)
        st = s["stats"]
        assert s["node-name"] == "disk0" and s["driver"] == "raw"
        assert (st["wr_bytes"], st["wr_operations"]) == (3 * 4096, 3)
        assert (st["rd_bytes"], st["rd_operations"]) == (8192 + G, 2)
        assert st["flush_operations"] == 1
        assert (st["unmap_bytes"], st["unmap_operations"]) == (G, 1)
        for k in ("failed_rd_operations", "failed_wr_operations", "failed_flush_operations",
                  "failed_unmap_operations", "invalid_rd_operations", "invalid_wr_operations"):
            assert st[k] == 0, k
        assert st["rd_total_time_ns"] > 0 and st["wr_total_time_ns"] > 0
        assert sum(st["rd_latency_histogram"]["bins"]) == 2
        assert sum(st["wr_latency_histogram"]["bins"]) == 3
        assert len(st["wr_latency_histogram"]["bins"]) == \
            len(st["wr_latency_histogram"]["boundaries"]) + 1
        zeroes = s["operations"]["write-zeroes"]
        assert (zeroes["requests"], zeroes["bytes"], zeroes["failed"]) == (1, 2 * G, 0)
        assert sum(zeroes["latency-histogram"]["bins"]) == 1
        # The file node below counts what raw passed down to it.
        f = [n for n in q.cmd("query-blockstats")["return"] if n["node-name"] != "disk0"]
        assert len(f) == 1 and f[0]["stats"]["wr_bytes"] == 3 * 4096
        # Dirty bytes: the granules the writes, the trim and the zeroes touched.
        b = s["dirty-bitmaps"]
        assert [x["name"] for x in b] == ["b"]
        assert b[0]["dirty-bytes"] == 3 * G + G + 2 * G
        e = s["exports"]
        assert [x["name"] for x in e] == ["disk0"]
        e = e[0]
        assert (e["connections"], e["connections-total"]) == (1, 1)
        assert (e["read-bytes"], e["write-bytes"]) == (8192 + G, 3 * 4096)
        assert e["requests"] == {"read": 2, "write": 3, "flush": 1, "trim": 1, "cache": 0,
                                 "write-zeroes": 1, "block-status": 0}
        assert sum(e["errors"].values()) == 0

        # An out-of-range read is refused by the NBD layer before any node sees it: the
        # client gets an error, the node's counters do not move (docs/metrics.md).
        h.set_strict_mode(0)
        with pytest.raises(nbd.Error):
            h.pread(4096, 8 * MiB)
        st2 = node_stats(q)["stats"]
        assert (st2["rd_operations"], st2["invalid_rd_operations"],
                st2["failed_rd_operations"]) == (2, 0, 0)
        # ... but the export's NBD-level counters show the error reply.
        e2 = node_stats(q)["exports"][0]
        assert (e2["errors"]["read"], e2["requests"]["read"], e2["read-bytes"]) == \
            (1, 2, 8192 + G)
        h.pread(4096, 0)
        assert node_stats(q)["stats"]["rd_operations"] == 3

        r = q.cmd("query-blockstats", {"node-name": "nope"})
        assert r["error"]["class"] == "DeviceNotFound"
    # fleecectl stats: the same reply with --json, a table without.
    js = daemon.ctl("stats", "disk0")
    assert js[0]["stats"]["rd_operations"] == 3 and js[0]["stats"]["wr_bytes"] == 3 * 4096
    table = daemon.ctl("stats", json_output=False).stdout
    rows = {tuple(line.split()[:3]) for line in table.splitlines()}
    assert ("disk0", "read", "3") in rows and ("disk0", "write", "3") in rows, table
    assert ("disk0", "b", "384K") in rows or any(l.startswith("disk0") and " b " in l
                                                  for l in table.splitlines()), table
    h.shutdown()


def test_prometheus_endpoint_matches_blockstats_and_shows_fleeces(daemon):
    sock = daemon.dir / "metrics.sock"
    h = connect(daemon)
    h.pwrite(b"\x11" * (4 * G), 0)
    for i in range(5):
        h.pread(4096, i * 4096)
    with Qmp(daemon.control_sock) as q:
        assert "return" in q.cmd("fleece-start", {"id": "backup", "node": "disk0"})
        h.pwrite(b"\x22" * (2 * G), 0)  # copies the old data to the overlay
        st = node_stats(q)
        fl = q.cmd("query-fleeces")["return"][0]
        status, ctype, text = http_get(sock)
        assert status == 200
        assert ctype.startswith("text/plain; version=0.0.4")
        m = parse_exposition(text)
        ops = st["operations"]
        assert metric(m, "fleece_node_read_bytes_total", node="disk0") == st["stats"]["rd_bytes"]
        assert metric(m, "fleece_node_write_bytes_total", node="disk0") == 6 * G
        assert metric(m, "fleece_node_requests_total", node="disk0", op="write") == 2
        for op, o in ops.items():
            assert metric(m, "fleece_node_requests_total", node="disk0", op=op) == o["requests"]
            assert metric(m, "fleece_node_bytes_total", node="disk0", op=op) == o["bytes"]
            assert metric(m, "fleece_node_errors_total", node="disk0", op=op) == o["failed"]
            count = metric(m, "fleece_node_latency_seconds_count", node="disk0", op=op)
            assert count == o["requests"]
            buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in m.items()
                              if k[0] == "fleece_node_latency_seconds_bucket"
                              and dict(k[1])["node"] == "disk0" and dict(k[1])["op"] == op))
            assert buckets[-1] == (float("inf"), count)
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
            assert abs(metric(m, "fleece_node_latency_seconds_sum", node="disk0", op=op)
                       - o["total-time-ns"] / 1e9) < 1e-6
        assert metric(m, "fleece_export_connections", export="disk0", node="disk0") == 1
        ex = st["exports"][0]
        assert metric(m, "fleece_export_connections_total", export="disk0", node="disk0") == 1
        assert metric(m, "fleece_export_read_bytes_total", export="disk0", node="disk0") == \
            ex["read-bytes"] == 5 * 4096
        assert metric(m, "fleece_export_write_bytes_total", export="disk0", node="disk0") == \
            6 * G
        for op, n in ex["requests"].items():
            assert metric(m, "fleece_export_requests_total", export="disk0", node="disk0",
                          op=op) == n
            assert metric(m, "fleece_export_errors_total", export="disk0", node="disk0",
                          op=op) == ex["errors"][op] == 0
        assert metric(m, "fleece_bitmap_dirty_bytes", node="disk0", bitmap="b") == \
            st["dirty-bitmaps"][0]["dirty-bytes"]
        assert fl["copied-bytes"] >= 2 * G
        assert metric(m, "fleece_fleece_copied_bytes", id="backup", node="disk0") == \
            fl["copied-bytes"]
        assert metric(m, "fleece_fleece_overlay_bytes", id="backup", node="disk0") == \
            fl["overlay-bytes"] > 0
        assert metric(m, "fleece_fleece_broken", id="backup", node="disk0") == 0
        assert st["fleeces"][0]["id"] == "backup"
        assert st["fleeces"][0]["copied-bytes"] == fl["copied-bytes"]
        # HEAD: the headers only.
        status, _, body = http_get(sock, method="HEAD")
        assert status == 200 and body == ""
        assert "return" in q.cmd("fleece-stop", {"id": "backup"})
    h.shutdown()
    m = parse_exposition(http_get(sock)[2])
    assert metric(m, "fleece_export_connections", export="disk0", node="disk0") == 0
    assert not [k for k in m if k[0] == "fleece_fleece_overlay_bytes"]


def raw_exchange(path, data, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        if data:
            s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def test_bad_http_requests_get_errors_and_the_daemon_survives(daemon):
    sock = daemon.dir / "metrics.sock"
    assert raw_exchange(sock, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(sock, b"\x00\xff\x10\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(sock, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc") \
        .startswith(b"HTTP/1.1 405 ")
    assert raw_exchange(sock, b"GET /other HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert raw_exchange(sock, b"GET /metrics HTTP/3\r\n\r\n").startswith(b"HTTP/1.1 505 ")
    huge = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"
    assert raw_exchange(sock, huge).startswith(b"HTTP/1.1 431 ")
    # Half a request, then the client stops sending: 400.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock))
    s.sendall(b"GET /metr")
    s.shutdown(socket.SHUT_WR)
    assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    s.close()
    # A client that sends nothing is dropped after the timeout (5 s); others are served
    # meanwhile.
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.settimeout(15)
    idle.connect(str(sock))
    t0 = time.monotonic()
    assert http_get(sock)[0] == 200
    assert idle.recv(100) == b""
    assert 3 < time.monotonic() - t0 < 12
    idle.close()
    assert daemon.alive()
    assert http_get(sock)[0] == 200
    h = connect(daemon)
    h.pread(4096, 0)
    h.shutdown()


@pytest.mark.parametrize("section,message", [
    ("metrics:\n  listen: nohost\n", "metrics.listen"),
    ("metrics:\n  listen: 127.0.0.1:9187\n  unix: /tmp/x.sock\n", "not both"),
    ("metrics:\n  port: 9187\n", "metrics"),
])
def test_bad_metrics_section_is_refused_with_its_line(tmp_path, section, message):
    cfg = tmp_path / "fleeced.yaml"
    cfg.write_text("listen:\n  - unix: /tmp/none.sock\nnodes: []\nexports: []\n" + section)
    r = subprocess.run([str(FLEECED), "--check-config", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert f"{cfg}:5:" in out or f"{cfg}:6:" in out, out
    assert message in out, out


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_endpoint_on_a_local_tcp_address(tmp_path):
    make_image(tmp_path / "disk0.img", MiB)
    port = free_tcp_port()
    cfg = (CONFIG.replace('unix: "{dir}/metrics.sock"', f"listen: 127.0.0.1:{port}")
           .replace("bitmaps:\n  - {{ node: disk0, name: b, persistent: false, "
                    "granularity: 65536 }}\n", "")
           .replace('fleecing:\n  overlay-dir: "{dir}/overlays"\n', ""))
    with Daemon(tmp_path, config=cfg) as d:
        h = connect(d)
        h.pread(4096, 0)
        c = None
        deadline = time.monotonic() + 10
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/metrics")
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        r = c.getresponse()
        m = parse_exposition(r.read().decode())
        assert r.status == 200
        assert metric(m, "fleece_node_read_bytes_total", node="disk0") == 4096
        assert metric(m, "fleece_export_read_bytes_total", export="disk0", node="disk0") == 4096
        assert f"metrics: serving GET /metrics on tcp:127.0.0.1:{port}" in d.log_text()
        h.shutdown()
