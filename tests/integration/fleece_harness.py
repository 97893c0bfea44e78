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
        if wait_control or (wait_control is None and hasattr(self, "config_path")
                            and "{control_sock}" in (self.config_text() or "")):
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
