"""Helpers for end-to-end tests: start the real fleeced on private sockets, bounded in
time, and stop it. Every server listens only on a Unix socket (or 127.0.0.1) inside the
test's temporary directory."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

BIN_DIR = Path(os.environ.get("FLEECE_BIN_DIR",
                              Path(__file__).resolve().parents[2] / "build" / "bin"))
FLEECED = BIN_DIR / "fleeced"
FLEECECTL = BIN_DIR / "fleecectl"
START_TIMEOUT = 15.0
# Daemon.signal() shadows the module inside the class body.
_SIGTERM = signal.SIGTERM


def make_image(path, size, fmt="raw", pattern=None):
    """Creates an image with qemu-img; pattern is a list of (byte, offset, length) writes."""
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), str(size)], check=True)
    for byte, off, length in pattern or []:
        subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -P {byte} {off} {length}", str(path)],
                       check=True, stdout=subprocess.DEVNULL)
    return Path(path)


def wait_for_socket(path, proc, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fleeced exited early with {proc.returncode}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not accept connections within {timeout}s")


class Daemon:
    """A fleeced process. Use as a context manager; stop() returns the exit code.

    Either config (YAML text; the placeholders {nbd_sock} and {control_sock} and {dir}
    are substituted) or serve (argument list after `fleeced serve`) must be given."""

    def __init__(self, tmpdir, config=None, serve=None, extra_args=(), env=None):
        self.dir = Path(tmpdir)
        self.nbd_sock = self.dir / "nbd.sock"
        self.control_sock = self.dir / "control.sock"
        self.log_path = self.dir / "fleeced.log"
        args = [str(FLEECED)]
        self.config_template = config
        if config is not None:
            text = config.format(nbd_sock=self.nbd_sock, control_sock=self.control_sock,
                                 dir=self.dir)
            self.config_path = self.dir / "fleeced.yaml"
            self.config_path.write_text(text)
            args += ["--config", str(self.config_path)]
        else:
            args += ["serve"] + list(serve) + ["--listen", f"unix:{self.nbd_sock}"]
        self.args = args + list(extra_args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def start(self, wait_control=None):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        wait_for_socket(self.nbd_sock, self.proc)
        # The control socket may come up after the NBD one: wait for it too when the
        # config has one (the template, before the paths were filled in).
        if wait_control or (wait_control is None
                            and "{control_sock}" in (self.config_template or "")):
            wait_for_socket(self.control_sock, self.proc)
        return self

    def config_text(self):
        return self.config_path.read_text() if hasattr(self, "config_path") else None

    def uri(self, export=""):
        return f"nbd+unix:///{export}?socket={self.nbd_sock}"

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0, sig=_SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.log.close()

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()

    def alive(self):
        return self.proc.poll() is None

    def ctl(self, *args, json_output=True, check=True):
        """Runs fleecectl against this daemon's control socket."""
        cmd = [str(FLEECECTL), "--socket", str(self.control_sock)]
        if json_output:
            cmd.append("--json")
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"fleecectl {args} failed: {r.stderr}")
        return json.loads(r.stdout) if json_output and r.stdout.strip() else r

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        elif self.proc is not None and not self.log.closed:
            self.log.close()


class Qmp:
    """A minimal QMP client over the control socket (one JSON object per line)."""

    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rwb", buffering=0)
        self.greeting = self._read()
        self.events = []

    def _read(self):
        line = self.file.readline()
        if not line:
            raise EOFError("control socket closed")
        return json.loads(line)

    def send_raw(self, obj):
        self.file.write((json.dumps(obj) + "\n").encode())

    def cmd(self, execute, arguments=None, id=None):
        msg = {"execute": execute}
        if arguments is not None:
            msg["arguments"] = arguments
        if id is not None:
            msg["id"] = id
        self.send_raw(msg)
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def close(self):
        self.sock.close()

    def __enter__(self):
        self.cmd("qmp_capabilities")
        return self

    def __exit__(self, *exc):
        self.close()


# ---- dirty bitmaps (issue 4): QEMU's view and fleeced's view of a bitmap ------------------

def dirty_bitmap_context(name):
    return f"qemu:dirty-bitmap:{name}"


def nbdinfo_extents(uri, context=None, timeout=60):
    """`nbdinfo --json --map[=context] uri` as a list of (offset, length, type), with
    neighbours of the same type merged (servers may split runs differently)."""
    args = ["nbdinfo", "--json", f"--map={context}" if context else "--map", uri]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    merged = []
    for e in json.loads(r.stdout):
        if merged and merged[-1][2] == e["type"] and merged[-1][0] + merged[-1][1] == e["offset"]:
            merged[-1][1] += e["length"]
        else:
            merged.append([e["offset"], e["length"], e["type"]])
    return [tuple(e) for e in merged]


def dirty_granules_of(extents, granularity, disk_size=None):
    """The granule indices a dirty-bitmap map marks dirty (type bit 1). Asserts every
    run boundary lies on a granule boundary (or at the end of the disk)."""
    out = set()
    for off, length, typ in extents:
        end = off + length
        assert off % granularity == 0, f"run at {off} not aligned to {granularity}"
        assert end % granularity == 0 or end == disk_size or disk_size is None, \
            f"run ends at {end}, not aligned to {granularity} (disk {disk_size})"
        if typ & 1:
            out.update(range(off // granularity, -(-end // granularity)))
    return out


def granules_touched(ranges, granularity, disk_size):
    """The granules that (offset, length) byte ranges touch, clipped to the disk."""
    out = set()
    for off, length in ranges:
        end = min(off + length, disk_size)
        if length > 0 and off < disk_size:
            out.update(range(off // granularity, -(-end // granularity)))
    return out


class QemuNbd:
    """`qemu-nbd -r` on a Unix socket exporting image `path` as `d` with the persistent
    bitmaps `bitmaps` (-B NAME each). A context manager; stops the server on exit."""

    def __init__(self, tmpdir, path, bitmaps=(), fmt="qcow2", extra=()):
        self.sock = Path(tmpdir) / "qemu-nbd.sock"
        self.log_path = Path(tmpdir) / "qemu-nbd.log"
        self.args = ["qemu-nbd", "-r", "-t", "-f", fmt, "-k", str(self.sock), "-x", "d"]
        for b in bitmaps:
            self.args += ["-B", b]
        self.args += list(extra) + [str(path)]

    def uri(self):
        return f"nbd+unix:///d?socket={self.sock}"

    def __enter__(self):
        if self.sock.exists():
            self.sock.unlink()
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_socket(self.sock, self.proc)
        except Exception:
            self.__exit__()
            raise RuntimeError(f"qemu-nbd did not start: {self.log_path.read_text()}")
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def qemu_nbd_bitmap_map(tmpdir, path, name, fmt="qcow2"):
    """The map of persistent bitmap `name` of image `path` as qemu-nbd -B serves it."""
    with QemuNbd(tmpdir, path, [name], fmt=fmt) as q:
        return nbdinfo_extents(q.uri(), dirty_bitmap_context(name))


def qemu_img_bitmaps(path, force_share=False):
    """{name: {"flags": [...], "granularity": g}} from `qemu-img info --output=json`."""
    args = ["qemu-img", "info", "--output=json"] + (["-U"] if force_share else []) + [str(path)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}: {r.stderr}")
    data = json.loads(r.stdout).get("format-specific", {}).get("data", {})
    return {b["name"]: b for b in data.get("bitmaps", [])}


def query_dirty_bitmaps(qmp, node=None):
    """{name: BlockDirtyInfo} of `node` (every node when None: {(node, name): info})
    from query-dirty-bitmaps. Accepts a flat list of bitmaps carrying their node
    ("node" or "node-name") or a list of {"node-name", "dirty-bitmaps": [...]}."""
    r = qmp.cmd("query-dirty-bitmaps")
    assert "return" in r, r
    flat = []
    for item in r["return"]:
        if "dirty-bitmaps" in item:
            n = item.get("node-name", item.get("node"))
            flat += [(n, b) for b in item["dirty-bitmaps"]]
        else:
            flat.append((item.get("node-name", item.get("node")), item))
    if node is None:
        return {(n, b["name"]): b for n, b in flat}
    return {b["name"]: b for n, b in flat if n == node}
