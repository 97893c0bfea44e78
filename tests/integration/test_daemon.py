"""End-to-end tests of the daemon itself: start-up, listeners (Unix, TCP v4/v6,
socket activation), stale sockets, SIGTERM drain, SIGHUP reload, logging, --check-config."""

import os
import signal
import socket
import subprocess
import time

import nbd
import pytest

from fleece_harness import FLEECED, Daemon, make_image, wait_for_socket

MiB = 1 << 20


def config_for(tmp_path, exports, extra=""):
    """A config with one raw node per (name, image, writable) in exports."""
    nodes = []
    exps = []
    for name, image, writable in exports:
        nodes.append(f'''  - node-name: {name}
    driver: raw
    file:
      driver: file
      filename: "{image}"''')
        exps.append(f"""  - name: {name}
    node: {name}
    description: "export {name}"
    writable: {"true" if writable else "false"}""")
    return f"""listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
log:
  level: debug
nodes:
{chr(10).join(nodes)}
exports:
{chr(10).join(exps)}
{extra}"""


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def test_open_file_limit_is_raised_to_the_hard_limit(tmp_path):
    # Zero-copy I/O keeps pipes (two fds each) per connection: a shell's soft limit of
    # 1024 must not cap the daemon below max-connections.
    img = make_image(tmp_path / "a.raw", MiB)
    d = Daemon(tmp_path, serve=[str(img)])
    d.args = ["prlimit", "--nofile=256:4096", "--"] + d.args
    with d:
        limits = open(f"/proc/{d.proc.pid}/limits").read()
        (line,) = [l for l in limits.splitlines() if l.startswith("Max open files")]
        assert line.split()[3:5] == ["4096", "4096"], line
        assert d.stop() == 0


def test_serve_reads_and_writes_and_sigterm_exits_zero(tmp_path):
    img = make_image(tmp_path / "a.raw", 8 * MiB, pattern=[(0x11, 0, MiB)])
    with Daemon(tmp_path, serve=[str(img)]) as d:
        h = connect(d.uri())
        assert h.pread(512, 0) == b"\x11" * 512
        h.pwrite(b"\x22" * 4096, 2 * MiB)
        h.flush()
        assert h.pread(4096, 2 * MiB) == b"\x22" * 4096
        h.shutdown()
        assert d.stop() == 0
        assert not d.nbd_sock.exists(), "unix socket file must be removed at exit"
    with open(img, "rb") as f:
        f.seek(2 * MiB)
        assert f.read(4096) == b"\x22" * 4096


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    img = make_image(tmp_path / "a.raw", 64 * MiB)
    with Daemon(tmp_path, serve=[str(img)]) as d:
        h = connect(d.uri())
        buf = nbd.Buffer.from_bytearray(bytearray(b"\x5a" * (4 * MiB)))
        cookies = [h.aio_pwrite(buf, i * 4 * MiB) for i in range(8)]
        # Push every request onto the socket, give the server a moment to read them
        # (they are then in flight there), and only then ask it to stop.
        while h.aio_get_direction() & nbd.AIO_DIRECTION_WRITE:
            h.poll(1)
        time.sleep(0.3)
        d.signal(signal.SIGTERM)
        while h.aio_in_flight() > 0:
            h.poll(1)
        # Each write was answered with success (a failed one raises here).
        assert all(h.aio_command_completed(c) for c in cookies)
        assert d.proc.wait(20) == 0
    data = open(img, "rb").read()
    assert data[: 32 * MiB] == b"\x5a" * (32 * MiB)


def test_connection_log_line(tmp_path):
    img = make_image(tmp_path / "a.raw", MiB)
    with Daemon(tmp_path, serve=[str(img), "--name", "disk"]) as d:
        h = connect(d.uri("disk"))
        h.pread(4096, 0)
        h.pwrite(b"x" * 1024, 0)
        h.shutdown()
        deadline = time.time() + 5
        while time.time() < deadline and "export 'disk'" not in d.log_text():
            time.sleep(0.05)
        log = d.log_text()
    lines = [l for l in log.splitlines() if "export 'disk'" in l]
    assert len(lines) == 1, log
    line = lines[0]
    # Peer, export, duration, bytes read and written.
    assert "unix:pid=" in line and "4096 bytes read" in line and "1024 bytes written" in line, line


def test_stale_unix_socket_is_replaced_live_one_is_not(tmp_path):
    img = make_image(tmp_path / "a.raw", MiB)
    sock_path = tmp_path / "nbd.sock"
    # A stale socket file: bound, then its owner went away.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()
    assert sock_path.exists()
    with Daemon(tmp_path, serve=[str(img)]) as d:
        connect(d.uri()).shutdown()
        # A second daemon on the same live socket must refuse to start.
        other = tmp_path / "second"
        other.mkdir()
        img2 = make_image(tmp_path / "b.raw", MiB)
        r = subprocess.run([str(FLEECED), "serve", str(img2), "--read-only",
                            "--listen", f"unix:{sock_path}"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0
        assert "in use" in r.stderr
        # The first daemon still serves.
        connect(d.uri()).shutdown()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("family,host,uri_host", [
    (socket.AF_INET, "127.0.0.1", "127.0.0.1"),
    (socket.AF_INET6, "::1", "[::1]"),
])
def test_tcp_listeners(tmp_path, family, host, uri_host):
    try:
        port = free_port(family, host)
    except OSError:
        pytest.skip(f"{host} not available")
    img = make_image(tmp_path / "a.raw", MiB, pattern=[(0x33, 0, 4096)])
    listen = f"tcp:{uri_host}:{port}"
    with Daemon(tmp_path, serve=[str(img), "--listen", listen]) as d:
        h = connect(f"nbd://{uri_host}:{port}/")
        assert h.pread(4096, 0) == b"\x33" * 4096
        h.shutdown()


def test_systemd_socket_activation_with_libnbd(tmp_path):
    img = make_image(tmp_path / "a.raw", 2 * MiB, pattern=[(0x44, 0, 4096)])
    h = nbd.NBD()
    h.connect_systemd_socket_activation([str(FLEECED), "serve", str(img)])
    try:
        assert h.get_size() == 2 * MiB
        assert h.pread(4096, 0) == b"\x44" * 4096
        h.pwrite(b"\x45" * 512, 4096)
        h.flush()
    finally:
        h.shutdown()
    assert open(img, "rb").read(4608)[4096:] == b"\x45" * 512


def test_systemd_socket_activate_tool(tmp_path):
    tool = "/usr/bin/systemd-socket-activate"
    if not os.path.exists(tool):
        pytest.skip("systemd-socket-activate missing")
    img = make_image(tmp_path / "a.raw", MiB, pattern=[(0x46, 0, 4096)])
    sock = tmp_path / "act.sock"
    p = subprocess.Popen([tool, "-l", str(sock), "--fdname=nbd", str(FLEECED), "serve", str(img)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while not sock.exists() and time.time() < deadline:
            time.sleep(0.05)
        h = connect(f"nbd+unix:///?socket={sock}")
        assert h.pread(4096, 0) == b"\x46" * 4096
        h.shutdown()
    finally:
        p.terminate()
        p.wait(10)


def test_socket_activation_named_nbd_and_control_sockets(tmp_path):
    # As fleeced.socket + fleeced-control.socket pass them: "nbd" serves NBD, "control"
    # is the control socket; the config names the same paths, so fleeced binds neither.
    tool = "/usr/bin/systemd-socket-activate"
    if not os.path.exists(tool):
        pytest.skip("systemd-socket-activate missing (package systemd)")
    img = make_image(tmp_path / "a.raw", MiB, pattern=[(0x47, 0, 4096)])
    nbd_sock, control_sock = tmp_path / "nbd.sock", tmp_path / "control.sock"
    cfg = tmp_path / "fleeced.yaml"
    cfg.write_text(config_for(tmp_path, [("disk0", img, True)]).format(
        nbd_sock=nbd_sock, control_sock=control_sock))
    log = open(tmp_path / "fleeced.log", "w")
    p = subprocess.Popen([tool, "-l", str(nbd_sock), "-l", str(control_sock),
                          "--fdname=nbd:control", str(FLEECED), "--config", str(cfg)],
                         stdout=log, stderr=log)
    try:
        deadline = time.time() + 10
        while not (nbd_sock.exists() and control_sock.exists()) and time.time() < deadline:
            time.sleep(0.05)
        # The first connection starts fleeced (systemd-socket-activate execs it).
        r = subprocess.run(["nbdinfo", "--size", f"nbd+unix:///disk0?socket={nbd_sock}"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and int(r.stdout) == MiB, r.stderr
        r = subprocess.run([str(FLEECED.parent / "fleecectl"), "--socket", str(control_sock),
                            "--json", "exports"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "disk0" in r.stdout, r.stderr
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()
    text = (tmp_path / "fleeced.log").read_text()
    assert "socket activation" in text and "warn" not in text.lower(), text
    # The socket files are systemd's: fleeced leaves them in place.
    assert nbd_sock.exists() and control_sock.exists()


def test_journald_priority_prefixes(tmp_path):
    img = make_image(tmp_path / "a.raw", MiB)
    log = tmp_path / "journal.log"
    with open(log, "w") as f:
        st = os.fstat(f.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        p = subprocess.Popen([str(FLEECED), "serve", str(img), "--listen",
                              f"unix:{tmp_path / 'nbd.sock'}"], stdout=f, stderr=f, env=env)
        try:
            wait_for_socket(tmp_path / "nbd.sock", p)
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(20) == 0
    lines = [l for l in log.read_text().splitlines() if l]
    assert lines and all(l.startswith("<") and l[2] == ">" for l in lines), lines
    assert any(l.startswith("<6>") for l in lines)


def test_check_config_reports_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen:\n  - unix: /tmp/x.sock\nnodes:\n  - node-name: a\n    driver: nosuch\n")
    r = subprocess.run([str(FLEECED), "--check-config", "--config", str(bad)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert f"{bad}:5" in r.stdout + r.stderr
    img = make_image(tmp_path / "a.raw", MiB)
    good = tmp_path / "good.yaml"
    good.write_text(config_for(tmp_path, [("disk0", img, True)]).format(
        nbd_sock=tmp_path / "n.sock", control_sock=tmp_path / "c.sock"))
    r = subprocess.run([str(FLEECED), "--check-config", "--config", str(good)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


def test_bad_config_fails_start_with_clear_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen:\n  - unix: /tmp/x.sock\nexports:\n  - name: a\n    node: missing\n")
    r = subprocess.run([str(FLEECED), "--config", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1
    assert "missing" in r.stderr


def test_missing_image_fails_start(tmp_path):
    r = subprocess.run([str(FLEECED), "serve", str(tmp_path / "nope.raw"), "--listen",
                        f"unix:{tmp_path / 's.sock'}"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert "nope.raw" in r.stderr


def test_sighup_adds_and_removes_exports_without_dropping_others(tmp_path):
    a = make_image(tmp_path / "a.raw", MiB, pattern=[(0xaa, 0, 4096)])
    b = make_image(tmp_path / "b.raw", MiB, pattern=[(0xbb, 0, 4096)])
    c = make_image(tmp_path / "c.raw", MiB, pattern=[(0xcc, 0, 4096)])
    cfg = config_for(tmp_path, [("a", a, True), ("b", b, False)])
    with Daemon(tmp_path, config=cfg) as d:
        ha = connect(d.uri("a"))
        hb = connect(d.uri("b"))
        assert ha.pread(4096, 0) == b"\xaa" * 4096
        # New config: a unchanged, b removed, c added.
        new = config_for(tmp_path, [("a", a, True), ("c", c, False)]).format(
            nbd_sock=d.nbd_sock, control_sock=d.control_sock, dir=d.dir)
        d.config_path.write_text(new)
        d.signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and "reload done" not in d.log_text():
            time.sleep(0.05)
        assert "reload done" in d.log_text()
        # The unaffected connection keeps working, on the same handle.
        assert ha.pread(4096, 0) == b"\xaa" * 4096
        ha.pwrite(b"\xab" * 512, 0)
        # The removed export's connection is closed; the export is gone.
        with pytest.raises(nbd.Error):
            hb.pread(4096, 0)
        with pytest.raises(nbd.Error):
            connect(d.uri("b"))
        hc = connect(d.uri("c"))
        assert hc.pread(4096, 0) == b"\xcc" * 4096
        hc.shutdown()
        ha.shutdown()
        assert d.alive()


def test_sighup_with_broken_config_keeps_running(tmp_path):
    a = make_image(tmp_path / "a.raw", MiB, pattern=[(0xaa, 0, 4096)])
    with Daemon(tmp_path, config=config_for(tmp_path, [("a", a, True)])) as d:
        d.config_path.write_text("nodes: [ this is not valid\n")
        d.signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and "reload failed" not in d.log_text():
            time.sleep(0.05)
        assert "reload failed" in d.log_text()
        h = connect(d.uri("a"))
        assert h.pread(4096, 0) == b"\xaa" * 4096
        h.shutdown()


def connect_retry(uri, timeout=5.0):
    """Connects, retrying while the server still counts a just-closed connection."""
    deadline = time.time() + timeout
    while True:
        try:
            return connect(uri)
        except nbd.Error:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_connection_limit(tmp_path):
    img = make_image(tmp_path / "a.raw", MiB)
    extra = "server:\n  max-connections: 2\n"
    with Daemon(tmp_path, config=config_for(tmp_path, [("a", img, False)], extra)) as d:
        # (The harness's readiness probe may still hold a slot for a moment.)
        h1 = connect_retry(d.uri("a"))
        h2 = connect_retry(d.uri("a"))
        with pytest.raises(nbd.Error):
            connect(d.uri("a"))
        h1.shutdown()
        # The slot frees once the server has noticed the disconnect.
        h3 = connect_retry(d.uri("a"))
        h3.shutdown()
        h2.shutdown()


def test_handshake_timeout_drops_idle_client(tmp_path):
    img = make_image(tmp_path / "a.raw", MiB)
    extra = "server:\n  handshake-timeout: 1\n"
    with Daemon(tmp_path, config=config_for(tmp_path, [("a", img, False)], extra)) as d:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(d.nbd_sock))
        greeting = s.recv(18)
        assert len(greeting) == 18
        start = time.time()
        assert s.recv(100) == b""  # closed by the server
        assert time.time() - start < 5
        s.close()
        connect(d.uri("a")).shutdown()


def test_image_locking_against_qemu_tools(tmp_path):
    img = make_image(tmp_path / "a.raw", MiB)
    # A running qemu-io holds the image read-write: fleeced must refuse it.
    holder = subprocess.Popen(["qemu-io", "-f", "raw", str(img)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        assert holder.poll() is None
        r = subprocess.run([str(FLEECED), "serve", str(img), "--listen",
                            f"unix:{tmp_path / 'x.sock'}"], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 1
        assert "lock" in r.stderr and str(img) in r.stderr
    finally:
        holder.stdin.close()
        holder.wait(10)
    # fleeced holds it read-write: qemu-io cannot write it; once fleeced exits, it can.
    with Daemon(tmp_path, serve=[str(img)]) as d:
        r = subprocess.run(["qemu-io", "-f", "raw", "-c", "write 0 512", str(img)],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0 or "lock" in (r.stdout + r.stderr).lower()
        assert "lock" in (r.stdout + r.stderr).lower()
        assert d.stop() == 0
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write 0 512", str(img)], check=True,
                   capture_output=True, timeout=20)


def test_version_and_help():
    r = subprocess.run([str(FLEECED), "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("fleeced ")
    r = subprocess.run([str(FLEECED), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "serve IMAGE" in r.stdout
    r = subprocess.run([str(FLEECED), "--nonsense"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--nonsense" in r.stderr
