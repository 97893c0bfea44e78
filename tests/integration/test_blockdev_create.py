"""End-to-end tests of blockdev-create through the real daemon: files and qcow2 images
made over QMP (defaults, extended L2, 4 KiB clusters, v2, refcount width, a backing file
with its format, fleece's in-graph backing node), checked with `qemu-img check` and
`qemu-img info`; then opened with blockdev-add, exported and written/read over NBD
(libnbd); fleecectl image create end to end; errors."""

import json
import subprocess
import time

import nbd
import pytest

from fleece_harness import FLEECECTL, Daemon, Qmp, make_image

MiB = 1 << 20

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
"""


@pytest.fixture
def daemon(tmp_path):
    make_image(tmp_path / "base.raw", 4 * MiB, pattern=[(0x42, 0, MiB)])
    d = Daemon(tmp_path, config=CONFIG).start(wait_control=True)
    yield d
    assert d.alive(), "fleeced died during the test:\n" + d.log_text()
    assert d.stop() == 0


@pytest.fixture
def qmp(daemon):
    with Qmp(daemon.control_sock) as q:
        yield q


def ok(q, cmd, args):
    r = q.cmd(cmd, args)
    assert r == {"return": {}}, f"{cmd} {args} -> {r}"


def del_node(q, name, timeout=10.0):
    """blockdev-del, waiting while a just-closed NBD connection still holds the node
    (the server drops its reference when the connection's coroutine ends)."""
    deadline = time.monotonic() + timeout
    while True:
        r = q.cmd("blockdev-del", {"node-name": name})
        if r == {"return": {}}:
            return
        assert "in use" in r.get("error", {}).get("desc", "") and time.monotonic() < deadline, \
            f"blockdev-del {name} -> {r}"
        time.sleep(0.05)


def create_qcow2(q, path, node, **opts):
    """An empty file, opened as file node `node`, formatted as qcow2 with opts."""
    ok(q, "blockdev-create", {"job-id": "mkfile",
                              "options": {"driver": "file", "filename": str(path), "size": 0}})
    ok(q, "blockdev-add", {"driver": "file", "node-name": node, "filename": str(path)})
    options = {"driver": "qcow2", "file": node}
    options.update(opts)
    ok(q, "blockdev-create", {"job-id": "mkqcow2", "options": options})


def img_info(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def img_check(path):
    r = subprocess.run(["qemu-img", "check", "--output=json", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report.get("corruptions", 0) == 0 and report.get("leaks", 0) == 0, report
    assert report["check-errors"] == 0, report
    return report


def nbd_open(d, export):
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(str(d.nbd_sock))
    return h


def test_file_create_and_eexist(qmp, tmp_path):
    path = tmp_path / "new.raw"
    ok(qmp, "blockdev-create", {"job-id": "j0", "options": {"driver": "file",
                                                            "filename": str(path),
                                                            "size": 5 * MiB}})
    assert path.stat().st_size == 5 * MiB
    r = qmp.cmd("blockdev-create", {"job-id": "j1", "options": {"driver": "file",
                                                                "filename": str(path),
                                                                "size": MiB}})
    assert r == {"error": {"class": "GenericError",
                           "desc": f"Could not create '{path}': File exists"}}
    assert path.stat().st_size == 5 * MiB
    r = qmp.cmd("blockdev-create", {"job-id": "j2", "options": {"driver": "file",
                                                                "filename": str(path),
                                                                "size": 0, "x": 1}})
    assert r["error"]["desc"] == "Parameter 'options.x' is unexpected"
    names = [c["name"] for c in qmp.cmd("query-commands")["return"]]
    assert "blockdev-create" in names


CASES = {
    "plain": ({}, {"cluster-size": 65536, "compat": "1.1", "extended-l2": False,
                   "refcount-bits": 16}),
    "extended_l2": ({"extended-l2": True, "cluster-size": 131072},
                    {"cluster-size": 131072, "compat": "1.1", "extended-l2": True}),
    "cluster_4k": ({"cluster-size": 4096}, {"cluster-size": 4096, "compat": "1.1"}),
    "v2": ({"version": "v2"}, {"cluster-size": 65536, "compat": "0.10"}),
    "refcount_8_lazy": ({"refcount-bits": 8, "lazy-refcounts": True},
                        {"refcount-bits": 8, "lazy-refcounts": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_qcow2_options_qemu_img_agrees(daemon, qmp, tmp_path, case):
    opts, expected = CASES[case]
    path = tmp_path / f"{case}.qcow2"
    create_qcow2(qmp, path, "f0", size=64 * MiB, **opts)
    info = img_info(path)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 64 * MiB
    data = info["format-specific"]["data"]
    for key, value in expected.items():
        got = info["cluster-size"] if key == "cluster-size" else data.get(key)
        assert got == value, (key, info)
    ok(qmp, "blockdev-del", {"node-name": "f0"})
    img_check(path)

    # Opened by fleeced, exported and written over NBD; qemu sees the data afterwards.
    ok(qmp, "blockdev-add", {"driver": "qcow2", "node-name": "img",
                             "file": {"driver": "file", "filename": str(path)}})
    ok(qmp, "block-export-add", {"type": "nbd", "id": "img", "node-name": "img",
                                 "writable": True})
    h = nbd_open(daemon, "img")
    assert h.get_size() == 64 * MiB
    h.pwrite(b"\x5a" * 65536, 3 * MiB)
    h.pwrite(b"\x17" * 4096, 60 * MiB + 512)
    h.flush()
    assert h.pread(65536, 3 * MiB) == b"\x5a" * 65536
    assert h.pread(4096, 0) == b"\0" * 4096
    h.shutdown()
    ok(qmp, "block-export-del", {"id": "img"})
    del_node(qmp, "img")
    img_check(path)
    r = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"read -P 0x17 {60 * MiB + 512} 4096",
                        str(path)], capture_output=True, text=True)
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, r.stdout


def test_backing_file_with_format(daemon, qmp, tmp_path):
    base = make_image(tmp_path / "chain-base.qcow2", 8 * MiB, fmt="qcow2",
                      pattern=[(0x61, 0, MiB)])
    path = tmp_path / "overlay.qcow2"
    create_qcow2(qmp, path, "f0", size=8 * MiB, **{"backing-file": str(base),
                                                    "backing-fmt": "qcow2"})
    ok(qmp, "blockdev-del", {"node-name": "f0"})
    info = img_info(path)
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "qcow2"
    img_check(path)

    # The chain comes from the header.
    ok(qmp, "blockdev-add", {"driver": "qcow2", "node-name": "ov",
                             "file": {"driver": "file", "filename": str(path)}})
    ok(qmp, "block-export-add", {"type": "nbd", "id": "ov", "node-name": "ov",
                                 "writable": True})
    h = nbd_open(daemon, "ov")
    assert h.pread(4096, 0) == b"\x61" * 4096
    h.pwrite(b"\x62" * 4096, 4096)
    assert h.pread(8192, 0) == b"\x61" * 4096 + b"\x62" * 4096
    h.shutdown()
    ok(qmp, "block-export-del", {"id": "ov"})
    del_node(qmp, "ov")
    img_check(path)
    img_check(base)


def test_backing_node_extension(daemon, qmp, tmp_path):
    path = tmp_path / "top.qcow2"
    create_qcow2(qmp, path, "f0", size=4 * MiB, backing="base")
    info = img_info(path)
    assert info["backing-filename"] == str(tmp_path / "base.raw")
    assert info["backing-filename-format"] == "raw"
    ok(qmp, "blockdev-add", {"driver": "qcow2", "node-name": "top", "file": "f0",
                             "backing": "base"})
    ok(qmp, "block-export-add", {"type": "nbd", "id": "top", "node-name": "top",
                                 "writable": True})
    h = nbd_open(daemon, "top")
    assert h.pread(4096, 0) == b"\x42" * 4096
    h.pwrite(b"\x43" * 4096, 0)
    assert h.pread(4096, 0) == b"\x43" * 4096
    h.shutdown()
    base_h = nbd_open(daemon, "base")
    assert base_h.pread(4096, 0) == b"\x42" * 4096  # the backing file is unchanged
    base_h.shutdown()
    ok(qmp, "block-export-del", {"id": "top"})
    del_node(qmp, "top")
    ok(qmp, "blockdev-del", {"node-name": "f0"})
    img_check(path)


def test_refusals(qmp, tmp_path):
    path = tmp_path / "busy.qcow2"
    create_qcow2(qmp, path, "f0", size=MiB)
    ok(qmp, "blockdev-add", {"driver": "qcow2", "node-name": "q0", "file": "f0"})
    r = qmp.cmd("blockdev-create", {"job-id": "j", "options": {"driver": "qcow2", "file": "f0",
                                                               "size": MiB}})
    assert r["error"]["desc"] == "Node 'f0' is in use by node 'q0'"
    r = qmp.cmd("blockdev-create", {"job-id": "j", "options": {"driver": "qcow2",
                                                               "file": "base", "size": MiB}})
    assert "needs a node of driver 'file'" in r["error"]["desc"]
    r = qmp.cmd("blockdev-create", {"job-id": 5, "options": {}})
    assert r["error"]["desc"] == "Invalid parameter type for 'job-id', expected: string"


def ctl(d, *args, json_output=False, cwd=None):
    cmd = [str(FLEECECTL), "--socket", str(d.control_sock)]
    if json_output:
        cmd.append("--json")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_fleecectl_image_create(daemon, tmp_path):
    r = ctl(daemon, "image", "create", "disk.raw", "3M", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'disk.raw'}\n"
    assert (tmp_path / "disk.raw").stat().st_size == 3 * MiB

    r = ctl(daemon, "image", "create", str(tmp_path / "a.qcow2"), "1G", "--format", "qcow2",
            "--cluster-size", "128K", "--extended-l2", "--refcount-bits", "32",
            json_output=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"filename": str(tmp_path / "a.qcow2"), "format": "qcow2",
                                    "virtual-size": 1 << 30}
    info = img_info(tmp_path / "a.qcow2")
    assert info["virtual-size"] == 1 << 30 and info["cluster-size"] == 128 * 1024
    assert info["format-specific"]["data"]["extended-l2"] is True
    assert info["format-specific"]["data"]["refcount-bits"] == 32
    img_check(tmp_path / "a.qcow2")

    r = ctl(daemon, "image", "create", "b.qcow2", "4M", "--format", "qcow2", "--compat", "v2",
            "--backing", "base.raw", "--backing-format", "raw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = img_info(tmp_path / "b.qcow2")
    assert info["format-specific"]["data"]["compat"] == "0.10"
    assert info["backing-filename"] == "base.raw"
    img_check(tmp_path / "b.qcow2")

    r = ctl(daemon, "image", "create", "c.qcow2", "4M", "--format", "qcow2",
            "--backing-node", "base", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert img_info(tmp_path / "c.qcow2")["backing-filename"] == str(tmp_path / "base.raw")

    # The image works: opened with fleecectl and read over NBD through the chain.
    assert ctl(daemon, "node", "add", "qcow2", "c", "--file", str(tmp_path / "c.qcow2"),
               "--backing", "base").returncode == 0
    assert ctl(daemon, "export", "add", "c", "--node", "c").returncode == 0
    h = nbd_open(daemon, "c")
    assert h.pread(4096, 0) == b"\x42" * 4096
    h.shutdown()

    # No temporary nodes are left behind.
    nodes = json.loads(ctl(daemon, "nodes", json_output=True).stdout)
    assert not [n for n in nodes if n["node-name"].startswith("fleecectl-")]

    # Errors: an existing file is untouched; a refused qcow2 option removes the new file.
    r = ctl(daemon, "image", "create", "disk.raw", "1M", cwd=tmp_path)
    assert r.returncode == 1 and "File exists" in r.stderr
    assert (tmp_path / "disk.raw").stat().st_size == 3 * MiB
    r = ctl(daemon, "image", "create", "d.qcow2", "1M", "--format", "qcow2",
            "--cluster-size", "3000", cwd=tmp_path)
    assert r.returncode == 1
    assert "Cluster size must be a power of two" in r.stderr
    assert not (tmp_path / "d.qcow2").exists()
    r = ctl(daemon, "image", "create", "e.raw", "1M", "--extended-l2", cwd=tmp_path)
    assert r.returncode == 64
    r = ctl(daemon, "image", "create", "e.qcow2", "1M", "--format", "qcow2", "--backing", "x",
            cwd=tmp_path)
    assert r.returncode == 64 and "--backing-format" in r.stderr
