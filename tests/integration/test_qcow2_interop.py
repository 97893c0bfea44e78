"""qcow2 interoperability matrix: images made by QEMU's tools (v2 and v3, cluster sizes
512 B to 2 MiB, refcount widths, extended L2, compressed clusters, external data files,
lazy refcounts, internal snapshots, backing chains) served by the real fleeced.

For every image: (a) read-only, the whole disk read through NBD equals what `qemu-img
convert` makes of the image itself; (b) writable, a mixed write pattern sent with qemu-io
over NBD leaves the image in the same state as the same qemu-io commands run directly on
a copy of it (`qemu-img compare`), and `qemu-img check` finds neither errors nor leaks
once fleeced stopped; (c) for chains, `qemu:allocation-depth` and `base:allocation`
agree with `qemu-nbd -A` on the same chain.

Plus hostile images (truncated, L1 past the end, cyclic and too deep chains, a raw
backing file that looks like qcow2, the corrupt bit) and runtime blockdev-add of qcow2."""

import json
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import nbd
import pytest

from fleece_harness import FLEECED, Daemon, Qmp, wait_for_socket

KiB = 1 << 10
MiB = 1 << 20
TIMEOUT = 60
DEPTH = "qemu:allocation-depth"

CONFIG = """
listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
nodes:
  - node-name: d
    driver: qcow2
    read-only: {ro}
    file: {{{{ driver: file, filename: "{image}" }}}}
exports:
  - {{{{ name: d, node: d, writable: {rw}, allocation-depth: true }}}}
"""


def run(cmd, cwd=None, check=True, timeout=TIMEOUT):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")
    return r


def qemu_io(fmt, target, cmds, cwd=None):
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    r = run(args + [target], cwd=cwd)
    # qemu-io reports a failed command on stdout and still exits 0.
    bad = [line for line in (r.stdout + r.stderr).splitlines()
           if "error" in line.lower() or "failed" in line.lower()]
    assert not bad, f"qemu-io {fmt} {target}: {bad}"
    return r


# ---- the matrix ------------------------------------------------------------------------

def data_pattern(size, cluster):
    """qemu-io commands that give a fresh image data in a few shapes: partial and whole
    clusters, a zeroed range, data at the end."""
    c = cluster
    return [
        f"write -P 0x11 0 {max(c // 2, 512)}",
        f"write -P 0x12 {2 * c} {3 * c}",
        f"write -P 0x13 {6 * c + 512} {c + 1024}",
        f"write -z {8 * c} {c}",
        f"write -P 0x14 {size // 2 - 3 * 512} {4 * c}",
        f"write -P 0x15 {size - 2 * c} {2 * c}",
    ]


def mk(dir_, name, size, opts="", fmt="qcow2", backing=None, backing_fmt=None,
       pattern=True, cluster=65536):
    cmd = ["qemu-img", "create", "-q", "-f", fmt]
    if opts:
        cmd += ["-o", opts]
    if backing:
        cmd += ["-b", backing, "-F", backing_fmt]
    run(cmd + [name, str(size)], cwd=dir_)
    if pattern:
        qemu_io(fmt, name, data_pattern(size, cluster), cwd=dir_)
    return name


def compressed(dir_, size, ctype):
    mk(dir_, "src.raw", size, fmt="raw")
    qemu_io("raw", "src.raw", [f"write -P 0x21 0 {MiB}", f"write -P 0x22 {3 * MiB} 100000",
                               f"write -P 0x23 {size - 70000} 70000"], cwd=dir_)
    # Some incompressible data too: random bytes in one cluster.
    with open(Path(dir_) / "src.raw", "r+b") as f:
        f.seek(2 * MiB)
        f.write(os.urandom(65536))
    opts = "compression_type=zstd" if ctype == "zstd" else ""
    cmd = ["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2"]
    if opts:
        cmd += ["-o", opts]
    run(cmd + ["src.raw", "img.qcow2"], cwd=dir_)
    os.unlink(Path(dir_) / "src.raw")
    return "img.qcow2"


def with_snapshot(dir_, size):
    mk(dir_, "img.qcow2", size)
    run(["qemu-img", "snapshot", "-c", "snap1", "img.qcow2"], cwd=dir_)
    # After the snapshot the clusters are shared (refcount 2): these writes copy them.
    qemu_io("qcow2", "img.qcow2", [f"write -P 0x31 {2 * 65536 + 100} 5000",
                                   f"write -P 0x32 {MiB} {65536}"], cwd=dir_)
    run(["qemu-img", "snapshot", "-c", "snap2", "img.qcow2"], cwd=dir_)
    return "img.qcow2"


def chain(dir_, size, layers):
    """layers images: a raw base and qcow2 overlays, each with data of its own, some of
    it overlapping the layer below."""
    mk(dir_, "base.raw", size, fmt="raw", pattern=False)
    qemu_io("raw", "base.raw", [f"write -P 0x41 0 {2 * MiB}", f"write -P 0x42 {5 * MiB} {MiB}"],
            cwd=dir_)
    below, below_fmt = "base.raw", "raw"
    for i in range(1, layers):
        name = f"l{i}.qcow2"
        mk(dir_, name, size, backing=below, backing_fmt=below_fmt, pattern=False)
        off = i * 384 * KiB + 4096 * i
        qemu_io("qcow2", name, [f"write -P {0x50 + i} {off} {300 * KiB}",
                                f"write -z {MiB + i * 65536} 65536",
                                f"write -P {0x60 + i} {5 * MiB + i * 100 * KiB} {70 * KiB}"],
                cwd=dir_)
        below, below_fmt = name, "qcow2"
    return below


# id -> (builder(dir) -> top image name, cluster size, disk size, chain layers)
def case(builder, cluster=65536, size=8 * MiB, layers=1):
    return (builder, cluster, size, layers)


CASES = {
    "v2": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "compat=0.10")),
    "v2-4k": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "compat=0.10,cluster_size=4096",
                               cluster=4096), cluster=4096),
    "c512": case(lambda d: mk(d, "img.qcow2", 4 * MiB, "cluster_size=512", cluster=512),
                 cluster=512, size=4 * MiB),
    "c4k": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "cluster_size=4096", cluster=4096),
                cluster=4096),
    "c64k": case(lambda d: mk(d, "img.qcow2", 8 * MiB)),
    "c2M": case(lambda d: mk(d, "img.qcow2", 32 * MiB, "cluster_size=2M", cluster=2 * MiB),
                cluster=2 * MiB, size=32 * MiB),
    "rc1": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "refcount_bits=1")),
    "rc64": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "refcount_bits=64")),
    "rc1-c512": case(lambda d: mk(d, "img.qcow2", 4 * MiB, "refcount_bits=1,cluster_size=512",
                                  cluster=512), cluster=512, size=4 * MiB),
    "extl2-64k": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "extended_l2=on")),
    "extl2-2M": case(lambda d: mk(d, "img.qcow2", 32 * MiB, "extended_l2=on,cluster_size=2M",
                                  cluster=2 * MiB), cluster=2 * MiB, size=32 * MiB),
    "compressed-deflate": case(lambda d: compressed(d, 8 * MiB, "deflate")),
    "compressed-zstd": case(lambda d: compressed(d, 8 * MiB, "zstd")),
    "data-file": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "data_file=img.data")),
    "data-file-raw": case(lambda d: mk(d, "img.qcow2", 8 * MiB,
                                       "data_file=img.data,data_file_raw=on")),
    # A virtual size that ends inside a cluster (QEMU rounds sizes to 512 bytes).
    "odd-size": case(lambda d: mk(d, "img.qcow2", 5 * MiB + 1536, "cluster_size=4096",
                                  cluster=4096), cluster=4096, size=5 * MiB + 1536),
    "lazy-refcounts": case(lambda d: mk(d, "img.qcow2", 8 * MiB, "lazy_refcounts=on")),
    "snapshots": case(lambda d: with_snapshot(d, 8 * MiB)),
    "chain2": case(lambda d: chain(d, 8 * MiB, 2), layers=2),
    "chain3": case(lambda d: chain(d, 8 * MiB, 3), layers=3),
    "chain4": case(lambda d: chain(d, 8 * MiB, 4), layers=4),
}


@pytest.fixture(params=sorted(CASES), ids=sorted(CASES))
def image(request, tmp_path):
    builder, cluster, size, layers = CASES[request.param]
    src = tmp_path / "img"
    src.mkdir()
    top = builder(src)
    return src, top, cluster, size, layers


class serve(Daemon):
    """fleeced on one qcow2 image as export `d` (with qemu:allocation-depth)."""

    def __init__(self, tmp_path, image_path, writable):
        super().__init__(tmp_path, config=CONFIG.format(
            image=image_path, ro=str(not writable).lower(), rw=str(writable).lower()))

    def __enter__(self):
        return self.start(wait_control=True)


def read_all_nbd(uri, out):
    run(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out])
    return Path(out).read_bytes()


def read_all_image(path, out):
    # QEMU resolves a relative data-file name against its working directory (fleeced
    # against the image's folder): run it in the image's folder.
    run(["qemu-img", "convert", "-U", "-O", "raw", Path(path).name, out], cwd=Path(path).parent)
    return Path(out).read_bytes()


def check_image(path):
    return run(["qemu-img", "check", Path(path).name], cwd=Path(path).parent, check=False)


def first_difference(a, b):
    if len(a) != len(b):
        return f"sizes differ: {len(a)} vs {len(b)}"
    for off in range(0, len(a), 4096):
        if a[off:off + 4096] != b[off:off + 4096]:
            i = next(j for j in range(off, min(off + 4096, len(a))) if a[j] != b[j])
            return f"first difference at byte {i} (cluster-relative {i % 65536}): fleeced {a[i]:#x}, qemu {b[i]:#x}"
    return None


def test_read_only_matches_qemu(image, tmp_path):
    src, top, cluster, size, layers = image
    before = check_image(src / top).stdout
    with serve(tmp_path, src / top, writable=False) as d:
        got = read_all_nbd(d.uri("d"), tmp_path / "nbd.raw")
        assert d.alive(), d.log_text()
        h = nbd.NBD()
        h.connect_uri(d.uri("d"))
        assert h.get_size() == size
        assert h.is_read_only()
        h.shutdown()
        assert d.stop() == 0, d.log_text()
    want = read_all_image(src / top, tmp_path / "qemu.raw")
    assert len(want) == size
    assert got == want, first_difference(got, want)
    # A read-only export leaves the image exactly as it was.
    assert check_image(src / top).stdout == before


def write_pattern(cluster, size, layers):
    """A mixed pattern: unaligned and partial-cluster writes, whole clusters, zeroes with
    and without unmap, discards, writes across cluster, L2-table and layer boundaries,
    FUA writes, a flush, the last byte of the disk."""
    c = cluster
    l2_span = c * (c // 8)  # guest bytes one L2 table maps (standard entries)
    cmds = [
        f"write -P 0xa1 {c // 2 - 100} 300",
        f"write -P 0xa2 {c + 7} 1",
        f"write -P 0xa3 {3 * c} {2 * c}",
        f"write -P 0xa4 {5 * c + 512} {c}",
        f"write -z {7 * c} {c}",
        f"write -z -u {9 * c} {2 * c}",
        f"write -z {12 * c + 100} 1000",
        f"write -P 0xa5 {13 * c} {c}",
        f"discard {13 * c} {c}",
        f"write -f -P 0xa6 {15 * c + 4096} 8192",
        "flush",
        f"write -P 0xa7 {size - 700} 700",
        f"write -P 0xa8 {size // 2 - 3000} 6000",
    ]
    if l2_span < size - c:
        cmds.append(f"write -P 0xa9 {l2_span - 1000} 2000")
        cmds.append(f"write -z -u {l2_span - c} {2 * c}")
    if layers > 1:
        # Across where the lower layers have data (see chain()): partly over each layer.
        cmds += [f"write -P 0xaa {384 * KiB + 4096 + 200 * KiB} {200 * KiB}",
                 f"write -P 0xab {2 * MiB - 5000} 10000",
                 f"write -z {5 * MiB + 60 * KiB} {100 * KiB}",
                 f"write -P 0xac {5 * MiB + 100 * KiB + 3000} 1000",
                 f"discard {6 * MiB - 2 * c} {4 * c}"]
    cmds.append("flush")
    return cmds


def test_writes_match_qemu(image, tmp_path):
    src, top, cluster, size, layers = image
    ref = tmp_path / "ref"
    shutil.copytree(src, ref)
    cmds = write_pattern(cluster, size, layers)
    with serve(tmp_path, src / top, writable=True) as d:
        qemu_io("raw", d.uri("d"), cmds)
        assert d.alive(), d.log_text()
        # What a client reads back while the image is open (caches included).
        live = read_all_nbd(d.uri("d"), tmp_path / "live.raw")
        assert d.stop() == 0, d.log_text()
    qemu_io("qcow2", top, cmds, cwd=ref)
    r = check_image(src / top)
    assert r.returncode == 0, f"qemu-img check after fleeced wrote:\n{r.stdout}{r.stderr}"
    assert "No errors were found" in r.stdout
    got = read_all_image(src / top, tmp_path / "got.raw")
    want = read_all_image(ref / top, tmp_path / "want.raw")
    assert got == want, first_difference(got, want)
    assert live == want, "read back while open: " + str(first_difference(live, want))
    # The lower layers of a chain were only read.
    for f in src.iterdir():
        if f.name != top and not f.name.endswith(".data"):
            assert f.read_bytes() == (ref / f.name).read_bytes(), f"{f.name} was modified"
    # Internal snapshots survive the writes with their contents.
    snaps = run(["qemu-img", "snapshot", "-l", top], cwd=src).stdout
    assert snaps.count("snap") == run(["qemu-img", "snapshot", "-l", top], cwd=ref).stdout.count("snap")
    for name in ("snap1", "snap2"):
        if name in snaps:
            args = ["qemu-img", "convert", "-U", "-l", f"snapshot.name={name}", "-O", "raw", top]
            run(args + [tmp_path / "s-got.raw"], cwd=src)
            run(args + [tmp_path / "s-want.raw"], cwd=ref)
            a, b = (tmp_path / "s-got.raw").read_bytes(), (tmp_path / "s-want.raw").read_bytes()
            assert a == b, f"snapshot {name}: " + str(first_difference(a, b))


# ---- (c) allocation maps against qemu-nbd -A --------------------------------------------

class serve_config(Daemon):
    def __init__(self, tmp_path, cfg):
        super().__init__(tmp_path, config=cfg)

    def __enter__(self):
        return self.start(wait_control=True)


def nbdinfo_map(uri, context=None):
    args = ["nbdinfo", "--json"]
    args.append(f"--map={context}" if context else "--map")
    extents = json.loads(run(args + [uri]).stdout)
    merged = []
    for e in extents:
        if merged and merged[-1]["type"] == e["type"] and \
                merged[-1]["offset"] + merged[-1]["length"] == e["offset"]:
            merged[-1]["length"] += e["length"]
        else:
            merged.append({"offset": e["offset"], "length": e["length"], "type": e["type"]})
    return [(e["offset"], e["length"], e["type"]) for e in merged]


@pytest.mark.parametrize("layers", [2, 3, 4])
def test_chain_maps_match_qemu_nbd(tmp_path, layers):
    src = tmp_path / "img"
    src.mkdir()
    top = chain(src, 8 * MiB, layers)
    qsock = tmp_path / "qemu-nbd.sock"
    qlog = open(tmp_path / "qemu-nbd.log", "w")
    q = subprocess.Popen(["qemu-nbd", "-f", "qcow2", "-r", "-t", "-A", "-k", str(qsock), "-x", "d",
                          str(src / top)], stdout=qlog, stderr=subprocess.STDOUT)
    try:
        wait_for_socket(qsock, q)
        quri = f"nbd+unix:///d?socket={qsock}"
        want_depth = nbdinfo_map(quri, DEPTH)
        want_alloc = nbdinfo_map(quri)
    finally:
        q.terminate()
        q.wait(10)
        qlog.close()
    assert max(t for _, _, t in want_depth) == layers  # the chain really is that deep
    with serve(tmp_path, src / top, writable=False) as d:
        got_depth = nbdinfo_map(d.uri("d"), DEPTH)
        got_alloc = nbdinfo_map(d.uri("d"))
        assert d.stop() == 0
    assert got_depth == want_depth
    assert got_alloc == want_alloc


# ---- hostile images ----------------------------------------------------------------------

def refuses(tmp_path, image, *extra):
    """Runs `fleeced serve` on image; it must exit non-zero by itself (no signal) with a
    message naming the problem. Returns its output."""
    sock = tmp_path / "h.sock"
    p = subprocess.Popen([str(FLEECED), "serve", str(image), "--listen", f"unix:{sock}",
                          "--format", "qcow2", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError(f"fleeced did not exit on a hostile image:\n{out}")
    assert p.returncode > 0, f"fleeced exited with {p.returncode}:\n{out}"
    return out


def set_header(path, offset, fmt, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def test_truncated_image_refused(tmp_path):
    img = Path(mk(tmp_path, "img.qcow2", 8 * MiB))
    img = tmp_path / img
    os.truncate(img, 100)
    out = refuses(tmp_path, img)
    assert "qcow2" in out and "img.qcow2" in out


def test_truncated_metadata_refused_or_fails_reads(tmp_path):
    """The header survives but the refcount table and L1 table are cut off."""
    img = tmp_path / mk(tmp_path, "img.qcow2", 8 * MiB)
    os.truncate(img, 65536)
    out = refuses(tmp_path, img, "--read-only")
    assert "img.qcow2" in out


def test_l1_past_eof_refused(tmp_path):
    img = tmp_path / mk(tmp_path, "img.qcow2", 8 * MiB)
    set_header(img, 40, ">Q", 1 << 40)  # l1_table_offset
    out = refuses(tmp_path, img, "--read-only")
    assert "L1" in out or "l1" in out


def test_cyclic_backing_chain_refused(tmp_path):
    mk(tmp_path, "b.qcow2", 4 * MiB, pattern=False)
    mk(tmp_path, "a.qcow2", 4 * MiB, backing="b.qcow2", backing_fmt="qcow2", pattern=False)
    run(["qemu-img", "rebase", "-u", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2"], cwd=tmp_path)
    out = refuses(tmp_path, tmp_path / "a.qcow2", "--read-only")
    assert "loop" in out.lower()


def test_chain_depth_70_refused(tmp_path):
    mk(tmp_path, "c0.qcow2", MiB, pattern=False)
    for i in range(1, 71):
        mk(tmp_path, f"c{i}.qcow2", MiB, backing=f"c{i - 1}.qcow2", backing_fmt="qcow2",
           pattern=False)
    out = refuses(tmp_path, tmp_path / "c70.qcow2", "--read-only")
    assert "deeper than 64" in out


def test_raw_backing_with_qcow2_header_is_read_raw(tmp_path):
    # The base's bytes happen to be a qcow2 image; -F raw says they are raw data.
    mk(tmp_path, "inner.qcow2", 4 * MiB)
    inner = (tmp_path / "inner.qcow2").read_bytes()
    with open(tmp_path / "base.raw", "wb") as f:
        f.write(inner)
        f.truncate(4 * MiB)
    mk(tmp_path, "top.qcow2", 4 * MiB, backing="base.raw", backing_fmt="raw", pattern=False)
    qemu_io("qcow2", "top.qcow2", ["write -P 0x77 65536 4096"], cwd=tmp_path)
    with serve(tmp_path, tmp_path / "top.qcow2", writable=False) as d:
        got = read_all_nbd(d.uri("d"), tmp_path / "nbd.raw")
        assert d.stop() == 0
    want = read_all_image(tmp_path / "top.qcow2", tmp_path / "qemu.raw")
    assert got[:len(inner)][:65536] == inner[:65536]  # the qcow2 header bytes, as data
    assert got == want, first_difference(got, want)


def test_corrupt_bit_refuses_writable_opens_read_only(tmp_path):
    img = tmp_path / mk(tmp_path, "img.qcow2", 4 * MiB)
    with open(img, "r+b") as f:
        f.seek(72)
        incompat = struct.unpack(">Q", f.read(8))[0]
    set_header(img, 72, ">Q", incompat | 2)  # the corrupt bit
    out = refuses(tmp_path, img)
    assert "corrupt" in out.lower()
    with serve(tmp_path, img, writable=False) as d:
        h = nbd.NBD()
        h.connect_uri(d.uri("d"))
        assert h.pread(4096, 0) == b"\x11" * 4096
        h.shutdown()
        assert d.stop() == 0


def test_unknown_incompatible_feature_refused(tmp_path):
    img = tmp_path / mk(tmp_path, "img.qcow2", 4 * MiB)
    set_header(img, 72, ">Q", 1 << 20)  # an incompatible feature nobody knows
    out = refuses(tmp_path, img, "--read-only")
    assert "feature" in out.lower()


def test_runtime_blockdev_add_qcow2(tmp_path):
    src = tmp_path / "img"
    src.mkdir()
    top = chain(src, 8 * MiB, 3)
    raw = tmp_path / "empty.raw"
    raw.write_bytes(b"")
    os.truncate(raw, MiB)
    cfg = ("listen:\n  - unix: {nbd_sock}\ncontrol:\n  unix: {control_sock}\nnodes:\n"
           f"  - {{{{ node-name: e, driver: raw, file: {{{{ driver: file, filename: {raw} }}}} }}}}\n"
           "exports:\n  - {{ name: e, node: e }}\n")
    with serve_config(tmp_path, cfg) as d:
        with Qmp(d.control_sock) as q:
            r = q.cmd("blockdev-add", {"driver": "qcow2", "node-name": "rt", "read-only": True,
                                       "file": {"driver": "file",
                                                "filename": str(src / top)}})
            assert r == {"return": {}}, r
            nodes = {n["node-name"]: n for n in q.cmd("query-named-block-nodes")["return"]}
            assert nodes["rt"]["drv"] == "qcow2"
            assert nodes["rt"]["backing_file_depth"] == 2
            r = q.cmd("block-export-add", {"type": "nbd", "id": "rt", "node-name": "rt",
                                           "name": "rt", "allocation-depth": True})
            assert r == {"return": {}}, r
            got = read_all_nbd(d.uri("rt"), tmp_path / "nbd.raw")
            want = read_all_image(src / top, tmp_path / "qemu.raw")
            assert got == want, first_difference(got, want)
            depth = nbdinfo_map(d.uri("rt"), DEPTH)
            assert {t for _, _, t in depth} >= {1, 2, 3}
            # A hostile image over the control socket is an error, the daemon lives on.
            bad = tmp_path / "bad.qcow2"
            bad.write_bytes(b"QFI\xfb" + b"\xff" * 200)
            r = q.cmd("blockdev-add", {"driver": "qcow2", "node-name": "bad", "read-only": True,
                                       "file": {"driver": "file", "filename": str(bad)}})
            assert "error" in r and r["error"]["desc"], r
            assert d.alive()
            assert q.cmd("block-export-del", {"id": "rt"}) == {"return": {}}
            deadline = time.monotonic() + 5
            while True:
                r = q.cmd("blockdev-del", {"node-name": "rt"})
                if "return" in r or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert r == {"return": {}}, r
        assert d.stop() == 0


def test_image_with_persistent_bitmap_written(tmp_path):
    """An image carrying a QEMU persistent dirty bitmap, written through fleeced: fleeced
    keeps the bitmap current, so after a clean stop `qemu-img info` lists it consistent
    (no in-use), qemu-nbd -B serves exactly the written granule, and `qemu-img check`
    stays clean."""
    img = tmp_path / mk(tmp_path, "img.qcow2", 8 * MiB)
    run(["qemu-img", "bitmap", "--add", img, "b0"])
    with serve(tmp_path, img, writable=True) as d:
        qemu_io("raw", d.uri("d"), ["write -P 0x5a 3145728 65536"])
        assert d.stop() == 0, d.log_text()
    r = check_image(img)
    assert r.returncode == 0, f"qemu-img check (rc {r.returncode}):\n{r.stdout}{r.stderr}"
    info = json.loads(run(["qemu-img", "info", "--output=json", img]).stdout)
    bitmaps = {b["name"]: b for b in info["format-specific"]["data"].get("bitmaps", [])}
    assert bitmaps["b0"]["flags"] == ["auto"], bitmaps
    sock = tmp_path / "qnbd.sock"
    run(["qemu-nbd", "-r", "-f", "qcow2", "-B", "b0", "--fork", f"--socket={sock}", img])
    dirty = [(o, n) for o, n, t in nbdinfo_map(f"nbd+unix:///?socket={sock}",
                                               "qemu:dirty-bitmap:b0") if t & 1]
    assert dirty == [(3145728, 65536)], dirty
