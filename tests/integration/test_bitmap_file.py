"""Persistent dirty bitmaps of a raw image, kept in a `bitmap-file` container, through the
real fleeced: the config's `bitmaps:` creates a persistent bitmap at start-up, writes over
NBD mark it, a clean stop (SIGTERM) leaves a container that `qemu-img info` lists the
bitmap in without in-use, and a restart reloads it with the same dirty extents
(`nbdinfo --map=qemu:dirty-bitmap:NAME`). Start-up and check-config errors name the
config line and say what to do; the container is released when its node goes away
(SIGHUP removal, blockdev-del) and `fleeced serve --bitmap --bitmap-file` does the same
for ad-hoc serving. (`qemu-nbd -B` cannot serve a raw disk's bitmaps from a separate
container, so that comparison belongs to the qcow2 tests.)"""

import json
import signal
import subprocess
import time

import nbd
import pytest

from fleece_harness import (FLEECED, Daemon, Qmp, dirty_bitmap_context, dirty_granules_of,
                            granules_touched, make_image, nbdinfo_extents, qemu_img_bitmaps)

KiB = 1 << 10
MiB = 1 << 20
SIZE = 64 * MiB
GRAN = 64 * KiB
TIMEOUT = 60
CONTEXT = dirty_bitmap_context("nightly")

CONFIG = """
listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
nodes:
  - node-name: disk0
    driver: raw
    file: {{{{ driver: file, filename: "{image}" }}}}
    bitmap-file: "{container}"
bitmaps:
  - {{{{ node: disk0, name: nightly{extra} }}}}
exports:
  - {{{{ name: disk0, node: disk0, writable: true, bitmaps: [nightly] }}}}
"""

# (offset, length) written over NBD, and the granules they dirty.
WRITES = [(0, 4096), (MiB + 100, 70000), (40 * MiB, GRAN), (SIZE - 512, 512)]


def dirty_granules(writes):
    return granules_touched(writes, GRAN, SIZE)


def run(cmd, check=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")
    return r


def stored_bitmaps(path):
    """{name: (flags, granularity)} of a qcow2 file, as qemu-img reports them."""
    return {name: (b["flags"], b["granularity"])
            for name, b in qemu_img_bitmaps(path, force_share=True).items()}


def dirty_map(uri):
    """The granules nbdinfo reports dirty in qemu:dirty-bitmap:nightly."""
    extents = nbdinfo_extents(uri, CONTEXT)
    assert sum(length for _, length, _ in extents) == SIZE
    return dirty_granules_of(extents, GRAN, SIZE)


def write_over_nbd(uri, writes):
    h = nbd.NBD()
    h.connect_uri(uri)
    for off, length in writes:
        h.pwrite(b"\xa5" * length, off)
    h.flush()
    h.shutdown()


def start_fails(tmp_path, config):
    """Runs fleeced on `config` (final text); it must exit 1 at start-up. Returns the
    config's path and fleeced's output."""
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    r = subprocess.run([str(FLEECED), "--config", str(path)], capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 1, r.stdout + r.stderr
    return path, r.stdout + r.stderr


def reload(d):
    """SIGHUP, then waits until fleeced logged the end of that reload."""
    done = d.log_text().count("reload done") + d.log_text().count("reload finished")
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = d.log_text()
        if text.count("reload done") + text.count("reload finished") > done:
            return
        time.sleep(0.05)
    raise AssertionError(f"no reload logged:\n{d.log_text()}")


@pytest.fixture
def image(tmp_path):
    return make_image(tmp_path / "disk 0.img", SIZE)


def config_for(tmp_path, image, extra=""):
    return CONFIG.format(image=image, container=tmp_path / "disk 0.bitmaps", extra=extra)


def test_bitmap_survives_clean_stop_and_restart(tmp_path, image):
    container = tmp_path / "disk 0.bitmaps"
    assert not container.exists()
    with Daemon(tmp_path, config=config_for(tmp_path, image)) as d:
        assert container.exists()
        # Created empty at start-up and offered by the export.
        assert dirty_map(d.uri("disk0")) == set()
        write_over_nbd(d.uri("disk0"), WRITES)
        assert dirty_map(d.uri("disk0")) == dirty_granules(WRITES)
        # While fleeced writes, QEMU is told not to trust the stored copy.
        flags, granularity = stored_bitmaps(container)["nightly"]
        assert "in-use" in flags and granularity == GRAN
        assert d.stop() == 0

    info = json.loads(run(["qemu-img", "info", "--output=json", container]).stdout)
    assert info["virtual-size"] == SIZE
    assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}
    run(["qemu-img", "check", container])
    # The data went to the raw image.
    raw = image.read_bytes()
    for off, length in WRITES:
        assert raw[off:off + length] == b"\xa5" * length

    # A restart loads the bitmap (kept, not recreated or cleared) with the same extents,
    # and it keeps recording.
    with Daemon(tmp_path, config=config_for(tmp_path, image)) as d:
        assert dirty_map(d.uri("disk0")) == dirty_granules(WRITES)
        more = [(20 * MiB, 512)]
        write_over_nbd(d.uri("disk0"), more)
        assert dirty_map(d.uri("disk0")) == dirty_granules(WRITES + more)
        assert d.stop() == 0
    assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}


def test_granularity_mismatch_is_a_startup_error(tmp_path, image):
    container = tmp_path / "disk 0.bitmaps"
    with Daemon(tmp_path, config=config_for(tmp_path, image)) as d:
        write_over_nbd(d.uri("disk0"), WRITES[:1])
        assert d.stop() == 0
    config = config_for(tmp_path, image, ", granularity: 128K").format(
        nbd_sock=tmp_path / "nbd.sock", control_sock=tmp_path / "control.sock", dir=tmp_path)
    path, out = start_fails(tmp_path, config)
    assert (f"{path}:12: bitmap 'nightly' of node 'disk0': the bitmap exists with granularity "
            f"65536, but the configuration asks for 131072") in out, out
    # Nothing was changed: the bitmap and its content are as they were.
    assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}
    with Daemon(tmp_path, config=config_for(tmp_path, image)) as d:
        assert dirty_map(d.uri("disk0")) == dirty_granules(WRITES[:1])


def test_persistent_bitmap_without_a_store_is_refused(tmp_path, image):
    config = f"""listen:
  - unix: {tmp_path}/nbd.sock
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: "{image}" }}
bitmaps:
  - {{ node: disk0, name: nightly }}
"""
    path = tmp_path / "nostore.yaml"
    path.write_text(config)
    check = subprocess.run([str(FLEECED), "--check-config", "--config", str(path)],
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert check.returncode == 1
    assert (f"{path}:8: bitmaps[0]: bitmap 'nightly' is persistent, but node 'disk0' (driver "
            f"raw) has nowhere to store it: give the node a bitmap-file") in \
        check.stdout + check.stderr
    _, out = start_fails(tmp_path, config)
    assert "give the node a bitmap-file" in out


def test_check_config_refuses_bitmap_file_on_qcow2_and_shared_containers(tmp_path):
    config = f"""nodes:
  - node-name: q
    driver: qcow2
    file: {{ driver: file, filename: {tmp_path}/q.qcow2 }}
    bitmap-file: {tmp_path}/q.bitmaps
  - node-name: a
    driver: file
    filename: {tmp_path}/a.img
    bitmap-file: {tmp_path}/shared.bitmaps
  - node-name: b
    driver: file
    filename: {tmp_path}/b.img
    bitmap-file: {tmp_path}/shared.bitmaps
"""
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    r = subprocess.run([str(FLEECED), "--check-config", "--config", str(path)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert (f"{path}:5: nodes[0].bitmap-file: driver 'qcow2' takes no bitmap-file (it keeps "
            f"persistent bitmaps in its own image)") in out, out
    assert (f"{path}:13: nodes[2].bitmap-file: bitmap-file '{tmp_path}/shared.bitmaps' is "
            f"already the bitmap-file of nodes[1] ('a')") in out, out


def test_sighup_removal_releases_the_container(tmp_path, image):
    container = tmp_path / "disk 0.bitmaps"
    d = Daemon(tmp_path, config=config_for(tmp_path, image))
    with d:
        write_over_nbd(d.uri("disk0"), WRITES)
        assert "in-use" in stored_bitmaps(container)["nightly"][0]
        # The node and its export go away; the daemon keeps running.
        d.config_path.write_text(f"""listen:
  - unix: {d.nbd_sock}
control:
  unix: {d.control_sock}
""")
        reload(d)
        assert "reload: node 'disk0' closed" in d.log_text()
        # Written back and released while fleeced runs on.
        assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}
        assert d.alive()
        # blockdev-add opens the container again (and loads the bitmap), blockdev-del
        # releases it again.
        with Qmp(d.control_sock) as q:
            r = q.cmd("blockdev-add", {"driver": "raw", "node-name": "again",
                                       "bitmap-file": str(container),
                                       "file": {"driver": "file", "filename": str(image)}})
            assert r == {"return": {}}, r
            assert "in-use" in stored_bitmaps(container)["nightly"][0]
            other = make_image(tmp_path / "other.img", SIZE)
            r = q.cmd("blockdev-add", {"driver": "file", "node-name": "other",
                                       "filename": str(other), "bitmap-file": str(container)})
            assert "error" in r and "already the bitmap-file of node 'again'" in \
                r["error"]["desc"], r
            r = q.cmd("blockdev-add", {"driver": "qcow2", "node-name": "q",
                                       "bitmap-file": str(tmp_path / "q.bitmaps"),
                                       "file": {"driver": "file", "filename": str(image)}})
            assert r["error"]["desc"] == (
                "Parameter 'bitmap-file' is unexpected: driver 'qcow2' keeps persistent bitmaps "
                "in its own image (bitmap-file is for file and raw nodes)"), r
            assert q.cmd("blockdev-del", {"node-name": "again"}) == {"return": {}}
        assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}
        assert d.stop() == 0


def test_serve_bitmap_and_bitmap_file(tmp_path, image):
    container = tmp_path / "served.bitmaps"
    serve = [str(image), "--format", "raw", "--bitmap-file", str(container), "--bitmap",
             "nightly"]
    with Daemon(tmp_path, serve=serve) as d:
        write_over_nbd(d.uri(), WRITES)
        assert dirty_map(d.uri()) == dirty_granules(WRITES)
        assert d.stop() == 0
    assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}
    with Daemon(tmp_path, serve=serve) as d:
        assert dirty_map(d.uri()) == dirty_granules(WRITES)

    r = subprocess.run([str(FLEECED), "serve", str(image), "--format", "raw", "--bitmap", "b",
                        "--listen", f"unix:{tmp_path}/x.sock"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2  # a usage error, before anything is opened
    assert "--bitmap b: a raw image keeps persistent bitmaps in a separate container; give one " \
           "with --bitmap-file PATH" in r.stdout + r.stderr


def test_sighup_ensures_new_bitmaps_before_new_exports(tmp_path, image):
    container = tmp_path / "disk 0.bitmaps"
    # A template for the harness: {nbd_sock} and {control_sock} are filled in, {{ }} is a
    # literal brace.
    plain = """listen:
  - unix: {nbd_sock}
control:
  unix: {control_sock}
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: "IMAGE" }}
    bitmap-file: "CONTAINER"
""".replace("IMAGE", str(image)).replace("CONTAINER", str(container))
    d = Daemon(tmp_path, config=plain)
    with d:
        assert stored_bitmaps(container) == {}
        # A bitmap and an export offering it arrive with one reload; the node stays open.
        d.config_path.write_text(d.config_text() + """bitmaps:
  - { node: disk0, name: nightly }
exports:
  - { name: disk0, node: disk0, writable: true, bitmaps: [nightly] }
""")
        reload(d)
        assert "reload done" in d.log_text(), d.log_text()
        assert "reload: node 'disk0'" not in d.log_text()  # the node stayed open
        assert dirty_map(d.uri("disk0")) == set()
        write_over_nbd(d.uri("disk0"), WRITES)
        assert dirty_map(d.uri("disk0")) == dirty_granules(WRITES)
        assert d.stop() == 0
    assert stored_bitmaps(container) == {"nightly": (["auto"], GRAN)}


def test_fleecectl_node_add_with_bitmap_file(tmp_path, image):
    """fleecectl node add raw/file --bitmap-file: the container is created, a bitmap added
    with fleecectl is persistent there, and blockdev-del writes it back."""
    d = Daemon(tmp_path, config=f"""listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
""")
    with d:
        raw_store = tmp_path / "raw.bitmaps"
        file_store = tmp_path / "file.bitmaps"
        d.ctl("node", "add", "raw", "r", "--file", str(image), "--bitmap-file", str(raw_store),
              json_output=False)
        d.ctl("bitmap", "add", "r", "b", json_output=False)
        other = make_image(tmp_path / "other.img", SIZE)
        d.ctl("node", "add", "file", "f", str(other), "--bitmap-file", str(file_store),
              json_output=False)
        d.ctl("bitmap", "add", "f", "c", "--granularity", "131072", json_output=False)
        assert "in-use" in stored_bitmaps(raw_store)["b"][0]
        d.ctl("node", "del", "r", json_output=False)
        d.ctl("node", "del", "f", json_output=False)
        assert stored_bitmaps(raw_store) == {"b": (["auto"], GRAN)}
        assert stored_bitmaps(file_store) == {"c": (["auto"], 2 * GRAN)}
        assert d.stop() == 0
