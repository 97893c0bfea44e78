"""The incremental backup flow of docs/backup.md end to end through the real daemon: a full
backup of a fleece view with nbdcopy into a qcow2 file, incrementals that read only the
extents of the frozen qemu:dirty-bitmap:b (listed with libnbd, `qemu-img map` with
x-dirty-bitmap and nbdinfo) into qcow2 overlays chained on the previous backup, a failed
incremental rolled back, and restores of every point compared byte for byte with a copy
of the disk taken at its snapshot point. The copying client is the script printed in
docs/backup.md, so the how-to is what is tested."""

import importlib.util
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import nbd

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, granules_touched, make_image,
                            nbdinfo_extents)

MiB = 1 << 20
G = 65536
DISK = 16 * MiB
DOC = Path(__file__).resolve().parents[2] / "docs" / "backup.md"

CONFIG = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: qcow2
    file: {{ driver: file, filename: "{dir}/disk0.qcow2" }}
exports:
  - {{ name: disk0, node: disk0, writable: true }}
bitmaps:
  - {{ node: disk0, name: b, persistent: true, granularity: 65536 }}
fleecing:
  overlay-dir: "{dir}/overlays"
"""

# Rounds of writes to the live disk: ("write", byte, offset, length), ("zero", 0, off, len)
# or ("trim", 0, off, len). Partial granules, zeroes and trims over data, adjacent runs.
ROUND0 = [("write", 0x11, 0, 3 * MiB), ("write", 0x12, 5 * MiB + 512, 4096),
          ("write", 0x13, 8 * MiB, 2 * MiB), ("write", 0x14, DISK - G, G)]
ROUND1 = [("write", 0x21, G, G), ("write", 0x22, 2 * G + 100, G),
          ("zero", 0, 8 * MiB + 4096, 8192), ("trim", 0, 8 * MiB + 4 * G, 2 * G),
          ("write", 0x23, 12 * MiB, 3 * G), ("write", 0x24, 12 * MiB + 3 * G, G)]
# Written while incremental 1 is being read: the view must not see them.
DURING1 = [("write", 0x31, 0, 4 * G), ("write", 0x32, 12 * MiB + G, 512),
           ("zero", 0, 9 * MiB, G), ("write", 0x33, 14 * MiB, G)]
ROUND2 = [("write", 0x41, 3 * MiB - 512, 1024), ("write", 0x42, 14 * MiB + 2 * G, 2 * G)]
# Written after incremental 2 trimmed what it stored: into granules it already copied.
DURING2 = [("write", 0x51, 3 * MiB - G, 512), ("write", 0x52, 14 * MiB + 3 * G, 4096)]
ROUND3 = [("write", 0x61, 4 * MiB, 2 * G), ("write", 0x62, 11 * MiB, G)]
ROUND4 = [("write", 0x71, 4 * MiB + G, 2 * G), ("trim", 0, 8 * MiB, G),
          ("write", 0x72, 15 * MiB, 4096)]


def granules(*rounds):
    return granules_touched([(off, n) for r in rounds for _, _, off, n in r], G, DISK)


def granules_of_runs(runs):
    """Granule indices covered by (offset, length) runs that must be granule-aligned."""
    out = set()
    for off, length in runs:
        assert off % G == 0 and (length % G == 0 or off + length == DISK), (off, length)
        out.update(range(off // G, -(-(off + length) // G)))
    return out


def load_doc_client(tmp_path):
    """The fleece-incremental.py script of docs/backup.md, saved and imported."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [text] = [b for b in blocks if "# fleece-incremental.py" in b]
    path = tmp_path / "fleece-incremental.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("fleece_incremental", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def run(*args, cwd=None):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60, cwd=cwd)
    assert r.returncode == 0, \
        f"{' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}{r.stderr}"
    return r.stdout


def ok(qmp, cmd, args=None):
    r = qmp.cmd(cmd, args)
    assert "return" in r, f"{cmd} {args} -> {r}"
    return r["return"]


def apply(d, ops):
    h = nbd.NBD()
    h.connect_uri(d.uri("disk0"))
    for kind, byte, off, length in ops:
        if kind == "write":
            h.pwrite(bytes([byte]) * length, off)
        elif kind == "zero":
            h.zero(length, off)
        else:
            h.trim(length, off)
    h.flush()
    h.shutdown()


def read_all(d, export):
    h = nbd.NBD()
    h.connect_uri(d.uri(export))
    try:
        return b"".join(h.pread(4 * MiB, off) for off in range(0, DISK, 4 * MiB))
    finally:
        h.shutdown()


def restored(tmp_path, image):
    """The disk a backup chain restores: `qemu-img convert` of its top file to raw."""
    out = tmp_path / (Path(image).stem + "-restored.raw")
    run("qemu-img", "convert", "-O", "raw", str(image), str(out), cwd=tmp_path)
    return out.read_bytes()


def assert_restores(tmp_path, image, reference):
    ref_file = tmp_path / (Path(image).stem + "-reference.raw")
    ref_file.write_bytes(reference)
    run("qemu-img", "check", str(image), cwd=tmp_path)
    assert "Images are identical" in run("qemu-img", "compare", "-F", "raw", str(image),
                                         str(ref_file), cwd=tmp_path)
    data = restored(tmp_path, image)
    assert len(data) == DISK
    for off in range(0, DISK, G):
        assert data[off:off + G] == reference[off:off + G], f"{image}: granule at {off}"


def top_layer_granules(tmp_path, image):
    """The granules stored in `image` itself (depth 0 of `qemu-img map`), not its backing."""
    entries = json.loads(run("qemu-img", "map", "--output=json", str(image), cwd=tmp_path))
    return granules_of_runs([(e["start"], e["length"]) for e in entries
                             if e["depth"] == 0 and e.get("present", e["data"] or e["zero"])])


def new_overlay(tmp_path, name, backing):
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", name,
        cwd=tmp_path)
    return tmp_path / name


def qemu_img_dirty_runs(d, export, bitmap="b"):
    """Dirty runs as `qemu-img map` with x-dirty-bitmap shows them: dirty is "data": false."""
    opts = (f"driver=nbd,server.type=unix,server.path={d.nbd_sock},export={export},"
            f"x-dirty-bitmap={dirty_bitmap_context(bitmap)}")
    entries = json.loads(run("qemu-img", "map", "--output=json", "--image-opts", opts))
    return [(e["start"], e["length"]) for e in entries if not e["data"]]


def nbdinfo_dirty_runs(d, export, bitmap="b"):
    return [(off, n) for off, n, typ in nbdinfo_extents(d.uri(export), dirty_bitmap_context(bitmap))
            if typ & 1]


def copied_bytes(qmp, fleece_id):
    [info] = [f for f in ok(qmp, "query-fleeces") if f["id"] == fleece_id]
    assert info["state"] == "active", info
    return info["copied-bytes"]


def test_full_and_incremental_backups_restore_every_point(tmp_path):
    client, script = load_doc_client(tmp_path)
    (tmp_path / "overlays").mkdir()
    make_image(tmp_path / "disk0.qcow2", DISK, fmt="qcow2")
    with Daemon(tmp_path, config=CONFIG) as d, Qmp(d.control_sock) as qmp:
        view = d.uri("disk0-fleece")

        # Full backup: everything the view holds, with nbdcopy into a new qcow2 file.
        apply(d, ROUND0)
        ref0 = read_all(d, "disk0")  # nobody writes: the disk as of the snapshot point
        ok(qmp, "fleece-start", {"id": "full", "node": "disk0", "bitmap": "b"})
        assert read_all(d, "disk0-fleece") == ref0
        run("qemu-img", "create", "-q", "-f", "qcow2", "full.qcow2", str(DISK), cwd=tmp_path)
        run("nbdcopy", view, "--", "[", "qemu-nbd", "-f", "qcow2", "full.qcow2", "]",
            cwd=tmp_path)
        ok(qmp, "fleece-stop", {"id": "full"})
        assert_restores(tmp_path, tmp_path / "full.qcow2", ref0)

        # Incremental 1: dirty extents listed with libnbd; the live disk changes meanwhile.
        apply(d, ROUND1)
        ref1 = read_all(d, "disk0")
        ok(qmp, "fleece-start", {"id": "inc1", "node": "disk0", "bitmap": "b"})
        apply(d, DURING1)
        extents = client.dirty_extents(view, "b")
        assert granules_of_runs(extents) == granules(ROUND1)
        inc1 = new_overlay(tmp_path, "inc1.qcow2", "full.qcow2")
        copied = client.copy_extents(view, str(inc1), extents)
        assert copied == sum(n for _, n in extents) == len(granules(ROUND1)) * G
        assert read_all(d, "disk0-fleece") == ref1
        assert copied_bytes(qmp, "inc1") > 0  # DURING1 really copied old data
        ok(qmp, "fleece-stop", {"id": "inc1"})
        assert top_layer_granules(tmp_path, inc1) == granules(ROUND1)
        assert_restores(tmp_path, inc1, ref1)

        # Incremental 2: extents from `qemu-img map`, the view trimmed as it is stored.
        apply(d, ROUND2)
        ref2 = read_all(d, "disk0")
        ok(qmp, "fleece-start", {"id": "inc2", "node": "disk0", "bitmap": "b", "discard": True})
        extents = qemu_img_dirty_runs(d, "disk0-fleece")
        assert granules_of_runs(extents) == granules(DURING1, ROUND2)
        assert extents == client.dirty_extents(view, "b")
        inc2 = new_overlay(tmp_path, "inc2.qcow2", "inc1.qcow2")
        copied = client.copy_extents(view, str(inc2), extents, trim=True)
        assert copied == len(granules(DURING1, ROUND2)) * G
        apply(d, DURING2)  # only into trimmed granules: nothing to copy any more
        assert granules(DURING2) <= granules(ROUND2)
        assert copied_bytes(qmp, "inc2") == 0
        h = nbd.NBD()
        h.connect_uri(view)
        try:
            h.pread(512, 14 * MiB + 2 * G)  # trimmed: the view no longer has it
            raise AssertionError("a trimmed range of the view was readable")
        except nbd.Error as e:
            assert "Input/output error" in str(e)
        h.shutdown()
        ok(qmp, "fleece-stop", {"id": "inc2"})
        assert top_layer_granules(tmp_path, inc2) == granules(DURING1, ROUND2)
        assert_restores(tmp_path, inc2, ref2)

        # Incremental 3 fails half-way: rolled back, its overlay thrown away.
        apply(d, ROUND3)
        ok(qmp, "fleece-start", {"id": "inc3", "node": "disk0", "bitmap": "b"})
        extents = client.dirty_extents(view, "b")
        assert granules_of_runs(extents) == granules(DURING2, ROUND3)
        inc3 = new_overlay(tmp_path, "inc3.qcow2", "inc2.qcow2")
        client.copy_extents(view, str(inc3), extents[:1])
        ok(qmp, "fleece-stop", {"id": "inc3", "rollback": True})
        inc3.unlink()

        # Incremental 4 from the command line (fleecectl, the script; extents checked with
        # nbdinfo) includes what incremental 3 should have stored.
        apply(d, ROUND4)
        ref4 = read_all(d, "disk0")
        r = d.ctl("fleece", "start", "disk0", "--bitmap", "b", json_output=False)
        assert r.stdout == "fleece 'disk0-fleece' of node 'disk0' exported as 'disk0-fleece'\n"
        want = granules(DURING2, ROUND3, ROUND4)
        assert granules_of_runs(nbdinfo_dirty_runs(d, "disk0-fleece")) == want
        inc4 = new_overlay(tmp_path, "inc4.qcow2", "inc2.qcow2")
        out = run("/usr/bin/python3", str(script), view, "b", "inc4.qcow2", cwd=tmp_path)
        assert out.startswith(f"copied {len(want) * G} bytes in ")
        d.ctl("fleece", "stop", "disk0-fleece")
        assert ok(qmp, "query-fleeces") == []
        assert top_layer_granules(tmp_path, inc4) == want
        assert_restores(tmp_path, inc4, ref4)

        # Every point of the chain still restores; no fleecing overlay is left.
        assert restored(tmp_path, "full.qcow2") == ref0
        assert restored(tmp_path, "inc1.qcow2") == ref1
        assert restored(tmp_path, "inc2.qcow2") == ref2
        assert os.listdir(tmp_path / "overlays") == []

        # Restore point 1 over the live export (the VM stopped) with nbdcopy.
        run("nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "qcow2", "inc1.qcow2", "]",
            d.uri("disk0"), cwd=tmp_path)
        assert read_all(d, "disk0") == ref1


def test_incremental_after_a_crash_mid_backup_loses_nothing(tmp_path):
    """fleeced killed during an incremental: after the restart the next incremental holds
    the changes the lost one should have stored, and the chain restores exactly."""
    client, _ = load_doc_client(tmp_path)
    (tmp_path / "overlays").mkdir()
    make_image(tmp_path / "disk0.qcow2", DISK, fmt="qcow2")
    d = Daemon(tmp_path, config=CONFIG).start()
    with Qmp(d.control_sock) as qmp:
        apply(d, ROUND0)
        ok(qmp, "fleece-start", {"id": "full", "node": "disk0", "bitmap": "b"})
        run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", d.uri("disk0-fleece"),
            "full.qcow2", cwd=tmp_path)
        ok(qmp, "fleece-stop", {"id": "full"})
        apply(d, ROUND1)
        ok(qmp, "fleece-start", {"id": "inc1", "node": "disk0", "bitmap": "b"})
        lost = new_overlay(tmp_path, "lost.qcow2", "full.qcow2")
        client.copy_extents(d.uri("disk0-fleece"), str(lost), [(G, G)])
    d.stop(sig=signal.SIGKILL)
    lost.unlink()
    with Daemon(tmp_path, config=CONFIG) as d2, Qmp(d2.control_sock) as qmp:
        assert ok(qmp, "query-fleeces") == []
        apply(d2, ROUND2)
        ref = read_all(d2, "disk0")
        ok(qmp, "fleece-start", {"id": "inc1", "node": "disk0", "bitmap": "b"})
        view = d2.uri("disk0-fleece")
        extents = client.dirty_extents(view, "b")
        assert granules_of_runs(extents) == granules(ROUND1, ROUND2)
        inc1 = new_overlay(tmp_path, "inc1.qcow2", "full.qcow2")
        client.copy_extents(view, str(inc1), extents)
        ok(qmp, "fleece-stop", {"id": "inc1"})
        assert_restores(tmp_path, inc1, ref)
        assert os.listdir(tmp_path / "overlays") == []
