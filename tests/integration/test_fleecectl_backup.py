"""End-to-end tests of `fleecectl backup` through the real daemon: a full backup and two
incrementals of a qcow2 disk with a persistent bitmap, with writes between the backups and
while each one runs; every point restored with `fleecectl backup restore` and with
`qemu-img convert` and compared byte for byte with a copy of the disk taken at its snapshot
point; incrementals that hold only the dirty clusters; `qemu-img check` on every file;
--json progress lines; failures (unreachable NBD socket, a snapshot that breaks mid-backup,
SIGINT) that roll the fleece back so the next incremental still has the changes."""

import json
import os
import signal
import subprocess
import time

import nbd
import pytest

from fleece_harness import FLEECECTL, Daemon, Qmp, granules_touched, make_image

MiB = 1 << 20
G = 65536
DISK = 16 * MiB

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: qcow2
    file: { driver: file, filename: "{dir}/disk0.img" }
exports:
  - { name: disk0, node: disk0, writable: true, bitmaps: [b] }
bitmaps:
  - { node: disk0, name: b, persistent: true, granularity: 65536 }
fleecing:
  overlay-dir: "{dir}/overlays"
""".replace("{ ", "{{ ").replace(" }", " }}")

# (byte, offset, length): before the full backup, while it runs, and so on.
BEFORE_FULL = [(0x11, 0, 3 * MiB), (0x12, 6 * MiB + 512, 4096), (0x13, DISK - G, G)]
DURING_FULL = [(0x21, MiB, G), (0x22, 8 * MiB + 100, 3 * G)]
BETWEEN_1 = [(0x31, 2 * MiB + 7 * G, 2 * G), (0x00, 100 * 1024, 8192), (0x32, 9 * MiB, MiB)]
DURING_INC1 = [(0x41, 0, 4096), (0x42, 12 * MiB, MiB)]
BETWEEN_2 = [(0x51, 5 * MiB, 2 * G + 1), (0x52, DISK - 512, 512)]
DURING_INC2 = [(0x61, 3 * MiB - G, 2 * G)]


def new_daemon(tmp_path):
    (tmp_path / "overlays").mkdir(exist_ok=True)
    make_image(tmp_path / "disk0.img", DISK, fmt="qcow2")
    return Daemon(tmp_path, config=CONFIG)


def write(d, writes):
    h = nbd.NBD()
    h.connect_uri(d.uri("disk0"))
    for byte, off, length in writes:
        h.pwrite(bytes([byte]) * length, off)
    h.flush()
    h.shutdown()


def read_all(d):
    h = nbd.NBD()
    h.connect_uri(d.uri("disk0"))
    try:
        return b"".join(h.pread(MiB, off) for off in range(0, DISK, MiB))
    finally:
        h.shutdown()


def backup_cmd(d, kind, target, *extra, json_output=True):
    cmd = [str(FLEECECTL), "--socket", str(d.control_sock)]
    if json_output:
        cmd.append("--json")
    return cmd + ["backup", kind, "disk0", "--bitmap", "b", "--to", str(target),
                  "--nbd", d.uri()] + list(extra)


def run_backup(d, kind, target, during=(), *extra):
    """Runs a backup; `during` is written to the live disk once the snapshot is taken
    (the "start" line) while the pull runs (slowed by --max-rate). Returns (exit code,
    JSON lines, stderr)."""
    args = (["--max-rate", "1M"] if during else []) + list(extra)  # a later one wins
    p = subprocess.Popen(backup_cmd(d, kind, target, *args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        first = p.stdout.readline()
        if first:
            lines.append(json.loads(first))
            if during and lines[0]["event"] == "start":
                write(d, during)
                # The writes landed while the backup's fleece was still active.
                assert d.ctl("fleece", "list"), "the backup ended before the writes"
        lines += [json.loads(x) for x in p.stdout]
        err = p.stderr.read()
        return p.wait(60), lines, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def manifest(target):
    return json.loads((target / "manifest.json").read_text())


def restore(target, point, out, fmt="raw"):
    r = subprocess.run([str(FLEECECTL), "backup", "restore", str(target), "--point", str(point),
                        "--to", str(out), "--format", fmt], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return out


def qemu_img(*args):
    r = subprocess.run(["qemu-img"] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"qemu-img {args}: {r.stdout}{r.stderr}"
    return r.stdout


def top_layer_granules(path):
    """Granules the file itself holds (data or zero clusters), not its backing chain."""
    out = set()
    for e in json.loads(qemu_img("map", "--output=json", str(path))):
        if e["depth"] == 0 and (e["data"] or e["present"]):
            out.update(range(e["start"] // G, -(-(e["start"] + e["length"]) // G)))
    return out


def ranges(writes):
    return [(off, length) for _, off, length in writes]


def check_point_restores(tmp_path, target, point, expected):
    raw = restore(target, point, tmp_path / f"restore-{point}.raw")
    assert raw.read_bytes() == expected, f"point {point}: fleecectl restore differs"
    file = target / manifest(target)["points"][point]["file"]
    conv = tmp_path / f"convert-{point}.raw"
    qemu_img("convert", "-O", "raw", str(file), str(conv))
    assert conv.read_bytes() == expected, f"point {point}: qemu-img convert differs"
    check = qemu_img("check", str(file))
    assert "No errors were found" in check and "leaked" not in check, check


def test_full_and_two_incrementals_restore_each_point(tmp_path):
    target = tmp_path / "chain"
    with new_daemon(tmp_path) as d, Qmp(d.control_sock) as qmp:
        r = subprocess.run(backup_cmd(d, "incremental", target), capture_output=True, text=True)
        assert r.returncode == 1 and "no full backup" in r.stderr, r.stderr

        write(d, BEFORE_FULL)
        at_full = read_all(d)
        rc, lines, err = run_backup(d, "full", target, DURING_FULL)
        assert rc == 0, err
        # --json: a start line, progress lines (the pull took over a second), a summary.
        assert [lines[0]["event"], lines[-1]["event"]] == ["start", "done"]
        assert any(x["event"] == "progress" for x in lines), lines
        assert lines[-1]["bytes-read"] == lines[0]["total-bytes"] >= 3 * MiB

        write(d, BETWEEN_1)
        at_inc1 = read_all(d)
        rc, lines, err = run_backup(d, "incremental", target, DURING_INC1)
        assert rc == 0, err
        write(d, BETWEEN_2)
        at_inc2 = read_all(d)
        rc, lines, err = run_backup(d, "incremental", target, DURING_INC2)
        assert rc == 0, err
        assert not qmp.cmd("query-fleeces")["return"]

    points = manifest(target)["points"]
    assert [(p["point"], p["kind"], p["file"], p.get("backing")) for p in points] == [
        (0, "full", "0000-full.qcow2", None),
        (1, "incremental", "0001-inc.qcow2", "0000-full.qcow2"),
        (2, "incremental", "0002-inc.qcow2", "0001-inc.qcow2")]
    info = json.loads(qemu_img("info", "--output=json", str(target / "0002-inc.qcow2")))
    assert info["backing-filename"] == "0001-inc.qcow2"
    assert info["backing-filename-format"] == "qcow2"

    for point, expected in enumerate([at_full, at_inc1, at_inc2]):
        check_point_restores(tmp_path, target, point, expected)
    # The latest point by default, and as qcow2.
    latest = restore(target, "2", tmp_path / "latest.qcow2", fmt="qcow2")
    qemu_img("compare", "-f", "qcow2", "-F", "raw", str(latest), str(tmp_path / "restore-2.raw"))
    assert "No errors were found" in qemu_img("check", str(latest))
    listed = subprocess.run([str(FLEECECTL), "--json", "backup", "list", str(target)],
                            capture_output=True, text=True, timeout=30)
    assert json.loads(listed.stdout) == manifest(target)

    # An incremental holds exactly the clusters written since the point before.
    assert top_layer_granules(target / "0001-inc.qcow2") == granules_touched(
        ranges(DURING_FULL + BETWEEN_1), G, DISK)
    assert top_layer_granules(target / "0002-inc.qcow2") == granules_touched(
        ranges(DURING_INC1 + BETWEEN_2), G, DISK)
    # The full backup left the never-written ranges unallocated.
    assert top_layer_granules(target / "0000-full.qcow2") == granules_touched(
        ranges(BEFORE_FULL), G, DISK)


def dirty_bytes(qmp):
    for b in qmp.cmd("query-dirty-bitmaps")["return"]:
        for item in b.get("dirty-bitmaps", [b]):
            if item.get("name") == "b":
                return item["count"]
    raise AssertionError("bitmap b not found")


def assert_rolled_back(qmp, target, points_before, dirty_before):
    assert not qmp.cmd("query-fleeces")["return"], "the fleece was not stopped"
    assert len(manifest(target)["points"]) == points_before
    assert sorted(os.listdir(target)) == sorted(
        ["manifest.json"] + [p["file"] for p in manifest(target)["points"]])
    assert dirty_bytes(qmp) >= dirty_before, "the frozen bitmap changes were lost"


def test_failed_incrementals_roll_back_and_the_next_one_has_the_changes(tmp_path):
    target = tmp_path / "chain"
    with new_daemon(tmp_path) as d, Qmp(d.control_sock) as qmp:
        write(d, BEFORE_FULL)
        rc, _, err = run_backup(d, "full", target)
        assert rc == 0, err

        # 1. The NBD socket cannot be reached: fleece-start worked, the pull cannot begin.
        write(d, [(0x71, 4 * MiB, 4 * MiB)])
        dirty = dirty_bytes(qmp)
        assert dirty == 4 * MiB
        cmd = backup_cmd(d, "incremental", target)
        cmd[cmd.index("--nbd") + 1] = f"nbd+unix:///?socket={tmp_path}/no-such.sock"
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "rolled back" in r.stderr, r.stderr
        assert json.loads(r.stdout.splitlines()[-1])["event"] == "failed"
        assert_rolled_back(qmp, target, 1, dirty)

        # 2. The snapshot breaks mid-backup: writes to the live disk overflow the fleece's
        # 64 KiB overlay, the view's reads fail with EIO.
        rc, lines, err = run_backup(d, "incremental", target,
                                    [(0x72, 7 * MiB, MiB)], "--overlay-limit", "64K",
                                    "--max-rate", "1M")
        assert rc == 1 and "rolled back" in err, err
        assert "Input/output error" in err, err
        assert lines[-1]["event"] == "failed"
        assert_rolled_back(qmp, target, 1, dirty)

        # 3. SIGINT while the pull runs.
        p = subprocess.Popen(backup_cmd(d, "incremental", target, "--max-rate", "1M"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert json.loads(p.stdout.readline())["event"] == "start"
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 130
        assert "interrupted" in p.stderr.read()
        assert_rolled_back(qmp, target, 1, dirty)

        # The next incremental has everything since the full backup.
        expected = read_all(d)
        rc, lines, err = run_backup(d, "incremental", target)
        assert rc == 0, err
        assert lines[-1]["bytes-read"] == 4 * MiB
        assert dirty_bytes(qmp) == 0
    check_point_restores(tmp_path, target, 1, expected)
