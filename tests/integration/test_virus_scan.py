"""The virus-scanner flow through the real daemon: a disk holding an ext4 filesystem is
served writable while a writer keeps changing it (files rewritten in place, a file
removed, new files and directories, junk in free blocks); fleece-start exports a
read-only view as of the snapshot point, and a scanner reads the files there:
- always: `nbdcopy` of the view to a local file, `e2fsck -fn` and `debugfs -c -R "cat"`;
- with FUSE: `nbdfuse` exposes the view as a file, `fuse2fs -o ro,fakeroot` mounts it,
  and `debugfs -c` / `e2fsck -fn` run on the nbdfuse file directly.
The filesystems are made with mkfs.ext4 -d and debugfs -w on plain files (no root-only
tools). After fleece-stop the live disk holds every write."""

import errno
import hashlib
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import nbd
import pytest

from fleece_harness import Daemon, Qmp

MiB = 1 << 20
BLOCK = 4096
DISK = 64 * MiB
TOOL_TIMEOUT = 60

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: DRIVER
    file: {{ driver: file, filename: "{dir}/disk0.img" }}
exports:
  - {{ name: disk0, node: disk0, writable: true, bitmaps: [b] }}
bitmaps:
  - {{ node: disk0, name: b, persistent: false, granularity: 65536 }}
fleecing:
  overlay-dir: "{dir}/overlays"
"""


def run(args, **kw):
    """Runs a tool, bounded in time; raises with its output when it fails."""
    r = subprocess.run([str(a) for a in args], capture_output=True, timeout=TOOL_TIMEOUT, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {r.returncode}:\n"
                             f"{r.stdout.decode(errors='replace')}"
                             f"{r.stderr.decode(errors='replace')}")
    return r.stdout


def need_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {' '.join(missing)} (scripts/install-deps.sh installs them)")


def fsck_clean(image):
    """`e2fsck -fn` (forced, read-only, answer no) exits 0 only for a clean filesystem."""
    r = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True,
                       timeout=TOOL_TIMEOUT)
    assert r.returncode == 0, f"e2fsck -fn {image} exited {r.returncode}:\n{r.stdout}{r.stderr}"
    return r.stdout


def debugfs_cat(image, path):
    """A file's content read by debugfs in catastrophic (read-only) mode."""
    return run(["debugfs", "-c", "-R", f"cat {path}", image])


def debugfs_blocks(image, path):
    return [int(b) for b in run(["debugfs", "-c", "-R", f"blocks {path}", image]).split()]


def free_blocks(image):
    """The block numbers `dumpe2fs` lists as free."""
    out = run(["dumpe2fs", image]).decode()
    free = set()
    for line in out.splitlines():
        m = re.match(r"\s+Free blocks: (.*)", line)
        if not m:
            continue
        for part in filter(None, (p.strip() for p in m.group(1).split(","))):
            lo, _, hi = part.partition("-")
            free.update(range(int(lo), int(hi or lo) + 1))
    return free


class Filesystems:
    """Two states of one ext4 filesystem: `before` (the disk at the snapshot point) and
    `after` (what the writer turns it into), with the expected files of each, the blocks
    that differ and the blocks free in both (where the writer scribbles junk)."""

    def __init__(self, root):
        rng = random.Random(7)
        src = root / "src"
        self.before_files = {
            "/docs/readme.txt": b"quarterly report\n" * 300,
            "/docs/old.txt": b"to be deleted\n" * 1000,
            "/data/big.bin": rng.randbytes(6 * MiB + 1234),
            "/bin/tool": rng.randbytes(70000),
        }
        for i in range(24):
            self.before_files[f"/data/set/f{i:02}.bin"] = rng.randbytes(rng.randrange(1, 300000))
        for path, content in self.before_files.items():
            (src / path[1:]).parent.mkdir(parents=True, exist_ok=True)
            (src / path[1:]).write_bytes(content)

        self.before = root / "before.raw"
        with open(self.before, "wb") as f:
            f.truncate(DISK)
        run(["mkfs.ext4", "-q", "-F", "-b", BLOCK, "-L", "scanme", "-d", src, self.before])

        # The later state: debugfs -w makes real metadata changes (a new directory and
        # files, a removed file); big.bin and f03.bin are rewritten in place, in their blocks.
        self.after = root / "after.raw"
        shutil.copyfile(self.before, self.after)
        new1, new2 = rng.randbytes(2 * MiB + 77), b"fresh download\n" * 5000
        (root / "new1").write_bytes(new1)
        (root / "new2").write_bytes(new2)
        (root / "cmds").write_text(
            f"rm /docs/old.txt\nmkdir /incoming\ncd /incoming\n"
            f"write {root / 'new1'} new1.bin\nwrite {root / 'new2'} new2.txt\n")
        run(["debugfs", "-w", "-f", root / "cmds", self.after])
        self.after_files = {p: c for p, c in self.before_files.items() if p != "/docs/old.txt"}
        self.after_files["/incoming/new1.bin"] = new1
        self.after_files["/incoming/new2.txt"] = new2
        with open(self.after, "r+b") as f:
            for path in ["/data/big.bin", "/data/set/f03.bin"]:
                content = rng.randbytes(len(self.before_files[path]))
                self.after_files[path] = content
                for i, block in enumerate(debugfs_blocks(self.after, path)):
                    f.seek(block * BLOCK)
                    f.write(content[i * BLOCK:(i + 1) * BLOCK])
        fsck_clean(self.after)

        a, b = self.before.read_bytes(), self.after.read_bytes()
        self.changed = [n for n in range(DISK // BLOCK)
                        if a[n * BLOCK:(n + 1) * BLOCK] != b[n * BLOCK:(n + 1) * BLOCK]]
        self.after_blocks = {n: b[n * BLOCK:(n + 1) * BLOCK] for n in self.changed}
        self.junk_blocks = sorted(free_blocks(self.before) & free_blocks(self.after))
        self.before_sha = hashlib.sha256(a).hexdigest()
        # The disk image fleeced opens lacks these blocks of `before`: they are written
        # through the live export just before fleece-start (acknowledged, not flushed),
        # so the snapshot point must include writes made through the daemon.
        self.prewritten = {n: a[n * BLOCK:(n + 1) * BLOCK]
                           for n in debugfs_blocks(self.before, "/data/set/f07.bin")
                           + debugfs_blocks(self.before, "/docs/readme.txt")}
        # The big file's blocks change, and so do metadata blocks (the write must reach
        # directories, bitmaps, inode tables, not only file data).
        big = set(debugfs_blocks(self.before, "/data/big.bin"))
        assert big <= set(self.changed)
        assert len(set(self.changed) - big) > 5


@pytest.fixture(scope="module")
def filesystems(tmp_path_factory):
    need_tools("mkfs.ext4", "debugfs", "dumpe2fs", "e2fsck", "nbdcopy")
    return Filesystems(tmp_path_factory.mktemp("ext4"))


def new_daemon(tmp_path, driver, fs):
    """A Daemon serving `before` without the blocks of `fs.prewritten` (start it, then
    call write_before_snapshot)."""
    (tmp_path / "overlays").mkdir()
    image = tmp_path / "pre.raw"
    shutil.copyfile(fs.before, image)
    with open(image, "r+b") as f:
        for n in fs.prewritten:
            f.seek(n * BLOCK)
            f.write(b"\xee" * BLOCK)
    if driver == "raw":
        image.rename(tmp_path / "disk0.img")
    else:
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", image, tmp_path / "disk0.img"])
        image.unlink()
    return Daemon(tmp_path, config=CONFIG.replace("DRIVER", driver))


def write_before_snapshot(d, fs):
    """Completes `before` on the live export (no flush: acknowledged writes count)."""
    h = nbd.NBD()
    h.connect_uri(d.uri("disk0"))
    for n, data in fs.prewritten.items():
        h.pwrite(data, n * BLOCK)
    h.shutdown()


def ok(qmp, cmd, args=None):
    r = qmp.cmd(cmd, args)
    assert "return" in r, f"{cmd} {args} -> {r}"
    return r["return"]


class Writer:
    """A thread that keeps changing the live export: the blocks that turn `before` into
    `after`, again and again in random order, between junk writes to free blocks. Records
    the last junk each block got; `wait_writes(n)` waits until n writes were made."""

    def __init__(self, uri, fs, seed=1):
        self.uri, self.fs, self.rng = uri, fs, random.Random(seed)
        self.junk = {}
        self.writes = 0
        self.rounds = 0
        self.error = None
        self.stop_event = threading.Event()
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        h = nbd.NBD()
        try:
            h.connect_uri(self.uri)
            while not self.stop_event.is_set():
                order = list(self.fs.changed)
                self.rng.shuffle(order)
                for n in order:
                    if self.stop_event.is_set():
                        break
                    h.pwrite(self.fs.after_blocks[n], n * BLOCK)
                    junk_block = self.rng.choice(self.fs.junk_blocks)
                    junk = self.rng.randbytes(BLOCK)
                    h.pwrite(junk, junk_block * BLOCK)
                    self.junk[junk_block] = junk
                    with self.cond:
                        self.writes += 2
                        self.cond.notify_all()
                    time.sleep(0.0005)
                else:
                    self.rounds += 1
            h.flush()
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e
        finally:
            with self.cond:
                self.cond.notify_all()
            try:
                h.shutdown()
            except nbd.Error:
                pass  # never connected, or the connection is already gone

    def start(self):
        self.thread.start()
        return self

    def wait_writes(self, n, timeout=20):
        with self.cond:
            assert self.cond.wait_for(lambda: self.writes >= n or self.error
                                      or not self.thread.is_alive(), timeout), self.writes
        assert self.error is None, self.error

    def wait_rounds(self, n, timeout=90):
        deadline = time.monotonic() + timeout
        while self.rounds < n:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"writer made {self.rounds} rounds"
            time.sleep(0.02)

    def stop(self):
        if self.thread.ident is None:
            return  # never started
        self.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "writer did not stop"
        assert self.error is None, self.error


def check_files(read, files):
    """Every file as `read(path)` returns it equals `files[path]`."""
    for path, content in files.items():
        got = read(path)
        if got != content:
            first = next((i for i, (a, b) in enumerate(zip(got, content)) if a != b),
                         min(len(got), len(content)))
            raise AssertionError(f"{path}: {len(got)} bytes read, {len(content)} expected, "
                                 f"first difference at byte {first}")


def check_live_disk(tmp_path, uri, fs, writer):
    """The live disk holds every write: the `after` filesystem, clean, and the last junk."""
    live = tmp_path / "live.raw"
    run(["nbdcopy", uri, live])
    fsck_clean(live)
    check_files(lambda p: debugfs_cat(live, p), fs.after_files)
    with open(live, "rb") as f:
        for n, junk in writer.junk.items():
            f.seek(n * BLOCK)
            assert f.read(BLOCK) == junk, f"junk block {n}"
    return live


@pytest.mark.parametrize("driver", ["raw", "qcow2"])
def test_scan_a_copy_of_the_view_while_the_disk_is_written(tmp_path, driver, filesystems):
    """Always runs (no FUSE): the view copied with nbdcopy is the filesystem as of the
    snapshot point, byte for byte, clean for e2fsck, its files readable with debugfs —
    also with a backup fleece (frozen bitmap) of the same node read at the same time."""
    fs = filesystems
    with new_daemon(tmp_path, driver, fs) as d, Qmp(d.control_sock) as qmp:
        writer = Writer(d.uri("disk0"), fs)
        try:
            write_before_snapshot(d, fs)
            ok(qmp, "fleece-start", {"id": "scan", "node": "disk0", "export": "scan"})
            ok(qmp, "fleece-start", {"id": "backup", "node": "disk0", "bitmap": "b"})
            writer.start()
            writer.wait_writes(200)
            at_scan_start = writer.writes
            copies = {name: tmp_path / f"{name}.raw" for name in ["scan", "disk0-fleece"]}
            procs = [subprocess.Popen(["nbdcopy", d.uri(name), str(path)],
                                      stderr=subprocess.PIPE)
                     for name, path in copies.items()]
            for p in procs:
                _, err = p.communicate(timeout=TOOL_TIMEOUT)
                assert p.returncode == 0, err
            assert writer.writes > at_scan_start  # the writer kept going during the scan
            writer.wait_rounds(1)
        finally:
            writer.stop()

        for view in copies.values():
            assert hashlib.sha256(view.read_bytes()).hexdigest() == fs.before_sha
        view = copies["scan"]
        fsck_clean(view)
        check_files(lambda p: debugfs_cat(view, p), fs.before_files)
        assert b"File not found" in subprocess.run(
            ["debugfs", "-c", "-R", "cat /incoming/new1.bin", str(view)],
            capture_output=True, timeout=TOOL_TIMEOUT).stderr

        fleeces = {f["id"]: f for f in ok(qmp, "query-fleeces")}
        assert fleeces["scan"]["state"] == "active" and fleeces["backup"]["state"] == "active"
        assert fleeces["scan"]["copied-bytes"] >= len(fs.changed) * BLOCK
        ok(qmp, "fleece-stop", {"id": "backup"})
        ok(qmp, "fleece-stop", {"id": "scan"})
        assert ok(qmp, "query-fleeces") == []
        assert os.listdir(tmp_path / "overlays") == []
        check_live_disk(tmp_path, d.uri("disk0"), fs, writer)


def test_scan_a_broken_snapshot_fails_with_eio(tmp_path, filesystems):
    """Past the overlay limit the snapshot breaks: the live writes succeed, the scanner's
    reads of the view fail with an I/O error instead of returning a mix of two states."""
    fs = filesystems
    with new_daemon(tmp_path, "raw", fs) as d, Qmp(d.control_sock) as qmp:
        write_before_snapshot(d, fs)
        ok(qmp, "fleece-start", {"id": "scan", "node": "disk0", "export": "scan",
                                 "overlay-limit": 256 * 1024})
        writer = Writer(d.uri("disk0"), fs).start()
        try:
            writer.wait_rounds(1)
        finally:
            writer.stop()
        [info] = ok(qmp, "query-fleeces")
        assert info["state"] == "broken" and info["reason"]
        r = subprocess.run(["nbdcopy", d.uri("scan"), str(tmp_path / "view.raw")],
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        assert r.returncode != 0 and "Input/output error" in r.stderr, r.stderr
        ok(qmp, "fleece-stop", {"id": "scan"})
        check_live_disk(tmp_path, d.uri("disk0"), fs, writer)


# ---- through FUSE: nbdfuse + fuse2fs, as a scanner would mount it ---------------------------

def fuse_unusable_reason():
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (a container without FUSE)"
    for tool in ["nbdfuse", "fuse2fs", "fusermount3"]:
        if shutil.which(tool) is None:
            return f"{tool} is missing (scripts/install-deps.sh installs it)"
    return None


PERMISSION_ERRORS = ("Operation not permitted", "Permission denied", "fuse: device not found")


def bounded(fn, timeout=60):
    """Runs fn() on a helper thread and returns its result (or raises its exception);
    fails if it takes longer than `timeout` — a read stuck in a FUSE mount must not hang
    the test, whose clean-up then unmounts and stops the FUSE servers, releasing it."""
    result = {}

    def call():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised on the test's thread
            result["error"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{fn.__name__} did not finish within {timeout}s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def unmount(mountpoint, proc):
    """fusermount3 -u (lazily if busy), then waits for the FUSE server; bounded in time."""
    if os.path.ismount(mountpoint):
        r = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, timeout=20)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True,
                           timeout=20)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class FuseMount:
    """Starts a FUSE server in the foreground (`args`), waits until `mountpoint` is
    mounted; skips the test when the kernel refuses FUSE mounts (EPERM in a container).
    A context manager: unmounts and stops the server on exit."""

    def __init__(self, args, mountpoint, log):
        self.args, self.mountpoint, self.log_path = args, Path(mountpoint), Path(log)

    def __enter__(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(a) for a in self.args], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                out = self.log_path.read_text()
                if any(e in out for e in PERMISSION_ERRORS):
                    pytest.skip(f"FUSE mounts are not permitted here: {out.strip()}")
                raise AssertionError(f"{self.args[0]} did not mount {self.mountpoint} "
                                     f"(exit {self.proc.returncode}):\n{out}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        unmount(self.mountpoint, self.proc)
        self.log.close()


def test_scan_the_view_mounted_with_nbdfuse_and_fuse2fs(tmp_path, filesystems):
    """nbdfuse exposes the view as a file; fuse2fs mounts it read-only; the files read
    there, and through debugfs -c on the nbdfuse file, are those of the snapshot point
    while the live disk keeps changing; e2fsck -fn finds the view clean."""
    reason = fuse_unusable_reason()
    if reason:
        pytest.skip(reason)
    fs = filesystems
    nbdmnt, fsmnt = tmp_path / "nbd", tmp_path / "mnt"
    nbdmnt.mkdir()
    fsmnt.mkdir()
    with new_daemon(tmp_path, "qcow2", fs) as d, Qmp(d.control_sock) as qmp:
        write_before_snapshot(d, fs)
        ok(qmp, "fleece-start", {"id": "scan", "node": "disk0", "export": "scan"})
        writer = Writer(d.uri("disk0"), fs, seed=2)
        try:
            writer.start()
            writer.wait_writes(200)
            at_scan_start = writer.writes
            with FuseMount(["nbdfuse", "-r", nbdmnt, d.uri("scan")], nbdmnt,
                           tmp_path / "nbdfuse.log"):
                view = nbdmnt / "nbd"

                def view_is_a_read_only_file():
                    assert view.stat().st_size == DISK
                    with pytest.raises(PermissionError):
                        open(view, "r+b")

                def scan_the_mounted_files():
                    found = {"/" + str(p.relative_to(fsmnt)) for p in fsmnt.rglob("*")
                             if p.is_file()}
                    assert found == set(fs.before_files)
                    check_files(lambda p: (fsmnt / p[1:]).read_bytes(), fs.before_files)
                    with pytest.raises(OSError):
                        (fsmnt / "docs" / "x").write_bytes(b"x")

                bounded(view_is_a_read_only_file)
                with FuseMount(["fuse2fs", view, fsmnt, "-o", "ro,fakeroot", "-f"], fsmnt,
                               tmp_path / "fuse2fs.log"):
                    bounded(scan_the_mounted_files)
                # debugfs straight on the nbdfuse file, no second FUSE mount.
                check_files(lambda p: debugfs_cat(view, p), fs.before_files)
                fsck_clean(view)
            assert writer.writes > at_scan_start
            writer.wait_rounds(1)
        finally:
            writer.stop()
        ok(qmp, "fleece-stop", {"id": "scan"})
        check_live_disk(tmp_path, d.uri("disk0"), fs, writer)


def test_a_broken_snapshot_fails_reads_through_nbdfuse(tmp_path, filesystems):
    """A scan in progress when the snapshot breaks: reads of the nbdfuse file that the
    page cache does not hold fail with EIO, and debugfs cannot open the filesystem."""
    reason = fuse_unusable_reason()
    if reason:
        pytest.skip(reason)
    fs = filesystems
    nbdmnt = tmp_path / "nbd"
    nbdmnt.mkdir()
    big = debugfs_blocks(fs.before, "/data/big.bin")
    with new_daemon(tmp_path, "raw", fs) as d, Qmp(d.control_sock) as qmp:
        write_before_snapshot(d, fs)
        ok(qmp, "fleece-start", {"id": "scan", "node": "disk0", "export": "scan",
                                 "overlay-limit": 256 * 1024})
        with FuseMount(["nbdfuse", "-r", nbdmnt, d.uri("scan")], nbdmnt,
                       tmp_path / "nbdfuse.log"):
            view = nbdmnt / "nbd"

            def read_view(offset, length):
                with open(view, "rb") as f:
                    f.seek(offset)
                    return f.read(length)

            assert len(bounded(lambda: read_view(0, 65536))) == 65536  # the scan has begun
            writer = Writer(d.uri("disk0"), fs).start()
            try:
                writer.wait_rounds(1)
            finally:
                writer.stop()
            [info] = ok(qmp, "query-fleeces")
            assert info["state"] == "broken"
            with pytest.raises(OSError) as err:
                bounded(lambda: read_view(big[-1] * BLOCK, BLOCK))
            assert err.value.errno == errno.EIO
            # debugfs reports the error on stderr (and still exits 0).
            r = subprocess.run(["debugfs", "-c", "-R", "cat /bin/tool", str(view)],
                               capture_output=True, text=True, timeout=TOOL_TIMEOUT)
            assert "Input/output error" in r.stderr and r.stdout == "", r
        ok(qmp, "fleece-stop", {"id": "scan"})
        check_live_disk(tmp_path, d.uri("disk0"), fs, writer)
