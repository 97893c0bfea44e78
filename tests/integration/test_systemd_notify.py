"""The systemd notify protocol (Type=notify) as fleeced speaks it: the test plays
systemd's side — a Unix datagram socket named by NOTIFY_SOCKET — and checks each message
at its moment: READY=1 only once the images are open and the sockets accept (a client
connecting right after READY succeeds; a daemon whose image cannot open never sends it),
the STATUS= line (exports, connections, fleeces) at READY and when fleece-start adds a
fleece, RELOADING=1 with MONOTONIC_USEC then READY=1 around SIGHUP, STOPPING=1 at SIGTERM
before exit 0."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from fleece_harness import Daemon, make_image

MiB = 1 << 20

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: "{dir}/disk0.raw" }}
EXTRA_NODES
exports:
  - {{ name: disk0, node: disk0, writable: true }}
EXTRA_EXPORTS
fleecing:
  overlay-dir: "{dir}/overlays"
"""


def config(extra_nodes="", extra_exports=""):
    return CONFIG.replace("EXTRA_NODES", extra_nodes).replace("EXTRA_EXPORTS", extra_exports)


class NotifySocket:
    """systemd's end of sd_notify: each datagram is a list of KEY=VALUE lines."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen = []  # every message received, in order: {key: value}

    def receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.seen.append(msg)
        return msg

    def wait_for(self, predicate, timeout=15.0, what="message", proc=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.receive(min(0.2, max(0.01, deadline - time.monotonic())))
            if msg is not None and predicate(msg):
                return msg
            if msg is None and proc is not None and proc.poll() is not None:
                raise AssertionError(f"fleeced exited with {proc.returncode} before {what}; "
                                     f"messages: {self.seen}")
        raise AssertionError(f"no {what} within {timeout}s; messages: {self.seen}")

    def close(self):
        self.sock.close()


def count(status, noun):
    m = re.search(rf"(\d+) {noun}", status)
    assert m, f"no '{noun}' count in STATUS={status!r}"
    return int(m.group(1))


def status_counts(noun, n):
    """A predicate: the message is a STATUS= line counting n of noun."""
    def check(msg):
        m = re.search(rf"(\d+) {noun}", msg.get("STATUS", ""))
        return m is not None and int(m.group(1)) == n
    return check


def start(tmp_path, cfg):
    """fleeced on cfg with NOTIFY_SOCKET set; returns (daemon, notify socket). Does not
    wait for the sockets: READY=1 is what the test waits for."""
    (tmp_path / "overlays").mkdir(exist_ok=True)
    notify = NotifySocket(tmp_path / "notify")
    d = Daemon(tmp_path, config=cfg, env={"NOTIFY_SOCKET": notify.path})
    d.log = open(d.log_path, "w")
    d.proc = subprocess.Popen(d.args, stdout=d.log, stderr=subprocess.STDOUT, env=d.env)
    return d, notify


def nbdinfo_size(d, export):
    r = subprocess.run(["nbdinfo", "--size", d.uri(export)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, f"nbdinfo right after READY=1 failed: {r.stderr}"
    return int(r.stdout)


def test_ready_status_reload_fleece_and_stop(tmp_path):
    make_image(tmp_path / "disk0.raw", 4 * MiB, pattern=[(0x5a, 0, 4096)])
    d, notify = start(tmp_path, config())
    try:
        ready = notify.wait_for(lambda m: "READY" in m, what="READY=1", proc=d.proc)
        assert ready["READY"] == "1"
        # Ready means ready: the image is open and both sockets accept, right now.
        assert nbdinfo_size(d, "disk0") == 4 * MiB
        assert d.ctl("exports")  # the control socket answers
        assert not any("STOPPING" in m or "RELOADING" in m for m in notify.seen)
        assert count(ready["STATUS"], "export") == 1
        assert count(ready["STATUS"], "fleece") == 0
        assert d.proc.poll() is None

        # SIGHUP with a second export in the file: RELOADING=1 (with the monotonic time
        # Type=notify-reload wants), then READY=1 with the new count.
        make_image(tmp_path / "disk1.raw", MiB)
        d.config_path.write_text(config(
            extra_nodes='  - {{ node-name: disk1, driver: raw, file: {{ driver: file, '
                        'filename: "{dir}/disk1.raw" }} }}',
            extra_exports="  - {{ name: disk1, node: disk1 }}").format(
                nbd_sock=d.nbd_sock, control_sock=d.control_sock, dir=tmp_path))
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        d.signal(signal.SIGHUP)
        reloading = notify.wait_for(lambda m: "RELOADING" in m or "READY" in m,
                                    what="RELOADING=1")
        assert reloading.get("RELOADING") == "1", reloading
        usec = int(reloading["MONOTONIC_USEC"])
        assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        again = notify.wait_for(lambda m: "READY" in m, what="READY=1 after the reload")
        assert count(again["STATUS"], "export") == 2
        assert nbdinfo_size(d, "disk1") == MiB

        # A fleece started over the control socket shows in STATUS (and its export too).
        d.ctl("fleece", "start", "disk0")
        status = notify.wait_for(status_counts("fleece", 1),
                                 timeout=10, what="STATUS with 1 fleece")["STATUS"]
        assert count(status, "export") == 3, status
        d.ctl("fleece", "stop", "disk0-fleece")
        notify.wait_for(status_counts("fleece", 0),
                        timeout=10, what="STATUS with 0 fleeces after fleece stop")

        # SIGTERM: STOPPING=1 comes first, then a clean exit.
        d.signal(signal.SIGTERM)
        stopping = notify.wait_for(lambda m: "STOPPING" in m, what="STOPPING=1")
        assert stopping["STOPPING"] == "1"
        assert d.proc.wait(20) == 0
    finally:
        d.stop()
        d.log.close()
        notify.close()
    assert sum(1 for m in notify.seen if "READY" in m) == 2, notify.seen


def test_sighup_with_broken_config_is_still_ready(tmp_path):
    make_image(tmp_path / "disk0.raw", MiB)
    d, notify = start(tmp_path, config())
    try:
        notify.wait_for(lambda m: "READY" in m, what="READY=1", proc=d.proc)
        d.config_path.write_text("listen: [ nonsense\n")
        d.signal(signal.SIGHUP)
        notify.wait_for(lambda m: "RELOADING" in m, what="RELOADING=1")
        # The old configuration keeps running: systemd must see the service ready again.
        again = notify.wait_for(lambda m: "READY" in m, what="READY=1 after a failed reload")
        assert count(again["STATUS"], "export") == 1
        assert nbdinfo_size(d, "disk0") == MiB
    finally:
        d.stop()
        d.log.close()
        notify.close()


def test_image_that_fails_to_open_is_never_ready(tmp_path):
    # disk0.raw does not exist.
    d, notify = start(tmp_path, config())
    try:
        assert d.proc.wait(20) != 0
        while notify.receive(0.2) is not None:
            pass
    finally:
        d.stop()
        d.log.close()
        notify.close()
    assert not any("READY" in m for m in notify.seen), notify.seen
    assert "disk0.raw" in d.log_path.read_text()


def test_connections_show_in_status(tmp_path):
    nbd = pytest.importorskip("nbd")
    make_image(tmp_path / "disk0.raw", MiB)
    d, notify = start(tmp_path, config())
    try:
        notify.wait_for(lambda m: "READY" in m, what="READY=1", proc=d.proc)
        h = nbd.NBD()
        h.connect_uri(d.uri("disk0"))
        try:
            notify.wait_for(status_counts("connection", 1),
                            timeout=10, what="STATUS with 1 connection")
        finally:
            h.shutdown()
        notify.wait_for(status_counts("connection", 0),
                        timeout=10, what="STATUS with 0 connections")
    finally:
        d.stop()
        d.log.close()
        notify.close()


def test_without_notify_socket_nothing_breaks(tmp_path):
    # NOTIFY_SOCKET naming a socket nobody listens on: sd_notify fails, fleeced serves on.
    make_image(tmp_path / "disk0.raw", MiB)
    (tmp_path / "overlays").mkdir()
    gone = tmp_path / "gone.sock"
    with Daemon(tmp_path, config=config(), env={"NOTIFY_SOCKET": str(gone)}) as d:
        assert nbdinfo_size(d, "disk0") == MiB
        d.signal(signal.SIGHUP)
        time.sleep(0.5)
        assert d.alive()
        assert d.stop() == 0
    assert not os.path.exists(gone)
