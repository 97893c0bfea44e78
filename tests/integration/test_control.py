"""End-to-end tests of the QMP control socket and fleecectl against the real daemon:
the QMP exchange (also the way Python's qemu.qmp talks: no newlines, pipelined),
runtime blockdev-add/block-export-add of a qemu-img image read back over NBD, export
removal closing it, blockdev-del, events, fleecectl human and --json output, errors,
and that bad input never takes the daemon down."""

import json
import os
import socket
import stat
import subprocess
import time

import nbd
import pytest

from fleece_harness import FLEECECTL, Daemon, Qmp, make_image, wait_for_socket

MiB = 1 << 20

# One node and export from the config file; everything else is added at run time.
CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
log:
  level: debug
nodes:
  - node-name: base
    driver: raw
    read-only: true
    file:
      driver: file
      filename: "{dir}/base.raw"
      read-only: true
exports:
  - name: base
    node: base
    description: "from the config"
"""


def start_daemon(tmp_path):
    make_image(tmp_path / "base.raw", MiB, pattern=[(0x42, 0, 4096)])
    return Daemon(tmp_path, config=CONFIG).start(wait_control=True)


@pytest.fixture
def daemon(tmp_path):
    d = start_daemon(tmp_path)
    yield d
    assert d.alive(), "fleeced died during the test:\n" + d.log_text()
    assert d.stop() == 0


def ctl(d, *args, json_output=False, socket_path=None, cwd=None):
    cmd = [str(FLEECECTL), "--socket", str(socket_path or d.control_sock)]
    if json_output:
        cmd.append("--json")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30,
                          cwd=cwd)


def nbd_open(d, export):
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(str(d.nbd_sock))
    return h


class RawQmp:
    """Speaks QMP over a plain socket the way qemu.qmp does: compact JSON with no
    newline after it, replies read as CRLF-terminated lines."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def msg(self):
        return json.loads(self.line())

    def close(self):
        self.sock.close()


def test_control_socket_is_owner_only(daemon):
    mode = os.lstat(daemon.control_sock).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_qmp_greeting_negotiation_and_errors(daemon):
    q = Qmp(daemon.control_sock)
    g = q.greeting["QMP"]
    assert g["capabilities"] == []
    assert set(g["version"]["qemu"]) == {"major", "minor", "micro"}
    assert g["version"]["package"].startswith("fleece ")
    r = q.cmd("query-version", id=1)
    assert r == {"id": 1, "error": {"class": "CommandNotFound",
                                    "desc": "Expecting capabilities negotiation with "
                                            "'qmp_capabilities'"}}
    assert q.cmd("qmp_capabilities", id="neg") == {"return": {}, "id": "neg"}
    assert q.cmd("qmp_capabilities")["error"]["class"] == "CommandNotFound"
    assert q.cmd("query-version", id={"any": ["json"]}) == {
        "return": g["version"], "id": {"any": ["json"]}}
    assert q.cmd("no-such-thing", id=5) == {
        "id": 5, "error": {"class": "CommandNotFound",
                           "desc": "The command no-such-thing has not been found"}}
    assert q.cmd("blockdev-del", {"node": "x"})["error"] == {
        "class": "GenericError", "desc": "Parameter 'node-name' is missing"}
    names = {c["name"] for c in q.cmd("query-commands")["return"]}
    assert {"qmp_capabilities", "query-version", "query-commands", "blockdev-add",
            "blockdev-del", "query-named-block-nodes", "block-export-add",
            "block-export-del", "query-block-exports"} <= names
    q.close()


def test_python_qmp_tooling_wire_shape(daemon):
    """No newlines between messages, several in one write, ids like qemu.qmp's."""
    c = RawQmp(daemon.control_sock)
    greeting = c.line()
    assert greeting.endswith(b"\r")  # QMP lines end in CRLF
    assert "QMP" in json.loads(greeting)
    c.send('{"execute":"qmp_capabilities","id":"__aqmp#00001"}')
    assert c.msg() == {"return": {}, "id": "__aqmp#00001"}
    c.send('{"execute":"query-version","id":"__aqmp#00002"}'
           '{"execute":"query-block-exports","id":"__aqmp#00003"}')
    assert c.msg()["id"] == "__aqmp#00002"
    exports = c.msg()
    assert exports["id"] == "__aqmp#00003"
    assert exports["return"] == [{"id": "base", "type": "nbd", "node-name": "base",
                                  "shutting-down": False, "name": "base",
                                  "description": "from the config", "writable": False,
                                  "bitmaps": [], "allocation-depth": False}]
    # A message split over several writes, spanning lines.
    c.send('{"execute":\n "query-')
    time.sleep(0.05)
    c.send('version", "id": 9}')
    assert c.msg()["id"] == 9
    c.close()


def test_bad_input_keeps_connection_and_daemon_up(daemon):
    c = RawQmp(daemon.control_sock)
    c.line()
    c.send('{"execute": "qmp_capabilities"}\n')
    c.msg()
    c.send('{"execute": }\n')
    e = c.msg()["error"]
    assert e["class"] == "GenericError" and e["desc"].startswith("JSON parse error")
    c.send('[1, 2]\n"text"\n')
    assert c.msg()["error"]["desc"] == "QMP input must be a JSON object"
    assert c.msg()["error"]["desc"] == "QMP input must be a JSON object"
    c.send('{"arguments": {}, "id": 3}\n')
    assert c.msg() == {"id": 3, "error": {"class": "GenericError",
                                          "desc": "QMP input lacks member 'execute'"}}
    c.send('{"execute": "blockdev-add", "arguments": {"driver": "file", "node-name": "x", '
           '"filename": 7}}\n')
    assert c.msg()["error"]["desc"] == \
        "Invalid parameter type for 'filename', expected: string"
    # An unterminated message is dropped by a control character (QEMU's reset rule).
    c.send('{"execute": "query-version", "id": "lost"\x01')
    assert c.msg()["error"]["desc"].startswith("JSON parse error")
    # More than the message bound: one error, then the stream is usable again.
    c.send('{"execute": "query-version", "id": "' + "x" * (2 * MiB) + '"}')
    assert c.msg()["error"]["class"] == "GenericError"
    c.send('{"execute": "query-version", "id": "after"}')
    assert c.msg()["id"] == "after"
    # Garbage bytes and an abrupt close.
    c.send(b"\xff\xfe\x00 not json at all")
    c.close()
    assert daemon.alive()
    # The NBD side is unharmed.
    h = nbd_open(daemon, "base")
    assert h.pread(4096, 0) == b"\x42" * 4096
    h.shutdown()


def test_runtime_nodes_and_export_over_nbd(daemon, tmp_path):
    img = make_image(tmp_path / "disk.raw", 4 * MiB,
                     pattern=[(0x61, 0, MiB), (0x62, 3 * MiB, 4096)])
    with Qmp(daemon.control_sock) as q:
        assert q.cmd("blockdev-add", {"driver": "file", "node-name": "disk0-file",
                                      "filename": str(img)}) == {"return": {}}
        assert q.cmd("blockdev-add", {"driver": "raw", "node-name": "disk0",
                                      "file": "disk0-file"}) == {"return": {}}
        nodes = {n["node-name"]: n for n in q.cmd("query-named-block-nodes")["return"]}
        assert nodes["disk0"]["drv"] == "raw"
        assert nodes["disk0"]["image"]["virtual-size"] == 4 * MiB
        assert nodes["disk0"]["file"] == str(img)
        assert nodes["disk0"]["children"] == [{"child": "file", "node-name": "disk0-file"}]
        assert nodes["disk0-file"]["drv"] == "file"
        assert "base" in nodes
        # While fleeced has the image open read-write, qemu-io cannot write it.
        r = subprocess.run(["qemu-io", "-f", "raw", "-c", "write 0 512", str(img)],
                           capture_output=True, text=True)
        assert r.returncode != 0 or "lock" in (r.stdout + r.stderr).lower()

        assert q.cmd("block-export-add", {"type": "nbd", "id": "exp0", "node-name": "disk0",
                                          "name": "disk0", "writable": True,
                                          "description": "runtime disk"}) == {"return": {}}
        exports = {e["id"]: e for e in q.cmd("query-block-exports")["return"]}
        assert exports["exp0"]["node-name"] == "disk0"
        assert exports["exp0"]["shutting-down"] is False

        # nbdinfo sees it with its description and size.
        info = json.loads(subprocess.run(
            ["nbdinfo", "--json", daemon.uri("disk0")], capture_output=True, text=True,
            check=True, timeout=30).stdout)
        assert info["exports"][0]["export-size"] == 4 * MiB
        assert info["exports"][0]["description"] == "runtime disk"
        assert info["exports"][0]["is_read_only"] is False
        listing = subprocess.run(["nbdinfo", "--list", "--json", daemon.uri()],
                                 capture_output=True, text=True, check=True, timeout=30).stdout
        assert {e["export-name"] for e in json.loads(listing)["exports"]} >= {"base", "disk0"}

        # libnbd reads the qemu-io pattern and writes through.
        h = nbd_open(daemon, "disk0")
        assert h.pread(4096, 0) == b"\x61" * 4096
        assert h.pread(4096, 3 * MiB) == b"\x62" * 4096
        assert h.pread(4096, 2 * MiB) == b"\x00" * 4096
        h.pwrite(b"\x63" * 4096, 2 * MiB)
        h.flush()

        # Busy node and exported node cannot be deleted.
        assert q.cmd("blockdev-del", {"node-name": "disk0-file"})["error"]["desc"] == \
            "Node disk0-file is in use by node 'disk0'"
        assert q.cmd("blockdev-del", {"node-name": "disk0"})["error"]["desc"] == \
            "Node disk0 is in use by export 'exp0'"

        # QEMU's default "safe" mode refuses an export that still has a client.
        r = q.cmd("block-export-del", {"id": "exp0"})
        assert "error" in r and "exp0" in r["error"]["desc"], r
        assert h.pread(512, 0) == b"\x61" * 512

        # Removing the export disconnects its client and emits BLOCK_EXPORT_DELETED.
        assert q.cmd("block-export-del", {"id": "exp0", "mode": "hard"}) == {"return": {}}
        with pytest.raises(nbd.Error):
            for _ in range(50):
                h.pread(512, 0)
                time.sleep(0.05)
        deadline = time.monotonic() + 5
        while not any(e["event"] == "BLOCK_EXPORT_DELETED" for e in q.events):
            assert time.monotonic() < deadline, "no BLOCK_EXPORT_DELETED event"
            q.sock.settimeout(5)
            q.events.append(q._read())
        ev = next(e for e in q.events if e["event"] == "BLOCK_EXPORT_DELETED")
        assert ev["data"] == {"id": "exp0"}
        assert set(ev["timestamp"]) == {"seconds", "microseconds"}
        del h
        r = subprocess.run(["nbdinfo", daemon.uri("disk0")], capture_output=True, text=True)
        assert r.returncode != 0

        # Once the connection is gone the node can be closed (the graph waits for no one).
        deadline = time.monotonic() + 5
        while True:
            r = q.cmd("blockdev-del", {"node-name": "disk0"})
            if "return" in r or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r == {"return": {}}
        assert q.cmd("blockdev-del", {"node-name": "disk0-file"}) == {"return": {}}
        assert {n["node-name"] for n in q.cmd("query-named-block-nodes")["return"]} == \
            {"base", next(iter(c["node-name"] for c in nodes["base"]["children"]))}

    # The image is closed and unlocked: qemu-io can write it, and the data fleeced wrote
    # is in the file.
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x64 0 512", str(img)],
                   check=True, capture_output=True)
    with open(img, "rb") as f:
        f.seek(2 * MiB)
        assert f.read(4096) == b"\x63" * 4096


def test_safe_export_del_succeeds_once_the_client_left(daemon, tmp_path):
    img = make_image(tmp_path / "s.raw", MiB)
    with Qmp(daemon.control_sock) as q:
        assert q.cmd("blockdev-add", {"driver": "file", "node-name": "s-file",
                                      "filename": str(img)}) == {"return": {}}
        assert q.cmd("block-export-add", {"type": "nbd", "id": "s", "node-name": "s-file"}) \
            == {"return": {}}
        h = nbd_open(daemon, "s-file")  # name defaults to the node name, as in QEMU
        assert "error" in q.cmd("block-export-del", {"id": "s"})
        h.shutdown()
        deadline = time.monotonic() + 5
        while True:
            r = q.cmd("block-export-del", {"id": "s"})
            if "return" in r or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r == {"return": {}}


def test_inline_raw_window_and_read_only_export(daemon, tmp_path):
    img = make_image(tmp_path / "part.raw", 4 * MiB, pattern=[(0x70, MiB, MiB)])
    with Qmp(daemon.control_sock) as q:
        assert q.cmd("blockdev-add", {
            "driver": "raw", "node-name": "part", "read-only": True,
            "offset": MiB, "size": MiB,
            "file": {"driver": "file", "filename": str(img)}}) == {"return": {}}
        assert q.cmd("block-export-add", {"type": "nbd", "id": "part", "node-name": "part",
                                          "writable": True})["error"]["desc"] == \
            "Cannot export read-only node as writable"
        assert q.cmd("block-export-add", {"type": "nbd", "id": "part",
                                          "node-name": "part"}) == {"return": {}}
        h = nbd_open(daemon, "part")
        assert h.get_size() == MiB
        assert h.is_read_only()
        assert h.pread(MiB, 0) == b"\x70" * MiB
        h.shutdown()


def test_events_reach_every_negotiated_client(daemon, tmp_path):
    make_image(tmp_path / "e.raw", MiB)
    with Qmp(daemon.control_sock) as a, Qmp(daemon.control_sock) as b:
        a.cmd("blockdev-add", {"driver": "raw", "node-name": "e",
                               "file": {"driver": "file", "filename": str(tmp_path / "e.raw")}})
        a.cmd("block-export-add", {"type": "nbd", "id": "e", "node-name": "e"})
        assert a.cmd("block-export-del", {"id": "e"}) == {"return": {}}
        b.sock.settimeout(5)
        ev = b._read()
        assert ev["event"] == "BLOCK_EXPORT_DELETED" and ev["data"] == {"id": "e"}


def test_fleecectl_human_and_json(daemon, tmp_path):
    img = make_image(tmp_path / "cli.raw", 2 * MiB, pattern=[(0x55, 0, 4096)])
    img2 = make_image(tmp_path / "cli2.raw", 4 * MiB)

    r = ctl(daemon, "version")
    assert r.returncode == 0, r.stderr
    assert "daemon: fleece " in r.stdout and "client: fleecectl " in r.stdout
    assert json.loads(ctl(daemon, "version", json_output=True).stdout)["package"] \
        .startswith("fleece ")
    assert "blockdev-add" in ctl(daemon, "commands").stdout.split()

    # A relative file name is resolved by fleecectl, not by the daemon.
    r = ctl(daemon, "node", "add", "file", "cli-file", "cli.raw", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = ctl(daemon, "node", "add", "raw", "cli", "--file", "cli-file", json_output=True)
    assert r.returncode == 0 and json.loads(r.stdout) == {}
    r = ctl(daemon, "node", "add", "raw", "cli2", "--file", str(img2), "--read-only",
            "--offset", "1M", "--size", "1M")
    assert r.returncode == 0, r.stderr

    r = ctl(daemon, "nodes")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DRIVER", "SIZE", "MODE", "CHILDREN", "FILE"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows["cli"][1:6] == ["raw", "2", "MiB", "rw", "file=cli-file"]
    assert rows["cli"][6] == str(img)
    assert rows["cli2"][1:5] == ["raw", "1", "MiB", "ro"]
    nodes = json.loads(ctl(daemon, "nodes", json_output=True).stdout)
    assert {n["node-name"] for n in nodes} >= {"cli", "cli-file", "cli2", "base"}

    r = ctl(daemon, "export", "add", "cli", "--node", "cli", "--writable",
            "--description", "made by fleecectl")
    assert r.returncode == 0, r.stderr
    r = ctl(daemon, "export", "add", "cli window", "--node", "cli2", "--id", "cliwin")
    assert r.returncode == 0, r.stderr
    r = ctl(daemon, "exports")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "NODE", "MODE", "DESCRIPTION"]
    assert any(l.split()[:5] == ["cli", "cli", "cli", "rw", "made"] for l in lines)
    assert any(l.startswith("cli window  cliwin") for l in lines), r.stdout
    exports = json.loads(ctl(daemon, "exports", json_output=True).stdout)
    assert {e["id"] for e in exports} == {"base", "cli", "cliwin"}

    h = nbd_open(daemon, "cli")
    assert h.pread(4096, 0) == b"\x55" * 4096
    h.shutdown()

    # Raw passthrough.
    r = ctl(daemon, "qmp", "query-block-exports", json_output=True)
    assert json.loads(r.stdout) == exports
    r = ctl(daemon, "qmp", "query-named-block-nodes", '{"flat": true}')
    assert r.returncode == 0 and json.loads(r.stdout)

    # Deletion by NBD name or id.
    assert ctl(daemon, "export", "del", "cli window").returncode == 0
    assert ctl(daemon, "export", "del", "cli").returncode == 0
    assert json.loads(ctl(daemon, "exports", json_output=True).stdout)[0]["id"] == "base"
    for node in ("cli", "cli-file", "cli2"):
        r = ctl(daemon, "node", "del", node)
        assert r.returncode == 0, r.stderr


def test_fleecectl_errors_and_exit_codes(daemon, tmp_path):
    r = ctl(daemon, "node", "del", "nope")
    assert r.returncode == 1
    assert r.stderr.strip() == "fleecectl: Failed to find node with node-name='nope'"
    r = ctl(daemon, "qmp", "no-such-command")
    assert r.returncode == 1 and "has not been found" in r.stderr
    r = ctl(daemon, "export", "add", "x", "--node", "missing")
    assert r.returncode == 1 and "missing" in r.stderr
    # Usage errors.
    r = ctl(daemon, "node", "add", "file", "only-a-name")
    assert r.returncode == 64 and "missing FILENAME" in r.stderr
    r = ctl(daemon, "frobnicate")
    assert r.returncode == 64 and "unknown command" in r.stderr
    r = ctl(daemon, "qmp", "query-version", "not json")
    assert r.returncode == 64
    r = ctl(daemon, "nodes", "--bogus")
    assert r.returncode == 64 and "unknown option --bogus" in r.stderr
    # No daemon there.
    r = ctl(daemon, "nodes", socket_path=tmp_path / "absent.sock")
    assert r.returncode == 2 and "cannot connect" in r.stderr
    # The socket from the environment.
    r = subprocess.run([str(FLEECECTL), "--json", "version"], capture_output=True, text=True,
                       env=dict(os.environ, FLEECE_CONTROL_SOCKET=str(daemon.control_sock)))
    assert r.returncode == 0 and json.loads(r.stdout)["package"].startswith("fleece ")
    # Help needs no daemon.
    r = subprocess.run([str(FLEECECTL), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "export add NAME --node NODE" in r.stdout
    assert daemon.alive()


def test_stale_control_socket_is_replaced_live_one_refused(tmp_path):
    make_image(tmp_path / "base.raw", MiB)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "control.sock"))
    stale.close()  # the file stays, nobody listens: as a killed daemon leaves it
    with Daemon(tmp_path, config=CONFIG) as d:
        wait_for_socket(d.control_sock, d.proc)
        with Qmp(d.control_sock) as q:
            assert "return" in q.cmd("query-version")
        # A second daemon with the same control socket must refuse to start.
        other = tmp_path / "other"
        other.mkdir()
        make_image(other / "base.raw", MiB)
        second = Daemon(other, config=CONFIG.replace("{control_sock}", str(d.control_sock)))
        second.log = open(second.log_path, "w")
        second.proc = subprocess.Popen(second.args, stdout=second.log, stderr=subprocess.STDOUT)
        assert second.proc.wait(20) != 0
        second.log.close()
        assert "control" in second.log_path.read_text()
        with Qmp(d.control_sock) as q:
            assert "return" in q.cmd("query-version")
    assert not (tmp_path / "control.sock").exists()
